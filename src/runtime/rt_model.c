/* Binding a checkpoint's tensors to the model (rt_model.h): every tensor the config needs,
 * with exactly its shape, and no other (docs/CHECKPOINT_FORMAT.md §1, §3, §9). */
#include "runtime/rt_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvmoe_run.h"

#define QUANT_NAME "int8-symmetric-per-output-channel"

typedef struct {
    rt_model *m;
    rt_checkpoint *ck;
    char *err;
    size_t errlen;
    int *status;
} binder;

static int fail(binder *b, int kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    *b->status = kind;
    return -1;
}

static void *own(binder *b, size_t bytes) {
    void **o = realloc(b->m->owned, sizeof *o * (size_t)(b->m->n_owned + 1));
    if (!o) return NULL;
    b->m->owned = o;
    void *p = malloc(bytes ? bytes : 1);
    if (p) o[b->m->n_owned++] = p;
    return p;
}

void rt_weight_sums(int32_t *ws, const int8_t *q, int N, int K) {
    for (int n = 0; n < N; n++) {
        int32_t t = 0;
        for (int k = 0; k < K; k++) t += q[(long)n * K + k];
        ws[n] = t;
    }
}

/* Σ_k q[n·K + k] per output channel (exact: |sum| <= 127·K), for the int8 kernels that need it
 * (rt_kernels.h, linear_i8); NULL when out of memory. */
static int32_t *weight_sums(binder *b, const int8_t *q, int N, int K) {
    int32_t *ws = own(b, sizeof *ws * (size_t)N);
    if (ws) rt_weight_sums(ws, q, N, K);
    return ws;
}

static void shape_text(char *buf, size_t cap, int nd, const int64_t *s) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < nd && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)s[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Tensor `name` of dtype dt and shape want[nd]; NULL after setting the error. */
static rt_tensor *need(binder *b, const char *name, rt_dtype dt, int nd, const int64_t *want) {
    rt_tensor *t = rt_checkpoint_find(b->ck, name);
    if (!t) {
        fail(b, MVMOE_RUN_ERR_FORMAT, "tensor '%s' is missing from the checkpoint (does it match its config?)", name);
        return NULL;
    }
    char a[128], w[128];
    shape_text(a, sizeof a, t->ndim, t->shape);
    shape_text(w, sizeof w, nd, want);
    if (t->ndim != nd || memcmp(t->shape, want, sizeof *want * (size_t)nd) != 0) {
        fail(b, MVMOE_RUN_ERR_FORMAT, "tensor '%s' has shape %s but the config needs %s", name, a, w);
        return NULL;
    }
    if (t->dtype != dt) {
        fail(b, MVMOE_RUN_ERR_FORMAT, "tensor '%s' is %s where %s belongs", name, t->dtype == RT_DT_I8 ? "I8" : "F32",
             dt == RT_DT_I8 ? "I8 (an int8 checkpoint's weight)" : "F32");
        return NULL;
    }
    t->used = 1;
    return t;
}

static const float *need_f32(binder *b, const char *name, int nd, int64_t d0, int64_t d1, int64_t d2) {
    const int64_t s[4] = {d0, d1, d2, 0};
    rt_tensor *t = need(b, name, RT_DT_F32, nd, s);
    return t ? t->data : NULL;
}

/* An int8 file's weights and scales of one product: the scales finite and >= 0, no -128 (the
 * kernels' contract, rt_kernels.h). 0, or -1 with the message in err. */
int rt_check_i8(const int8_t *q, const float *s, int N, int K, const char *name, char *err, size_t errlen) {
    for (int j = 0; j < N; j++)
        if (!(isfinite(s[j]) && s[j] >= 0.0f)) {
            snprintf(err, errlen, "scale %d of '%s' is %g: scales must be finite and >= 0", j, name, (double)s[j]);
            return -1;
        }
    for (long i = 0; i < (long)N * K; i++)
        if (q[i] == -128) {
            snprintf(err, errlen, "'%s' holds -128: int8 weights are -127..127", name);
            return -1;
        }
    return 0;
}

/* A weight product's weights `pfx`.weight (N x K, or [D, C, P, P] for the patch embedding:
 * dims) and bias `pfx`.bias. int8 products in int8 mode get int8 weights; all else fp32.
 * lazy: an int8 file's weights used in place are checked at first use (rt_model_forward). */
static int bind_linear(binder *b, rt_linear *L, const char *pfx, int nd, const int64_t *dims, int int8_product,
                       int has_bias, int lazy) {
    char name[256], sname[272];
    const int N = (int)dims[0];
    int K = 1;
    for (int i = 1; i < nd; i++) K *= (int)dims[i];
    memset(L, 0, sizeof *L);
    L->N = N, L->K = K;
    snprintf(name, sizeof name, "%s.weight", pfx);
    const int stored_i8 = int8_product && b->ck->quantization;
    rt_tensor *t = need(b, name, stored_i8 ? RT_DT_I8 : RT_DT_F32, nd, dims);
    if (!t) return -1;
    if (stored_i8) {
        snprintf(sname, sizeof sname, "%s_scale", name);
        const int64_t sn[1] = {N};
        rt_tensor *st = need(b, sname, RT_DT_F32, 1, sn);
        if (!st) return -1;
        const float *s = st->data;
        const int8_t *q = t->data;
        if (!(lazy && b->m->int8) && rt_check_i8(q, s, N, K, name, b->err, b->errlen)) {
            *b->status = MVMOE_RUN_ERR_FORMAT;
            return -1;
        }
        if (b->m->int8) {
            L->q = q, L->s = s;
            /* the weight sums now where the pages are read anyway; an expert's at its first use
             * (rt_model_forward), so that opening reads no expert page */
            if (!lazy && !(L->ws = weight_sums(b, q, N, K)))
                return fail(b, MVMOE_RUN_ERR_NOMEM, "out of memory for the sums of '%s'", name);
        } else { /* fp32 run of an int8 file: its weights dequantized, as the library does */
            float *w = own(b, sizeof *w * (size_t)N * K);
            if (!w) return fail(b, MVMOE_RUN_ERR_NOMEM, "out of memory dequantizing '%s'", name);
            for (long i = 0; i < (long)N * K; i++) w[i] = (float)q[i] * s[i / K];
            L->w = w;
        }
    } else if (int8_product && b->m->int8) { /* quantized at open */
        const float *w = t->data;
        for (long i = 0; i < (long)N * K; i++)
            if (!isfinite(w[i])) return fail(b, MVMOE_RUN_ERR_FORMAT, "'%s' holds a NaN or infinity", name);
        int8_t *q = own(b, (size_t)N * K);
        float *s = own(b, sizeof *s * (size_t)N);
        if (!q || !s) return fail(b, MVMOE_RUN_ERR_NOMEM, "out of memory quantizing '%s'", name);
        rt_quantize_rows(q, s, w, N, K);
        L->q = q, L->s = s;
        if (!(L->ws = weight_sums(b, q, N, K))) return fail(b, MVMOE_RUN_ERR_NOMEM, "out of memory for '%s'", name);
    } else {
        L->w = t->data;
    }
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", pfx);
        if (!(L->b = need_f32(b, name, 1, N, 0, 0))) return -1;
    }
    return 0;
}

static int bind_mlp(binder *b, rt_linear *fc1, rt_linear *fc2, const char *pfx, int lazy) {
    const rt_config *c = &b->m->c;
    char n[200];
    const int64_t d1[2] = {c->mlp_dim, c->dim}, d2[2] = {c->dim, c->mlp_dim};
    snprintf(n, sizeof n, "%s.fc1", pfx);
    if (bind_linear(b, fc1, n, 2, d1, 1, 1, lazy)) return -1;
    snprintf(n, sizeof n, "%s.fc2", pfx);
    return bind_linear(b, fc2, n, 2, d2, 1, 1, lazy);
}

static int bind_block(binder *b, int l, rt_linear **next_mlp) {
    rt_model *m = b->m;
    const rt_config *c = &m->c;
    rt_block *bl = &m->blocks[l];
    const int D = c->dim;
    char n[160];
#define F32_VEC(dst, what)                                           \
    snprintf(n, sizeof n, "blocks.%d.%s", l, what);                  \
    if (!(dst = need_f32(b, n, 1, D, 0, 0))) return -1;
    F32_VEC(bl->ln1_w, "norm1.weight")
    F32_VEC(bl->ln1_b, "norm1.bias")
    F32_VEC(bl->ln2_w, "norm2.weight")
    F32_VEC(bl->ln2_b, "norm2.bias")
#undef F32_VEC
    const int64_t dq[2] = {3 * D, D}, dp[2] = {D, D};
    snprintf(n, sizeof n, "blocks.%d.attn.qkv", l);
    if (bind_linear(b, &bl->qkv, n, 2, dq, 1, 1, 0)) return -1;
    snprintf(n, sizeof n, "blocks.%d.attn.proj", l);
    if (bind_linear(b, &bl->proj, n, 2, dp, 1, 1, 0)) return -1;
    const int moe = l >= m->first_moe, ne = moe ? c->experts : 1;
    bl->fc1 = *next_mlp, bl->fc2 = *next_mlp + ne;
    *next_mlp += 2 * ne;
    for (int e = 0; e < ne; e++) {
        if (moe) snprintf(n, sizeof n, "blocks.%d.mlp.experts.%d", l, e);
        else snprintf(n, sizeof n, "blocks.%d.mlp", l);
        if (bind_mlp(b, &bl->fc1[e], &bl->fc2[e], n, moe)) return -1;
    }
    return 0;
}

int rt_model_load(rt_model *m, rt_checkpoint *ck, int int8, char *err, size_t errlen, int *status) {
    memset(m, 0, sizeof *m);
    m->int8 = int8;
    binder b = {m, ck, err, errlen, status};
    if (!ck->config)
        return fail(&b, MVMOE_RUN_ERR_UNSUPPORTED,
                    "the checkpoint has no __metadata__[\"config\"] (a plain timm file?): mvmoe-run needs an mvmoe "
                    "checkpoint; `mvmoe eval --heads N` reads plain timm files");
    if (ck->quantization && strcmp(ck->quantization, QUANT_NAME) != 0)
        return fail(&b, MVMOE_RUN_ERR_UNSUPPORTED, "quantization '%s' is unknown (mvmoe-run reads '%s')",
                    ck->quantization, QUANT_NAME);
    if (rt_config_parse(&m->c, ck->config, err, errlen, status)) return -1;
    const rt_config *c = &m->c;
    const int D = c->dim, g = c->img_size / c->patch, L = c->routing == RT_DENSE ? 0 : c->moe_layers;
    m->T = 1 + g * g;
    m->first_moe = c->depth - L;
    const int slots = m->first_moe + L * c->experts;
    m->blocks = calloc((size_t)c->depth, sizeof *m->blocks);
    m->mlps = calloc((size_t)slots * 2, sizeof *m->mlps);
    if (!m->blocks || !m->mlps) return fail(&b, MVMOE_RUN_ERR_NOMEM, "out of memory for the model");
    if (int8 && ck->quantization && L) {
        m->checked = calloc((size_t)c->depth * (size_t)c->experts, sizeof *m->checked);
        m->expert_sums = calloc((size_t)c->depth * (size_t)c->experts * (size_t)(c->mlp_dim + D), sizeof *m->expert_sums);
        if (!m->checked || !m->expert_sums) return fail(&b, MVMOE_RUN_ERR_NOMEM, "out of memory for the model");
    }
    const int64_t dpe[4] = {D, c->in_chans, c->patch, c->patch}, dh[2] = {c->num_classes, D};
    if (bind_linear(&b, &m->patch, "patch_embed.proj", 4, dpe, 1, 1, 0)) return -1;
    if (bind_linear(&b, &m->head, "head", 2, dh, 0, 1, 0)) return -1;
    if (!(m->cls = need_f32(&b, "cls_token", 3, 1, 1, D))) return -1;
    if (!(m->pos = need_f32(&b, "pos_embed", 3, 1, m->T, D))) return -1;
    if (!(m->norm_w = need_f32(&b, "norm.weight", 1, D, 0, 0))) return -1;
    if (!(m->norm_b = need_f32(&b, "norm.bias", 1, D, 0, 0))) return -1;
    if (L && !(m->router = need_f32(&b, "router.weight", 2, c->experts, D, 0))) return -1;
    rt_linear *next = m->mlps;
    for (int l = 0; l < c->depth; l++)
        if (bind_block(&b, l, &next)) return -1;
    for (int i = 0; i < ck->nt; i++)
        if (!ck->t[i].used)
            return fail(&b, MVMOE_RUN_ERR_FORMAT, "tensor '%s' is not part of the model its config describes",
                        ck->t[i].name);
    *status = MVMOE_RUN_OK;
    return 0;
}

void rt_model_free(rt_model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->blocks);
    free(m->mlps);
    free(m->checked);
    free(m->expert_sums);
    rt_config_free(&m->c);
    memset(m, 0, sizeof *m);
}
