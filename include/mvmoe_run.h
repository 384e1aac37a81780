/* mvmoe_run: the dependency-free inference runtime for mvmoe checkpoints (docs/EDGE.md,
 * "Runtime"). Plain C17 + libm (+ OpenMP when built with it): no oneDNN, BLAS, zlib or JSON
 * library, so it builds for any CPU a C compiler targets (x86-64 and arm64 are tested).
 *
 * It runs the inference forward of docs/CHECKPOINT_FORMAT.md §4 for dense models and every
 * per-image routing mode (image-superclass, image-learned; any top_k; adaptive k); a
 * token-learned model is refused at open (MVMOE_RUN_ERR_UNSUPPORTED).
 *
 * The checkpoint is memory-mapped read-only and its float32 weights are used in place (no
 * copy), so at batch 1 an image reads only the shared weights and its k experts' pages.
 * Everything an image needs is allocated at open: running images allocates nothing.
 *
 *     mvmoe_run *rt;
 *     mvmoe_run_options o = mvmoe_run_defaults();
 *     if (mvmoe_run_open("model.safetensors", &o, &rt)) { puts(mvmoe_run_error(rt)); ... }
 *     mvmoe_run_images_u8(rt, pixels, n, logits, routes);
 *     mvmoe_run_close(rt);
 *
 * A context is not safe to use from two threads at once (it owns its work buffers); open one
 * per thread, or let it thread itself (options.threads). */
#ifndef MVMOE_RUN_H
#define MVMOE_RUN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MVMOE_RUN_OK = 0,
    MVMOE_RUN_ERR_IO,          /* the file could not be opened, mapped or read */
    MVMOE_RUN_ERR_FORMAT,      /* the file is not a valid mvmoe checkpoint */
    MVMOE_RUN_ERR_NOMEM,       /* an allocation failed */
    MVMOE_RUN_ERR_INVALID,     /* a bad argument */
    MVMOE_RUN_ERR_UNSUPPORTED  /* a valid checkpoint this runtime does not run */
} mvmoe_run_status;

typedef enum { MVMOE_RUN_FP32 = 0, MVMOE_RUN_INT8 = 1 } mvmoe_run_precision;

typedef struct mvmoe_run_options {
    /* FP32: the products in float32 (as `mvmoe eval`). INT8: the weight products in int8
     * (docs/EDGE.md, "int8"); an int8 checkpoint (mvmoe quantize) uses its stored int8 weights
     * in place, an fp32 one is quantized at open. An int8 checkpoint under FP32 runs its
     * weights dequantized (a copy). */
    mvmoe_run_precision precision;
    int threads;      /* images run in parallel on this many threads (0: OpenMP's default) */
    float adaptive_k; /* top_k >= 2 models: keep the 2nd..k-th experts only for images whose top
                       * router probability is below this (0: off, plain top-k; as eval's
                       * --adaptive-k, docs/MOE.md) */
    int random_access; /* 1: madvise(MADV_RANDOM) on the map: no read-ahead, so an image reads
                        * only the pages it uses (expert paging; a slower cold start). Either
                        * way an int8 file's expert weights are checked (no -128, scales finite
                        * and >= 0) when an image first routes to them, not at open */
    int split_image;   /* 1: a call with one image splits it over `threads` threads (rows of
                        * the products, query rows of the attention; fp32 within rounding of
                        * one thread, int8 the same bits): ViT-Tiny 1.4x faster on 2 free
                        * cores (docs/EDGE.md). 0 (default): an image runs on one thread. Many
                        * short parallel regions per image: slower when a core is busy */
} mvmoe_run_options;

typedef struct mvmoe_run mvmoe_run;

typedef struct mvmoe_run_info {
    int img_size, in_chans, patch, dim, depth, heads, mlp_dim, num_classes;
    const char *routing; /* "dense", "image-superclass" or "image-learned" */
    int experts, top_k, moe_layers;
    float mean[4], std[4]; /* per channel (in_chans of them) */
    const char *const *class_names; /* [num_classes] entries may be NULL; or NULL */
    const char *kernels;            /* the kernel set in use: "plain", "avx2", "avx512-vnni", "neon", ... */
    mvmoe_run_precision precision;
    size_t file_bytes;              /* size of the mapped checkpoint */
} mvmoe_run_info;

/* Default options: FP32, threads 0, adaptive_k 0. */
mvmoe_run_options mvmoe_run_defaults(void);

/* Opens the checkpoint at `path` (opt NULL: defaults). Returns MVMOE_RUN_OK and *out, or an
 * error status; *out is then still a context that only holds the message (mvmoe_run_error),
 * or NULL when even that could not be allocated. Close it either way. */
int mvmoe_run_open(const char *path, const mvmoe_run_options *opt, mvmoe_run **out);

/* The message of the last failure ("" when none); NULL ctx: "out of memory". */
const char *mvmoe_run_error(const mvmoe_run *ctx);

/* What the model is; the strings live as long as ctx. */
mvmoe_run_info mvmoe_run_get_info(const mvmoe_run *ctx);

/* Runs n images (MVMOE_RUN_ERR_FORMAT, naming the image and tensor, when an int8 file's
 * expert fails its first-use check: its logits are then not written). Input: raw pixels, uint8, image after image, each in_chans x img_size x
 * img_size (channel planes, row-major); normalized inside as (v/255 - mean[c]) / std[c].
 * logits: [n, num_classes] (required). routes: NULL, or [n, top_k] int64 per-image experts,
 * most probable first, -1 for a choice adaptive k did not run; dense models write nothing. */
int mvmoe_run_images_u8(mvmoe_run *ctx, const uint8_t *pixels, int n, float *logits, int64_t *routes);

/* The same from already normalized float32 pixels (same layout). */
int mvmoe_run_images_f32(mvmoe_run *ctx, const float *normalized, int n, float *logits, int64_t *routes);

/* The read-only map of the checkpoint file: its bytes, and *base its address. */
size_t mvmoe_run_mapping(const mvmoe_run *ctx, const void **base);
/* Tensor i (0 ≤ i < count) of the checkpoint: its name and the file bytes [offset,
 * offset+bytes) it occupies. Returns the tensor count; i out of range leaves the outputs alone.
 * (What `mvmoe-run --page-report` uses to tell which experts' pages an image read.) */
int mvmoe_run_tensor(const mvmoe_run *ctx, int i, const char **name, size_t *offset, size_t *bytes);

/* Releases everything (NULL is fine). */
void mvmoe_run_close(mvmoe_run *ctx);

#ifdef __cplusplus
}
#endif
#endif
