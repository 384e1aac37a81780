/* The per-image forward pass (docs/CHECKPOINT_FORMAT.md §4.2, docs/MOE.md): one image on one
 * thread, in buffers sized at open. As in the library, the last block runs on the class row
 * alone after attention (the head reads nothing else), and an MoE block runs only the image's
 * chosen experts, so only their weights' pages are read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "runtime/rt_model.h"

static int imax(int a, int b) { return a > b ? a : b; }

int rt_work_init(rt_work *w, const rt_model *m, int nt) {
    const rt_config *c = &m->c;
    const long T = m->T, D = c->dim, H = c->mlp_dim, CPP = (long)c->in_chans * c->patch * c->patch;
    const int E = imax(c->experts, 1), k = imax(c->top_k, 1);
    const long maxK = imax(imax((int)CPP, (int)D), (int)H), maxN = imax(imax(3 * (int)D, (int)H), (int)D);
    memset(w, 0, sizeof *w);
    w->nt = nt < 1 ? 1 : nt;
    w->x = malloc(sizeof(float) * (size_t)(T * D));
    w->ln = malloc(sizeof(float) * (size_t)(T * D));
    w->qkv = malloc(sizeof(float) * (size_t)(T * 3 * D));
    w->att = malloc(sizeof(float) * (size_t)(T * D));
    w->branch = malloc(sizeof(float) * (size_t)(T * D));
    w->h = malloc(sizeof(float) * (size_t)(T * H));
    /* the patches are read once, by the patch embedding, before any MLP writes h: they share
     * h's memory when they fit (ViT-Tiny: 602 KB less resident per thread) */
    w->patches = (T - 1) * CPP <= T * H ? w->h : malloc(sizeof(float) * (size_t)((T - 1) * CPP));
    w->mix = malloc(sizeof(float) * (size_t)(T * D));
    w->scores = malloc(sizeof(float) * (size_t)RT_ATT_SC(T) * (size_t)w->nt);
    w->kt = malloc(sizeof(float) * (size_t)RT_ATT_KT(T, D) * (size_t)w->nt);
    w->probs = malloc(sizeof(float) * (size_t)E);
    w->gates = malloc(sizeof(float) * (size_t)k);
    w->ex = malloc(sizeof(int) * (size_t)k);
    w->cls = malloc(sizeof(float) * (size_t)D);
    if (m->int8) {
        w->i8.qa = malloc((size_t)(T * maxK));
        w->i8.sa = malloc(sizeof(float) * (size_t)T);
        w->i8.acc = malloc(sizeof(int32_t) * (size_t)(T * maxN));
    }
    const int ok = w->patches && w->x && w->ln && w->qkv && w->att && w->branch && w->h && w->mix && w->scores && w->kt &&
                   w->probs && w->gates && w->ex && w->cls && (!m->int8 || (w->i8.qa && w->i8.sa && w->i8.acc));
    if (!ok) rt_work_free(w);
    return ok ? 0 : -1;
}

void rt_work_free(rt_work *w) {
    if (w->patches != w->h) free(w->patches);
    free(w->x), free(w->ln), free(w->qkv), free(w->att), free(w->branch), free(w->h);
    free(w->mix), free(w->scores), free(w->kt), free(w->probs), free(w->gates), free(w->ex), free(w->cls);
    free(w->i8.qa), free(w->i8.sa), free(w->i8.acc);
    memset(w, 0, sizeof *w);
}

/* Output channels [n0, n0+n) of a layer. */
static rt_linear rows_of(const rt_linear *L, int n0, int n) {
    rt_linear r = *L;
    const long o = (long)n0 * L->K;
    if (r.w) r.w += o;
    if (r.q) r.q += o, r.s += n0;
    if (r.ws) r.ws += n0;
    if (r.b) r.b += n0;
    r.N = n;
    return r;
}

/* A linear layer on M rows, split into nt blocks of rows (multiples of 16, the kernels'
 * panels) run in parallel: each row is computed as it would be alone, only the panels differ
 * (fp32 within rounding; int8 sums exact). With add, out + the layer's output (the residual;
 * tmp: fp32 scratch [M·N]). With gelu, GELU of the output rows in the same parallel region
 * (out contiguous: ldo = N); with ln, the rows of a made first as LN(ln->x) (lda = the LayerNorm's
 * width). So a split image has no single-threaded LayerNorm or GELU around these products. */
typedef struct { /* a LayerNorm before a product: a = LN(x) row by row (a, x: stride lda) */
    const float *x, *w, *b;
} rt_pre_ln;

static void linear(const mvmoe_rt_kernels *k, const rt_linear *L, float *out, int ldo, float *a, int lda, int M,
                   rt_i8_scratch *s, int nt, int add, float *tmp, int gelu, const rt_pre_ln *ln) {
    const int per = (M + nt - 1) / nt, chunk = (per + 15) / 16 * 16;
    if (nt < 2 || M <= 16) {
        if (ln) k->layernorm(a, ln->x, ln->w, ln->b, M, lda);
        rt_linear_forward_add(k, L, out, ldo, a, lda, M, s, add, tmp);
        if (gelu) k->gelu(out, (long)M * ldo);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; t++) {
        const int m0 = t * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
        if (m0 < m1) {
            rt_i8_scratch part = {s->qa ? s->qa + (long)m0 * L->K : NULL, s->sa ? s->sa + m0 : NULL,
                                  s->acc ? s->acc + (long)m0 * L->N : NULL};
            if (ln) k->layernorm(a + (long)m0 * lda, ln->x + (long)m0 * lda, ln->w, ln->b, m1 - m0, lda);
            rt_linear_forward_add(k, L, out + (long)m0 * ldo, ldo, a + (long)m0 * lda, lda, m1 - m0, &part, add,
                                  tmp ? tmp + (long)m0 * L->N : NULL);
            if (gelu) k->gelu(out + (long)m0 * ldo, (long)(m1 - m0) * ldo);
        }
    }
}

/* The attention over nt threads, each with its own scratch: each thread all heads for its
 * block of query rows (blocks of 8, the kernels' queries per block), where there are enough
 * rows; else (the last block's class row) the heads split. Split by heads alone, 3 heads over
 * 2 threads left one thread a third of the time idle. */
static void attention(const mvmoe_rt_kernels *k, rt_work *w, int T, int Q, int D, int heads, int nt) {
    if (nt < 2 || (Q < 16 * nt && heads < 2)) {
        k->attention(w->att, w->qkv, T, 0, Q, D, heads, 0, heads, w->scores, w->kt);
        return;
    }
    if (Q >= 16 * nt) {
        const int chunk = ((Q + nt - 1) / nt + 7) / 8 * 8;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
        for (int t = 0; t < nt; t++) {
            const int q0 = t * chunk, q1 = q0 + chunk < Q ? q0 + chunk : Q;
            if (q0 < q1)
                k->attention(w->att, w->qkv, T, q0, q1, D, heads, 0, heads, w->scores + RT_ATT_SC(T) * t,
                             w->kt + RT_ATT_KT(T, D) * t);
        }
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int h = 0; h < heads; h++) {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        k->attention(w->att, w->qkv, T, 0, Q, D, heads, h, h + 1, w->scores + RT_ATT_SC(T) * t,
                     w->kt + RT_ATT_KT(T, D) * t);
    }
}

static void add_rows(float *x, const float *y, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) x[i] += y[i];
}

/* One expert's (or the dense) MLP on R rows of w->ln into out (add: out + it, the residual):
 * fc1, GELU, fc2 (with bias). */
static void mlp(const mvmoe_rt_kernels *k, rt_work *w, const rt_linear *fc1, const rt_linear *fc2, float *out, int R,
                int nt, int add, const rt_pre_ln *ln) {
    linear(k, fc1, w->h, fc1->N, w->ln, fc1->K, R, &w->i8, nt, 0, NULL, 1, ln);
    linear(k, fc2, out, fc2->N, w->h, fc2->K, R, &w->i8, nt, add, w->branch, 0, NULL);
}

/* The first image routed to expert e checks its int8 tensors in every MoE block and makes their
 * weight sums (rt_model.h: `checked`, `expert_sums`); later images find the flag set. The check
 * runs in a critical section, so two images choosing one new expert do not both write it. */
static int check_expert(const rt_model *m, rt_work *w, int e) {
    const rt_config *c = &m->c;
    int rc = 0;
    for (int l = m->first_moe; l < c->depth && !rc; l++) {
        atomic_uchar *done = &m->checked[(size_t)l * c->experts + e];
        if (atomic_load_explicit(done, memory_order_acquire)) continue;
#pragma omp critical(mvmoe_rt_expert_check)
        if (!atomic_load_explicit(done, memory_order_relaxed)) {
            rt_linear *fc[2] = {&m->blocks[l].fc1[e], &m->blocks[l].fc2[e]};
            int32_t *ws = m->expert_sums + ((size_t)l * c->experts + e) * (size_t)(c->mlp_dim + c->dim);
            for (int i = 0; i < 2 && !rc; i++) {
                char name[96];
                snprintf(name, sizeof name, "blocks.%d.mlp.experts.%d.fc%d.weight", l, e, i + 1);
                rc = rt_check_i8(fc[i]->q, fc[i]->s, fc[i]->N, fc[i]->K, name, w->err, sizeof w->err);
                if (!rc) {
                    rt_weight_sums(ws, fc[i]->q, fc[i]->N, fc[i]->K);
                    fc[i]->ws = ws;
                    ws += fc[i]->N;
                }
            }
            if (!rc) atomic_store_explicit(done, 1, memory_order_release);
        }
    }
    return rc ? -1 : 0;
}

void rt_model_patches_u8(const rt_model *m, rt_work *w, const uint8_t *img, const float (*lut)[256]) {
    const rt_config *c = &m->c;
    const int C = c->in_chans, P = c->patch, S = c->img_size, G = S / P, CPP = C * P * P;
    for (int gy = 0; gy < G; gy++)
        for (int gx = 0; gx < G; gx++)
            for (int ch = 0; ch < C; ch++)
                for (int py = 0; py < P; py++) {
                    float *dst = w->patches + ((long)gy * G + gx) * CPP + ((long)ch * P + py) * P;
                    const uint8_t *src = img + ((long)ch * S + (long)gy * P + py) * S + (long)gx * P;
                    for (int px = 0; px < P; px++) dst[px] = lut[ch][src[px]];
                }
}

int rt_model_forward(const rt_model *m, const mvmoe_rt_kernels *k, rt_work *w, const float *img, float *logits,
                     int64_t *routes, float adaptive, int nt) {
    const rt_config *c = &m->c;
    const int T = m->T, D = c->dim, C = c->in_chans, P = c->patch, S = c->img_size, G = S / P, CPP = C * P * P;
    /* patches: patch n = gy·G + gx, element (c, py, px): the Conv2d weight's flattening (img
     * NULL: rt_model_patches_u8 made them) */
    for (int gy = 0; img && gy < G; gy++)
        for (int gx = 0; gx < G; gx++)
            for (int ch = 0; ch < C; ch++)
                for (int py = 0; py < P; py++)
                    memcpy(w->patches + ((long)gy * G + gx) * CPP + ((long)ch * P + py) * P,
                           img + ((long)ch * S + (long)gy * P + py) * S + (long)gx * P, sizeof(float) * (size_t)P);
    if (nt > w->nt) nt = w->nt;
    linear(k, &m->patch, w->x + D, D, w->patches, CPP, T - 1, &w->i8, nt, 0, NULL, 0, NULL);
    for (int d = 0; d < D; d++) w->x[d] = m->cls[d] + m->pos[d];
    for (long i = D; i < (long)T * D; i++) w->x[i] += m->pos[i];

    for (int l = 0; l < c->depth; l++) {
        const rt_block *b = &m->blocks[l];
        const int last = l == c->depth - 1, Q = last ? 1 : T;
        if (l == m->first_moe && c->routing != RT_DENSE) { /* the class row after the last dense block */
            rt_route(w->x, m->router, D, c->experts, c->top_k, adaptive, w->probs, w->ex, w->gates);
            for (int q = 0; m->checked && q < c->top_k; q++)
                if (w->ex[q] >= 0 && check_expert(m, w, w->ex[q])) return -1;
        }
        const rt_pre_ln ln1 = {w->x, b->ln1_w, b->ln1_b}, ln2 = {w->x, b->ln2_w, b->ln2_b};
        if (last) { /* keys and values of every row, the query of the class row only (ln row 0) */
            const rt_linear q = rows_of(&b->qkv, 0, D), kv = rows_of(&b->qkv, D, 2 * D);
            linear(k, &kv, w->qkv + D, 3 * D, w->ln, D, T, &w->i8, nt, 0, NULL, 0, &ln1);
            rt_linear_forward(k, &q, w->qkv, 3 * D, w->ln, D, 1, &w->i8);
        } else {
            linear(k, &b->qkv, w->qkv, 3 * D, w->ln, D, T, &w->i8, nt, 0, NULL, 0, &ln1);
        }
        attention(k, w, T, Q, D, c->heads, nt);
        /* x + proj(att): the residual added in the product's store (int8) */
        rt_linear_forward_add(k, &b->proj, w->x, D, w->att, D, Q, &w->i8, 1, w->branch);
        if (l < m->first_moe) { /* dense: norm2 with the first product */
            mlp(k, w, &b->fc1[0], &b->fc2[0], w->x, Q, nt, 1, &ln2);
            continue;
        }
        k->layernorm(w->ln, w->x, b->ln2_w, b->ln2_b, Q, D); /* once for the chosen experts */
        /* Σ over the chosen experts of gate·expert(x), in choice order, then the residual */
        memset(w->mix, 0, sizeof(float) * (size_t)Q * D);
        for (int q = 0; q < c->top_k; q++) {
            const int e = w->ex[q];
            if (e < 0) continue;
            mlp(k, w, &b->fc1[e], &b->fc2[e], w->branch, Q, nt, 0, NULL);
            const float g = w->gates[q];
#pragma omp simd
            for (long i = 0; i < (long)Q * D; i++) w->mix[i] += g * w->branch[i];
        }
        add_rows(w->x, w->mix, (long)Q * D);
    }
    /* logits = head(norm(x)[class]); the head in the reference kernel, the same bits on every CPU */
    k->layernorm(w->cls, w->x, m->norm_w, m->norm_b, 1, D);
    mvmoe_rt_kernels_plain()->linear_f32(logits, c->num_classes, w->cls, D, m->head.w, m->head.b, 1, D, c->num_classes);
    if (routes && c->routing != RT_DENSE)
        for (int q = 0; q < c->top_k; q++) routes[q] = w->ex[q];
    return 0;
}
