#include "model/layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* Arena regions in storage order; each is one field of mvmoe_params. */
enum { R_PATCH_W, R_PATCH_B, R_CLS, R_POS, R_LN1_W, R_LN1_B, R_QKV_W, R_QKV_B, R_PROJ_W, R_PROJ_B,
       R_LN2_W, R_LN2_B, R_FC1_W, R_FC1_B, R_FC2_W, R_FC2_B, R_ROUTER, R_TROUTER, R_NORM_W,
       R_NORM_B, R_HEAD_W, R_HEAD_B, R_COUNT };

int mvmoe_layout_slots(const mvmoe_config *c) {
    int L = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers;
    return c->depth - L + L * c->experts;
}

static void region_sizes(const mvmoe_config *c, size_t sz[R_COUNT]) {
    size_t D = (size_t)c->dim, H = (size_t)c->mlp_dim, depth = (size_t)c->depth;
    size_t T = (size_t)mvmoe_config_tokens(c), S = (size_t)mvmoe_layout_slots(c), E = (size_t)c->experts;
    size_t CPP = (size_t)c->in_chans * c->patch * c->patch;
    sz[R_PATCH_W] = D * CPP;
    sz[R_PATCH_B] = D;
    sz[R_CLS] = D;
    sz[R_POS] = T * D;
    sz[R_LN1_W] = sz[R_LN1_B] = sz[R_LN2_W] = sz[R_LN2_B] = depth * D;
    sz[R_QKV_W] = depth * 3 * D * D;
    sz[R_QKV_B] = depth * 3 * D;
    sz[R_PROJ_W] = depth * D * D;
    sz[R_PROJ_B] = depth * D;
    sz[R_FC1_W] = S * H * D;
    sz[R_FC1_B] = S * H;
    sz[R_FC2_W] = S * D * H;
    sz[R_FC2_B] = S * D;
    int image = c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS || c->routing == MVMOE_ROUTING_IMAGE_LEARNED;
    sz[R_ROUTER] = image ? E * D : 0;
    sz[R_TROUTER] = c->routing == MVMOE_ROUTING_TOKEN_LEARNED ? (size_t)c->moe_layers * E * D : 0;
    sz[R_NORM_W] = sz[R_NORM_B] = D;
    sz[R_HEAD_W] = (size_t)c->num_classes * D;
    sz[R_HEAD_B] = (size_t)c->num_classes;
}

static void region_offsets(const mvmoe_config *c, size_t off[R_COUNT + 1]) {
    size_t sz[R_COUNT];
    region_sizes(c, sz);
    off[0] = 0;
    /* each region starts on a 16-float (64-byte) boundary for aligned vector loads */
    for (int r = 0; r < R_COUNT; r++) off[r + 1] = (off[r] + sz[r] + 15) / 16 * 16;
}

size_t mvmoe_layout_arena_floats(const mvmoe_config *c) {
    size_t off[R_COUNT + 1];
    region_offsets(c, off);
    return off[R_COUNT];
}

int mvmoe_layout_table_cap(const mvmoe_config *c) {
    int Lm = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers;
    return 8 + c->depth * 8 + mvmoe_layout_slots(c) * 4 + Lm + 1;
}

void mvmoe_params_view(mvmoe_params *p, float *base, const mvmoe_config *c) {
    size_t off[R_COUNT + 1], sz[R_COUNT];
    region_offsets(c, off);
    region_sizes(c, sz);
    float **f[R_COUNT] = {&p->patch_w, &p->patch_b, &p->cls,    &p->pos,    &p->ln1_w,  &p->ln1_b,
                          &p->qkv_w,   &p->qkv_b,   &p->proj_w, &p->proj_b, &p->ln2_w,  &p->ln2_b,
                          &p->fc1_w,   &p->fc1_b,   &p->fc2_w,  &p->fc2_b,  &p->router_w,
                          &p->trouter_w, &p->norm_w, &p->norm_b, &p->head_w, &p->head_b};
    for (int r = 0; r < R_COUNT; r++) *f[r] = sz[r] ? base + off[r] : NULL;
}

int mvmoe_mlp_slot(const mvmoe_config *c, int block, int e) {
    int L = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers;
    int first_moe = c->depth - L;
    if (block < first_moe) return block;
    return first_moe + (block - first_moe) * c->experts + e;
}

static mvmoe_status add(mvmoe_layout *L, int cap, size_t offset, int decay, int ndim,
                        const int64_t *shape, const char *fmt, int i, int e) {
    if (L->n >= cap) MVMOE_FAIL(MVMOE_ERR_INVALID, "layout: too many tensors (internal)");
    mvmoe_tensor_info *t = &L->t[L->n++];
    snprintf(t->name, sizeof t->name, fmt, i, e);
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->count *= (size_t)shape[d];
    }
    t->offset = offset;
    t->decay = decay;
    return MVMOE_OK;
}

mvmoe_status mvmoe_layout_build(mvmoe_layout *L, const mvmoe_config *c) {
    memset(L, 0, sizeof *L);
    MVMOE_TRY(mvmoe_config_validate(c));
    size_t off[R_COUNT + 1];
    region_offsets(c, off);
    int64_t D = c->dim, H = c->mlp_dim, T = mvmoe_config_tokens(c), E = c->experts,
            K = c->num_classes, P = c->patch, C = c->in_chans;
    int Lm = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers;
    int slots = mvmoe_layout_slots(c);
    int cap = mvmoe_layout_table_cap(c);
    MVMOE_ALLOC(L->t, cap, "tensor table");
    L->slots = slots;
    L->total = off[R_COUNT];
#define ADD(o, dec, nd, fmt, i, e, ...)                                      \
    do {                                                                     \
        int64_t shp_[] = {__VA_ARGS__};                                      \
        mvmoe_status s_ = add(L, cap, (o), (dec), (nd), shp_, (fmt), (i), (e)); \
        if (s_) { mvmoe_layout_free(L); return s_; }                         \
    } while (0)
    ADD(off[R_PATCH_W], 1, 4, "patch_embed.proj.weight%.0d%.0d", 0, 0, D, C, P, P);
    ADD(off[R_PATCH_B], 0, 1, "patch_embed.proj.bias%.0d%.0d", 0, 0, D);
    ADD(off[R_CLS], 0, 3, "cls_token%.0d%.0d", 0, 0, 1, 1, D);
    ADD(off[R_POS], 0, 3, "pos_embed%.0d%.0d", 0, 0, 1, T, D);
    for (int i = 0; i < c->depth; i++) {
        size_t ui = (size_t)i;
        ADD(off[R_LN1_W] + ui * D, 0, 1, "blocks.%d.norm1.weight%.0d", i, 0, D);
        ADD(off[R_LN1_B] + ui * D, 0, 1, "blocks.%d.norm1.bias%.0d", i, 0, D);
        ADD(off[R_QKV_W] + ui * 3 * D * D, 1, 2, "blocks.%d.attn.qkv.weight%.0d", i, 0, 3 * D, D);
        ADD(off[R_QKV_B] + ui * 3 * D, 0, 1, "blocks.%d.attn.qkv.bias%.0d", i, 0, 3 * D);
        ADD(off[R_PROJ_W] + ui * D * D, 1, 2, "blocks.%d.attn.proj.weight%.0d", i, 0, D, D);
        ADD(off[R_PROJ_B] + ui * D, 0, 1, "blocks.%d.attn.proj.bias%.0d", i, 0, D);
        ADD(off[R_LN2_W] + ui * D, 0, 1, "blocks.%d.norm2.weight%.0d", i, 0, D);
        ADD(off[R_LN2_B] + ui * D, 0, 1, "blocks.%d.norm2.bias%.0d", i, 0, D);
        int moe = i >= c->depth - Lm;
        if (moe && c->routing == MVMOE_ROUTING_TOKEN_LEARNED) {
            int l = i - (c->depth - Lm);
            ADD(off[R_TROUTER] + (size_t)l * E * D, 1, 2, "blocks.%d.mlp.router.weight%.0d", i, 0, E, D);
        }
        int ne = moe ? c->experts : 1;
        for (int e = 0; e < ne; e++) {
            size_t s = (size_t)mvmoe_mlp_slot(c, i, e);
            if (moe) {
                ADD(off[R_FC1_W] + s * H * D, 1, 2, "blocks.%d.mlp.experts.%d.fc1.weight", i, e, H, D);
                ADD(off[R_FC1_B] + s * H, 0, 1, "blocks.%d.mlp.experts.%d.fc1.bias", i, e, H);
                ADD(off[R_FC2_W] + s * D * H, 1, 2, "blocks.%d.mlp.experts.%d.fc2.weight", i, e, D, H);
                ADD(off[R_FC2_B] + s * D, 0, 1, "blocks.%d.mlp.experts.%d.fc2.bias", i, e, D);
            } else {
                ADD(off[R_FC1_W] + s * H * D, 1, 2, "blocks.%d.mlp.fc1.weight%.0d", i, 0, H, D);
                ADD(off[R_FC1_B] + s * H, 0, 1, "blocks.%d.mlp.fc1.bias%.0d", i, 0, H);
                ADD(off[R_FC2_W] + s * D * H, 1, 2, "blocks.%d.mlp.fc2.weight%.0d", i, 0, D, H);
                ADD(off[R_FC2_B] + s * D, 0, 1, "blocks.%d.mlp.fc2.bias%.0d", i, 0, D);
            }
        }
    }
    if (c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS || c->routing == MVMOE_ROUTING_IMAGE_LEARNED)
        ADD(off[R_ROUTER], 1, 2, "router.weight%.0d%.0d", 0, 0, E, D);
    ADD(off[R_NORM_W], 0, 1, "norm.weight%.0d%.0d", 0, 0, D);
    ADD(off[R_NORM_B], 0, 1, "norm.bias%.0d%.0d", 0, 0, D);
    ADD(off[R_HEAD_W], 1, 2, "head.weight%.0d%.0d", 0, 0, K, D);
    ADD(off[R_HEAD_B], 0, 1, "head.bias%.0d%.0d", 0, 0, K);
#undef ADD
    return MVMOE_OK;
}

void mvmoe_layout_free(mvmoe_layout *L) {
    free(L->t);
    memset(L, 0, sizeof *L);
}

/* ---------------------------------------------------------------- parameter counts */
size_t mvmoe_config_num_params(const mvmoe_config *c) {
    mvmoe_layout L;
    if (mvmoe_layout_build(&L, c) != MVMOE_OK) return 0;
    size_t n = 0;
    for (int i = 0; i < L.n; i++) n += L.t[i].count;
    mvmoe_layout_free(&L);
    return n;
}

size_t mvmoe_config_active_params(const mvmoe_config *c) {
    size_t all = mvmoe_config_num_params(c);
    if (c->routing == MVMOE_ROUTING_DENSE || all == 0) return all;
    /* an image (or token) uses k of the E experts of each MoE block */
    size_t D = (size_t)c->dim, H = (size_t)c->mlp_dim, mlp = 2 * D * H + H + D;
    return all - (size_t)c->moe_layers * (size_t)(c->experts - c->top_k) * mlp;
}

const mvmoe_tensor_info *mvmoe_layout_find(const mvmoe_layout *L, const char *name) {
    for (int i = 0; i < L->n; i++)
        if (strcmp(L->t[i].name, name) == 0) return &L->t[i];
    return NULL;
}

static int ends_with(const char *s, const char *tail) {
    const size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

int mvmoe_layout_is_int8(const char *name) {
    return strcmp(name, "patch_embed.proj.weight") == 0 || ends_with(name, ".attn.qkv.weight") ||
           ends_with(name, ".attn.proj.weight") || ends_with(name, ".fc1.weight") ||
           ends_with(name, ".fc2.weight");
}
