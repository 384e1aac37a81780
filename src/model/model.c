/* Model lifetime: allocation, timm-style initialization, inference entry point. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/augment.h"
#include "kernels/kernels.h"
#include "model/model.h"

mvmoe_status mvmoe_model_alloc(mvmoe_model **out, const mvmoe_config *c) {
    *out = NULL;
    MVMOE_TRY(mvmoe_config_validate(c));
    mvmoe_model *m;
    MVMOE_ALLOC(m, 1, "model");
    mvmoe_status s = mvmoe_config_copy(&m->cfg, c);
    if (s == MVMOE_OK) s = mvmoe_layout_build(&m->layout, &m->cfg);
    if (s == MVMOE_OK) {
        m->param_mem = mvmoe_aligned_alloc_checked(sizeof(float) * m->layout.total, "parameters",
                                                   __FILE__, __LINE__);
        if (!m->param_mem) s = MVMOE_ERR_NOMEM;
    }
    if (s != MVMOE_OK) {
        mvmoe_model_free(m);
        return s;
    }
    mvmoe_params_view(&m->p, m->param_mem, &m->cfg);
    m->ckpt_step = -1;
    m->packed.version = -1;
    *out = m;
    return MVMOE_OK;
}

mvmoe_status mvmoe_model_upcycle(mvmoe_model *moe, const mvmoe_model *dense) {
    const mvmoe_config *a = &moe->cfg, *b = &dense->cfg;
    if (b->routing != MVMOE_ROUTING_DENSE)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "upcycling starts from a dense model; this one has routing '%s'",
                   mvmoe_routing_name(b->routing));
    if (a->img_size != b->img_size || a->in_chans != b->in_chans || a->patch != b->patch ||
        a->dim != b->dim || a->depth != b->depth || a->mlp_dim != b->mlp_dim ||
        a->num_classes != b->num_classes)
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "upcycling needs the same shape: MoE img %d ch %d patch %d dim %d depth %d mlp %d "
                   "classes %d vs dense img %d ch %d patch %d dim %d depth %d mlp %d classes %d",
                   a->img_size, a->in_chans, a->patch, a->dim, a->depth, a->mlp_dim, a->num_classes,
                   b->img_size, b->in_chans, b->patch, b->dim, b->depth, b->mlp_dim, b->num_classes);
    const mvmoe_params *s = &dense->p;
    mvmoe_params *d = &moe->p;
    size_t D = (size_t)a->dim, H = (size_t)a->mlp_dim, T = (size_t)mvmoe_config_tokens(a),
           CPP = (size_t)a->in_chans * a->patch * a->patch, L = (size_t)a->depth, K = (size_t)a->num_classes;
#define COPY(f, n) memcpy(d->f, s->f, sizeof(float) * (n))
    COPY(patch_w, D * CPP); COPY(patch_b, D); COPY(cls, D); COPY(pos, T * D);
    COPY(ln1_w, L * D); COPY(ln1_b, L * D); COPY(qkv_w, L * 3 * D * D); COPY(qkv_b, L * 3 * D);
    COPY(proj_w, L * D * D); COPY(proj_b, L * D); COPY(ln2_w, L * D); COPY(ln2_b, L * D);
    COPY(norm_w, D); COPY(norm_b, D); COPY(head_w, K * D); COPY(head_b, K);
#undef COPY
    /* every expert of a MoE block starts as that block's dense MLP (sparse upcycling,
     * Komatsuzaki et al. 2023); the router keeps its fresh init */
    int E = a->routing == MVMOE_ROUTING_DENSE ? 1 : a->experts;
    for (int l = 0; l < a->depth; l++) {
        size_t from = (size_t)mvmoe_mlp_slot(b, l, 0);
        int ne = l >= a->depth - (a->routing == MVMOE_ROUTING_DENSE ? 0 : a->moe_layers) ? E : 1;
        for (int e = 0; e < ne; e++) {
            size_t to = (size_t)mvmoe_mlp_slot(a, l, e);
            memcpy(d->fc1_w + to * H * D, s->fc1_w + from * H * D, sizeof(float) * H * D);
            memcpy(d->fc1_b + to * H, s->fc1_b + from * H, sizeof(float) * H);
            memcpy(d->fc2_w + to * D * H, s->fc2_w + from * D * H, sizeof(float) * D * H);
            memcpy(d->fc2_b + to * D, s->fc2_b + from * D, sizeof(float) * D);
        }
    }
    mvmoe_model_params_changed(moe);
    return MVMOE_OK;
}

/* Truncated normal on [-2σ, 2σ] by rejection (timm's trunc_normal_ for ViT linears). */
static float trunc_normal(mvmoe_rng *r, float std) {
    for (;;) {
        float z = mvmoe_rng_normal(r);
        if (z >= -2.0f && z <= 2.0f) return z * std;
    }
}

void mvmoe_model_init_weights(mvmoe_model *m, uint64_t seed) {
    memset(m->param_mem, 0, sizeof(float) * m->layout.total);
    for (int i = 0; i < m->layout.n; i++) {
        const mvmoe_tensor_info *t = &m->layout.t[i];
        float *w = m->param_mem + t->offset;
        mvmoe_rng r;
        mvmoe_rng_init(&r, seed, (uint64_t)i + 1);
        const char *n = t->name;
        size_t len = strlen(n);
        int is_bias = len > 5 && strcmp(n + len - 5, ".bias") == 0;
        if (strstr(n, "norm") && !is_bias) {
            for (size_t k = 0; k < t->count; k++) w[k] = 1.0f; /* LayerNorm γ = 1, β = 0 */
        } else if (strncmp(n, "patch_embed", 11) == 0) {
            /* timm keeps PyTorch's Conv2d default: U(±1/√fan_in) for weight and bias */
            float bound = 1.0f / sqrtf((float)(m->cfg.in_chans * m->cfg.patch * m->cfg.patch));
            for (size_t k = 0; k < t->count; k++) w[k] = (2.0f * mvmoe_rng_uniform(&r) - 1.0f) * bound;
        } else if (strcmp(n, "cls_token") == 0) {
            for (size_t k = 0; k < t->count; k++) w[k] = 1e-6f * mvmoe_rng_normal(&r);
        } else if (strcmp(n, "pos_embed") == 0 || (t->decay && !is_bias)) {
            for (size_t k = 0; k < t->count; k++) w[k] = trunc_normal(&r, 0.02f);
        } /* biases stay 0 */
    }
    mvmoe_model_params_changed(m);
}

mvmoe_status mvmoe_model_create(mvmoe_model **out, const mvmoe_config *c, uint64_t seed) {
    MVMOE_TRY(mvmoe_model_alloc(out, c));
    mvmoe_model_init_weights(*out, seed);
    return MVMOE_OK;
}

void mvmoe_model_free(mvmoe_model *m) {
    if (!m) return;
    mvmoe_config_free(&m->cfg);
    mvmoe_layout_free(&m->layout);
    free(m->param_mem);
    free(m->grad_mem);
    free(m->adam_m);
    free(m->adam_v);
    free(m->ema_mem);
    mvmoe_acts_free(&m->train_acts);
    mvmoe_acts_free(&m->infer_acts);
    free(m->packed.mem);
    free(m);
}

void mvmoe_model_params_changed(mvmoe_model *m) { m->params_version++; }

size_t mvmoe_model_packed_floats(const mvmoe_config *c) {
    const int D = c->dim, H = c->mlp_dim, CPP = c->in_chans * c->patch * c->patch;
    const size_t L = (size_t)c->depth, S = (size_t)mvmoe_layout_slots(c);
    const size_t patch = mvmoe_linear_packed_size(D, CPP), qkv = mvmoe_linear_packed_size(3 * D, D),
                 proj = mvmoe_linear_packed_size(D, D), fc1 = mvmoe_linear_packed_size(H, D),
                 fc2 = mvmoe_linear_packed_size(D, H);
    if (!patch || !qkv || !proj || !fc1 || !fc2) return 0;
    return patch + L * (qkv + proj) + S * (fc1 + fc2);
}

mvmoe_status mvmoe_model_pack_weights(mvmoe_model *m) {
    mvmoe_packed *k = &m->packed;
    if (k->mem && k->precision != (int)mvmoe_get_precision()) { /* the precision changed: other copies */
        free(k->mem);
        memset(k, 0, sizeof *k);
        k->version = -1;
    }
    if (k->mem && k->version == m->params_version) return MVMOE_OK;
    const mvmoe_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_dim, CPP = c->in_chans * c->patch * c->patch, L = c->depth,
              S = mvmoe_layout_slots(c);
    if (!k->mem) {
        const size_t total = mvmoe_model_packed_floats(c);
        if (!total) return MVMOE_OK; /* unavailable: the plain weights serve */
        MVMOE_ALLOC_ALIGNED(k->mem, total, "packed inference weights");
        k->n_qkv = mvmoe_linear_packed_size(3 * D, D), k->n_proj = mvmoe_linear_packed_size(D, D);
        k->n_fc1 = mvmoe_linear_packed_size(H, D), k->n_fc2 = mvmoe_linear_packed_size(D, H);
        k->patch_w = k->mem;
        k->qkv_w = k->patch_w + mvmoe_linear_packed_size(D, CPP);
        k->proj_w = k->qkv_w + (size_t)L * k->n_qkv;
        k->fc1_w = k->proj_w + (size_t)L * k->n_proj;
        k->fc2_w = k->fc1_w + (size_t)S * k->n_fc1;
    }
    const mvmoe_params *p = &m->p;
    int bad = mvmoe_linear_pack(k->patch_w, p->patch_w, D, CPP);
    for (int l = 0; l < L; l++) {
        bad |= mvmoe_linear_pack(k->qkv_w + l * k->n_qkv, p->qkv_w + (size_t)l * 3 * D * D, 3 * D, D);
        bad |= mvmoe_linear_pack(k->proj_w + l * k->n_proj, p->proj_w + (size_t)l * D * D, D, D);
    }
    for (int s = 0; s < S; s++) {
        bad |= mvmoe_linear_pack(k->fc1_w + s * k->n_fc1, p->fc1_w + (size_t)s * H * D, H, D);
        bad |= mvmoe_linear_pack(k->fc2_w + s * k->n_fc2, p->fc2_w + (size_t)s * D * H, D, H);
    }
    if (bad) { /* cannot happen once the sizes are known; stay on the plain weights */
        free(k->mem);
        memset(k, 0, sizeof *k);
        k->version = -1;
        return MVMOE_OK;
    }
    k->version = m->params_version;
    k->precision = (int)mvmoe_get_precision();
    return MVMOE_OK;
}

const mvmoe_config *mvmoe_model_config(const mvmoe_model *m) { return &m->cfg; }
mvmoe_config *mvmoe_model_config_mut(mvmoe_model *m) { return &m->cfg; }

mvmoe_status mvmoe_model_train_init(mvmoe_model *m, int B) {
    if (B < 1) MVMOE_FAIL(MVMOE_ERR_INVALID, "batch size %d must be >= 1", B);
    size_t n = m->layout.total;
    if (!m->grad_mem) {
        MVMOE_ALLOC_ALIGNED(m->grad_mem, n, "gradients");
        mvmoe_params_view(&m->g, m->grad_mem, &m->cfg);
    }
    if (!m->adam_m) MVMOE_ALLOC_ALIGNED(m->adam_m, n, "AdamW first moments");
    if (!m->adam_v) MVMOE_ALLOC_ALIGNED(m->adam_v, n, "AdamW second moments");
    if (m->train_acts.B != B) {
        mvmoe_acts_free(&m->train_acts);
        MVMOE_TRY(mvmoe_acts_init(&m->train_acts, &m->cfg, B, 1));
    }
    return MVMOE_OK;
}

/* Inference runs in chunks of at most this many images so the workspace stays small. */
#define INFER_CHUNK 64

mvmoe_status mvmoe_model_predict(mvmoe_model *m, const uint8_t *images, int n, float *logits,
                                 int32_t *routes) {
    const mvmoe_config *c = &m->cfg;
    if (n < 0) MVMOE_FAIL(MVMOE_ERR_INVALID, "negative image count %d", n);
    if (routes && c->routing == MVMOE_ROUTING_DENSE)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "routes asked of a dense model, which has no experts; pass "
                   "routes = NULL");
    if (routes && c->routing == MVMOE_ROUTING_TOKEN_LEARNED)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "routes per image asked of a token-learned model, whose "
                   "routers choose experts per token in each MoE block; pass routes = NULL");
    int chunk = n < INFER_CHUNK ? (n > 0 ? n : 1) : INFER_CHUNK;
    MVMOE_TRY(mvmoe_model_pack_weights(m));
    if (m->infer_acts.B < chunk) {
        mvmoe_acts_free(&m->infer_acts);
        MVMOE_TRY(mvmoe_acts_init(&m->infer_acts, c, chunk, 0));
    }
    mvmoe_acts *a = &m->infer_acts;
    /* a dataset view over the caller's images, so normalization has one implementation */
    mvmoe_dataset view = {.n = n, .c = c->in_chans, .h = c->img_size, .w = c->img_size,
                          .num_classes = c->num_classes, .images = (uint8_t *)images};
    int32_t idx[INFER_CHUNK];
    const int k = c->top_k;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int B = n - i0 < chunk ? n - i0 : chunk;
        for (int i = 0; i < B; i++) idx[i] = i0 + i;
        MVMOE_TRY(mvmoe_augment_batch(a->img, &view, idx, B, c->img_size, c->mean, c->std, NULL, 0, 0));
        mvmoe_vit_forward(m, a, B, NULL);
        memcpy(logits + (size_t)i0 * c->num_classes, a->logits,
               sizeof(float) * (size_t)B * c->num_classes);
        /* per-image routing: one plan over the B images, which every MoE block follows */
        for (size_t j = 0; routes && j < (size_t)B * k; j++)
            routes[(size_t)i0 * k + j] = a->plans[0].pos[j] < 0 ? -1 : a->plans[0].expert[j];
    }
    return MVMOE_OK;
}

mvmoe_status mvmoe_model_logits(mvmoe_model *m, const uint8_t *images, int n, float *logits) {
    return mvmoe_model_predict(m, images, n, logits, NULL);
}

void mvmoe_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
}
