/* Parameter layout: one flat float arena per lifetime (weights, gradients, AdamW m and v all
 * share it), reached through mvmoe_params, a struct of named, shape-commented pointers, and
 * through a tensor table (contract names, shapes, offsets) used by checkpoints and AdamW.
 *
 * MLP weights are stacked in "slots": dense block i (i < depth - L) owns slot i; MoE block
 * depth-L+l owns slots (depth-L) + l·E + e for its E experts (expert weights stacked
 * (moe_layers, E, ...) as the architecture asks). Dense models simply have depth slots. */
#ifndef MVMOE_MODEL_LAYOUT_H
#define MVMOE_MODEL_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "mvmoe.h"

typedef struct mvmoe_params {
    float *patch_w;  /* [D, C, P, P] */
    float *patch_b;  /* [D] */
    float *cls;      /* [D] */
    float *pos;      /* [T, D], T = 1 + N */
    float *ln1_w;    /* [depth, D] */
    float *ln1_b;    /* [depth, D] */
    float *qkv_w;    /* [depth, 3D, D] */
    float *qkv_b;    /* [depth, 3D] */
    float *proj_w;   /* [depth, D, D] */
    float *proj_b;   /* [depth, D] */
    float *ln2_w;    /* [depth, D] */
    float *ln2_b;    /* [depth, D] */
    float *fc1_w;    /* [slots, H, D] */
    float *fc1_b;    /* [slots, H] */
    float *fc2_w;    /* [slots, D, H] */
    float *fc2_b;    /* [slots, D] */
    float *router_w; /* [E, D] per-image router (image-* routing), else NULL */
    float *trouter_w; /* [L, E, D] per-token routers (token-learned), else NULL */
    float *norm_w;   /* [D] */
    float *norm_b;   /* [D] */
    float *head_w;   /* [K, D] */
    float *head_b;   /* [K] */
} mvmoe_params;

typedef struct mvmoe_tensor_info {
    char name[64];   /* contract (timm) name */
    int ndim;
    int64_t shape[4];
    size_t offset;   /* into the arena, in floats */
    size_t count;
    int decay;       /* AdamW weight decay applies (matmul/conv weights only) */
} mvmoe_tensor_info;

typedef struct mvmoe_layout {
    mvmoe_tensor_info *t;
    int n;
    size_t total;    /* floats in the arena */
    int slots;       /* MLP slots */
} mvmoe_layout;

/* The parameter arena's size table, read by mvmoe_layout_build and the memory estimate
 * (memory.c) alike: floats of the arena (each region padded to 16 floats), entries of the
 * tensor table, and MLP slots, for a valid config c (mvmoe_config_validate's bounds keep
 * every size below 2^51 floats: no size_t overflow). Parameter counts (mvmoe.h) live here
 * too, so that the config module needs nothing of this one. */
size_t mvmoe_layout_arena_floats(const mvmoe_config *c);
int mvmoe_layout_table_cap(const mvmoe_config *c);
int mvmoe_layout_slots(const mvmoe_config *c);

mvmoe_status mvmoe_layout_build(mvmoe_layout *L, const mvmoe_config *c);
void mvmoe_layout_free(mvmoe_layout *L);
/* Points every field of p into `base` (an arena of L->total floats) per config c. */
void mvmoe_params_view(mvmoe_params *p, float *base, const mvmoe_config *c);
/* MLP slot of block `block`, expert `e` (e = 0 for dense blocks). */
int mvmoe_mlp_slot(const mvmoe_config *c, int block, int e);
const mvmoe_tensor_info *mvmoe_layout_find(const mvmoe_layout *L, const char *name);
/* 1 for the weights that MVMOE_PRECISION_INT8 runs in int8 (those with packed copies: patch
 * embedding, qkv, proj, fc1, fc2 of dense blocks and experts), else 0. The routers and the
 * head are not among them: a router's flipped choice costs far more than a rounding error,
 * and the head's logits are the output. */
int mvmoe_layout_is_int8(const char *name);

#endif
