/* The model the runtime runs: its config (from the checkpoint's __metadata__["config"]), its
 * weights bound to the mapped tensors, and the per-image forward pass
 * (docs/CHECKPOINT_FORMAT.md §4). */
#ifndef MVMOE_RUNTIME_RT_MODEL_H
#define MVMOE_RUNTIME_RT_MODEL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/rt_checkpoint.h"
#include "runtime/rt_ops.h"

enum { RT_DENSE = 0, RT_IMAGE_SUPERCLASS, RT_IMAGE_LEARNED };

typedef struct {
    int img_size, in_chans, patch, dim, depth, heads, mlp_dim, num_classes;
    int routing, experts, top_k, moe_layers;
    float mean[4], std[4];
    char **class_names; /* [num_classes] or NULL */
} rt_config;

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    rt_linear qkv, proj;
    rt_linear *fc1, *fc2; /* one (dense block) or E (MoE block) */
} rt_block;

typedef struct {
    rt_config c;
    int T, first_moe;
    rt_linear patch, head;
    const float *cls, *pos, *norm_w, *norm_b, *router;
    rt_block *blocks;
    rt_linear *mlps;   /* every fc1/fc2, the blocks point in */
    void **owned;      /* quantized or dequantized copies */
    int n_owned;
    int int8;
    /* An int8 file's expert weights are checked (scales finite and >= 0, no -128) when an image
     * first routes to them, not at open: checking at open reads every expert's pages, which
     * per-image routing exists to leave alone (docs/EDGE.md, "Expert paging"). */
    atomic_uchar *checked; /* [depth][experts]: 1 once that expert's tensors passed; NULL: all checked at open */
    int32_t *expert_sums;  /* [depth][experts][mlp_dim + dim]: fc1's and fc2's weight sums (rt_linear.ws), made
                            * with the check */
} rt_model;

/* One thread's buffers for one image (sized at open); scores and kt hold the attention scratch
 * of nt threads (an image split over threads: rt_model_forward). */
typedef struct {
    float *patches, *x, *ln, *qkv, *att, *branch, *h, *mix, *scores, *kt, *probs, *gates, *cls;
    int *ex;
    int nt;
    rt_i8_scratch i8;
    char err[320]; /* why the last rt_model_forward failed */
} rt_work;

/* The config JSON text (rt_config.c). 0, or -1 with err and *status. */
int rt_config_parse(rt_config *c, const char *text, char *err, size_t errlen, int *status);
void rt_config_free(rt_config *c);

/* Reads the config and binds every tensor (int8: quantizes fp32 weights, or uses an int8
 * checkpoint's in place, checking the shared weights' values and scales here and each
 * expert's at its first use; fp32: dequantizes an int8 checkpoint's). 0, or -1 with
 * err/status. */
int rt_model_load(rt_model *m, rt_checkpoint *ck, int int8, char *err, size_t errlen, int *status);
void rt_model_free(rt_model *m);

/* An int8 file's weights q [N, K] and scales s [N] of the product `name`: scales finite and
 * >= 0, no -128 (rt_kernels.h). 0, or -1 with the message in err. */
int rt_check_i8(const int8_t *q, const float *s, int N, int K, const char *name, char *err, size_t errlen);
/* ws[n] = Σ_k q[n·K + k], n < N (the int8 kernels' correction term, rt_linear.ws). */
void rt_weight_sums(int32_t *ws, const int8_t *q, int N, int K);

/* nt >= 1: the threads one image may be split over (rt_model_forward). */
int rt_work_init(rt_work *w, const rt_model *m, int nt);
void rt_work_free(rt_work *w);

/* One image: x0 normalized pixels [C, S, S] → logits [K]; routes [top_k] (per-image MoE).
 * nt > 1 (at most w->nt): the products' rows and the attention's heads split over nt OpenMP
 * threads (call it outside a parallel region). img NULL: w->patches already hold the image's
 * patches (rt_model_patches_u8). 0, or -1 with w->err when a chosen expert's
 * int8 tensors fail their first-use check (MVMOE_RUN_ERR_FORMAT). */
/* The patches of one raw image (uint8 [C, S, S]) into w->patches, each pixel through its
 * channel's table of normalized values lut[c][v]; then rt_model_forward with img NULL. */
void rt_model_patches_u8(const rt_model *m, rt_work *w, const uint8_t *img, const float (*lut)[256]);

int rt_model_forward(const rt_model *m, const mvmoe_rt_kernels *k, rt_work *w, const float *img, float *logits,
                      int64_t *routes, float adaptive, int nt);

#endif
