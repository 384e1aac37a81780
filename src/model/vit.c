/* The Vision Transformer's forward and backward passes (pre-norm blocks, class token, learned
 * position embedding; docs/CHECKPOINT_FORMAT.md "Forward pass"), built from src/kernels. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/moe.h"

#define LN_EPS 1e-6f

/* ---------------------------------------------------------------- helpers */
/* Stochastic depth (Huang et al. 2016, as in DeiT): each residual branch of each sample is
 * dropped with rate p_l = drop_path · l/(depth-1) and survivors scaled by 1/(1-p_l). */
static void drop_path_masks(float *keep, int depth, int B, int off, int Bg, float drop_path,
                            uint64_t seed, int64_t step) {
    /* one stream over the global batch's [2·Bg] draws a layer (attention branches, then MLP
     * branches); this batch keeps its images' slice, so N processes draw what one would */
    mvmoe_rng r;
    mvmoe_rng_init(&r, seed ^ 0xD509A7u, (uint64_t)step);
    for (int l = 0; l < depth; l++) {
        float p = depth > 1 ? drop_path * (float)l / (float)(depth - 1) : drop_path;
        for (int j = 0; j < 2 * Bg; j++) {
            const float v = p <= 0 ? 1.0f : (mvmoe_rng_uniform(&r) < p ? 0.0f : 1.0f / (1.0f - p));
            const int branch = j >= Bg, b = j - branch * Bg - off;
            if (b >= 0 && b < B) keep[(size_t)l * 2 * B + (size_t)branch * B + b] = v;
        }
    }
}

/* The packed copies of the weights when they are those of the current weights, else NULL
 * (the products then take the plain weights: same values to float rounding). */
static const mvmoe_packed *packed_for(const mvmoe_model *m) {
    const mvmoe_packed *pk = &m->packed;
    return pk->mem && pk->version == m->params_version && pk->precision == (int)mvmoe_get_precision() ? pk : NULL;
}

/* The weights of block l's experts (consecutive layout slots). */
static mvmoe_experts experts_at(const mvmoe_params *p, const mvmoe_config *c, int l) {
    size_t s = (size_t)mvmoe_mlp_slot(c, l, 0), D = (size_t)c->dim, H = (size_t)c->mlp_dim;
    mvmoe_experts w = {p->fc1_w + s * H * D, p->fc1_b + s * H, p->fc2_w + s * D * H, p->fc2_b + s * D,
                       NULL, NULL, 0, 0};
    return w;
}

/* The same with their packed copies when the forward may use them (packed_for). */
static mvmoe_experts experts_packed(const mvmoe_model *m, int l) {
    mvmoe_experts w = experts_at(&m->p, &m->cfg, l);
    const mvmoe_packed *pk = packed_for(m);
    if (pk) {
        const size_t s = (size_t)mvmoe_mlp_slot(&m->cfg, l, 0);
        w.fc1_p = pk->fc1_w + s * pk->n_fc1, w.fc2_p = pk->fc2_w + s * pk->n_fc2;
        w.n_fc1 = pk->n_fc1, w.n_fc2 = pk->n_fc2;
    }
    return w;
}

/* Runs router `plan_index` on n items (x rows at stride ldx) with weights W. Learned routing
 * in training adds V-MoE's noise ε ~ N(0, 1/E²) to the logits (a pure function of
 * (seed, step, plan) so finite differences and resumption see the same noise); otherwise the
 * noise buffer is zero, which the load loss then reads as "no noise". Token-learned routing
 * caps each expert at ceil(capacity_ratio·k·n/E) items in training. */
static void route(mvmoe_model *m, mvmoe_acts *a, int plan_index, const float *x, int ldx,
                  const float *W, int n, int rows, uint64_t seed, int64_t step) {
    const mvmoe_config *c = &m->cfg;
    const int E = c->experts, k = c->top_k, D = c->dim;
    size_t off = (size_t)plan_index * a->n_route * E;
    float *noise = a->router_noise + off;
    int learned = c->routing == MVMOE_ROUTING_IMAGE_LEARNED || c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    if (a->training && learned && a->route_noise) {
        mvmoe_rng r;
        mvmoe_rng_init(&r, seed ^ 0x0A0153u, (uint64_t)step * 1024u + (uint64_t)plan_index);
        for (size_t i = 0; i < (size_t)n * E; i++) noise[i] = mvmoe_rng_normal(&r) / (float)E;
    } else {
        memset(noise, 0, sizeof(float) * (size_t)n * E);
    }
    int capacity = 0;
    if (a->training && c->routing == MVMOE_ROUTING_TOKEN_LEARNED && a->capacity_ratio > 0)
        capacity = (int)ceil((double)a->capacity_ratio * k * n / E);
    mvmoe_router_forward(&a->plans[plan_index], a->router_logits + off, a->router_probs + off, x, ldx, W,
                         noise, n, D, E, k, capacity, m->adaptive_k, rows);
}

/* ---------------------------------------------------------------- one block, over rows */
/* A pre-norm block is norm1 → qkv → attention → proj → residual → norm2 → MLP (or the
 * experts) → residual. Everything but attention is row-local: row r of each op depends only on
 * row r of the block's input (and of attention's output). So a block runs as
 *   block_norm1_qkv(rows) · attention · block_after_attention(rows)
 * over any row range, and the three ways the model runs blocks are that one function over
 * different rows:
 *   - the row pipeline (blocks_by_rows): every thread of one parallel region owns a slice of
 *     the B·T rows through all dense and per-image MoE blocks, with two barriers per block
 *     instead of nine fork-joins, and each row stays in one core's cache;
 *   - per-token MoE blocks: all rows at once (their routers see every token of the batch and
 *     cap the experts' loads across it);
 *   - the class-only last block (last_block_forward): the head reads only the class token, so
 *     after attention the block runs on the B class rows alone (T_eff = 1 row per image).
 * The bits are those of running each op on all rows: every GEMM slice has at least 16 rows
 * (MIN_SLICE_ROWS in kernels/linear_sgemm.c) and the other ops are per row. */

/* Rows below which a slice is not split between threads (see above). */
#define ROW_SLICE_MIN 16

/* Block l's activations. The rows after attention (atty, res1, ln2, fch, fch_gelu, out) are
 * B·T_eff: all tokens, or (the class-only last block) the class rows, compact. */
typedef struct block_bufs {
    float *ln1, *m1, *r1, *qkv, *att, *atty, *res1, *ln2, *m2, *r2, *fch, *fch_gelu;
    float *out;        /* the block's output: res2 of layer l, or a->clsx for the last block */
    const float *keep; /* [2B]: attention, MLP branch */
} block_bufs;

static block_bufs block_bufs_at(mvmoe_acts *a, int B, int l) {
    block_bufs bufs = {a->ln1 + l * a->layer_bt_d, a->ln1_mean + l * a->layer_bt, a->ln1_rstd + l * a->layer_bt,
                    a->qkv + l * a->layer_bt_3d, a->att + l * a->layer_att, a->atty + l * a->layer_bt_d,
                    a->res1 + l * a->layer_bt_d, a->ln2 + l * a->layer_bt_d, a->ln2_mean + l * a->layer_bt,
                    a->ln2_rstd + l * a->layer_bt, a->fch + l * a->layer_bt_h, a->fch_gelu + l * a->layer_bt_h,
                    a->res2 + l * a->layer_bt_d, a->keep + (size_t)l * 2 * B};
    return bufs;
}

/* What the row functions need beyond the model and the activations. */
typedef struct block_ctx {
    int B, l, first_moe;
    int T;           /* rows per image after attention: tokens, or 1 (class-only last block) */
    uint64_t seed;   /* routing noise (learned routing, training) */
    int64_t step;
    int no_route;    /* the per-image plan was made elsewhere (expert parallelism): don't route */
} block_ctx;

/* A thread's rows go through a run of row-local ops in chunks whose widest buffer (`width`
 * floats a row) takes about CHUNK_BYTES: what one op writes, the next reads from L2 instead of
 * L3 (a thread's rows of fc1's output are 12.8 MB at 12x192 batch 128). Measured in A/B pairs
 * (docs/PERFORMANCE.md §2.4): the MLP's forward and its input gradients
 * (mlp_input_grads_by_rows) by chunks make 12x192's forward, backward and batch inference
 * faster, and leave 12x64 (H = 256) about unchanged. Equal chunks of at least 16 rows: rows
 * are independent in every op run this way and products give the same bits on any slice of 16
 * rows or more (MIN_SLICE_ROWS in kernels/linear_sgemm.c), so chunking changes no bits. */
#define CHUNK_BYTES (1 << 20)
static int row_chunks(int n, int width) {
    const int ch = CHUNK_BYTES / (width * (int)sizeof(float));
    return ch >= 32 && n > ch ? (n + ch - 1) / ch : 1;
}
/* First row of part i of `chunks` equal parts of rows [r0, r0+n): chunks, and threads' slices. */
static int chunk_start(int r0, int n, int i, int chunks) { return r0 + (int)((long long)n * i / chunks); }

/* Rows [r0, r0+n) of block l: norm1 of `in`, then qkv (its bias filled in: qkv is saved for the
 * backward). (By chunks, with proj and norm2 too: no faster, docs/PERFORMANCE.md §4.) */
static void block_norm1_qkv(const mvmoe_model *m, mvmoe_acts *a, int B, int l, const float *in, int r0, int n) {
    const mvmoe_params *p = &m->p;
    const mvmoe_packed *pk = packed_for(m);
    const int D = m->cfg.dim;
    const size_t o = (size_t)r0 * D;
    block_bufs bufs = block_bufs_at(a, B, l);
    mvmoe_layernorm_forward(bufs.ln1 + o, bufs.m1 + r0, bufs.r1 + r0, in + o, p->ln1_w + (size_t)l * D,
                            p->ln1_b + (size_t)l * D, n, D, LN_EPS);
    mvmoe_linear_forward(bufs.qkv + (size_t)r0 * 3 * D, 3 * D, bufs.ln1 + o, D,
                         mvmoe_linear_w(p->qkv_w + (size_t)l * 3 * D * D, pk ? pk->qkv_w + l * pk->n_qkv : NULL),
                         p->qkv_b + (size_t)l * 3 * D, n, D, 3 * D);
}

/* Rows [r0, r0+n) of block x->l after attention, from the block's input `in` (same rows) into
 * bufs->out: proj, res1 = in + attention branch (with proj's bias) and norm2(res1), fused; then the
 * MLP by chunks (row_chunks: fc1 with its bias, GELU, fc2, residual with fc2's bias), or the
 * per-image experts on these rows (the plan sends all of an image's rows to the same experts,
 * so this is row-local too), or, for per-token routing (all rows only), the block's router and
 * its experts. */
static void block_after_attention(mvmoe_model *m, mvmoe_acts *a, const block_ctx *x, const block_bufs *bufs,
                                  const float *in, int r0, int n) {
    const mvmoe_config *c = &m->cfg;
    const mvmoe_params *p = &m->p;
    const mvmoe_packed *pk = packed_for(m);
    const int B = x->B, l = x->l, T = x->T, D = c->dim, H = c->mlp_dim;
    const size_t o = (size_t)r0 * D;
    mvmoe_linear_forward(a->branch + o, D, bufs->atty + o, D,
                         mvmoe_linear_w(p->proj_w + (size_t)l * D * D, pk ? pk->proj_w + l * pk->n_proj : NULL),
                         NULL, n, D, D);
    mvmoe_residual_layernorm_forward(bufs->res1 + o, bufs->ln2 + o, bufs->m2 + r0, bufs->r2 + r0, in + o, a->branch + o,
                                     p->proj_b + (size_t)l * D, bufs->keep, T, r0, p->ln2_w + (size_t)l * D,
                                     p->ln2_b + (size_t)l * D, n, D, LN_EPS);
    if (l < x->first_moe) {
        const size_t slot = (size_t)mvmoe_mlp_slot(c, l, 0);
        const int chunks = row_chunks(n, H);
        for (int i = 0; i < chunks; i++) {
            const int c0 = chunk_start(r0, n, i, chunks), cn = chunk_start(r0, n, i + 1, chunks) - c0;
            const size_t oc = (size_t)c0 * D, oh = (size_t)c0 * H;
            mvmoe_linear_forward(bufs->fch + oh, H, bufs->ln2 + oc, D,
                                 mvmoe_linear_w(p->fc1_w + slot * H * D, pk ? pk->fc1_w + slot * pk->n_fc1 : NULL),
                                 p->fc1_b + slot * H, cn, D, H);
            /* in training fch keeps GELU'(pre-activation): all the backward reads of it */
            mvmoe_gelu_forward(bufs->fch_gelu + oh, bufs->fch + oh, NULL, cn, H,
                               a->training ? MVMOE_GELU_SAVE_GRAD : MVMOE_GELU_PLAIN);
            mvmoe_linear_forward(a->branch + oc, D, bufs->fch_gelu + oh, H,
                                 mvmoe_linear_w(p->fc2_w + slot * D * H, pk ? pk->fc2_w + slot * pk->n_fc2 : NULL),
                                 NULL, cn, H, D);
            mvmoe_residual_add(bufs->out + oc, bufs->res1 + oc, a->branch + oc, p->fc2_b + slot * D, bufs->keep + B, T, c0,
                               cn, D);
        }
        return;
    }
    const int lm = l - x->first_moe;
    const mvmoe_experts w = experts_packed(m, l);
    float *xg = a->moe_xg + lm * a->layer_moe_rd, *h = a->moe_h + lm * a->layer_moe_rh;
    float *hg = a->moe_hg + lm * a->layer_moe_rh, *y = a->moe_y + lm * a->layer_moe_rd;
    if (c->routing == MVMOE_ROUTING_TOKEN_LEARNED) { /* this block's router, on norm2(x) */
        route(m, a, lm, bufs->ln2, D, p->trouter_w + (size_t)lm * c->experts * D, B * T, 1, x->seed, x->step);
        mvmoe_moe_forward(a->branch, xg, h, hg, y, bufs->ln2, &w, &a->plans[lm], D, H);
    } else {
        mvmoe_moe_forward_rows(a->branch, xg, h, hg, y, bufs->ln2, &w, &a->plans[0], D, H, r0, n);
    }
    /* the gated sum already holds the experts' fc2 biases */
    mvmoe_residual_add(bufs->out + o, bufs->res1 + o, a->branch + o, NULL, bufs->keep + B, T, r0, n, D);
}

/* Blocks l0..nb-1 on the output of block l0-1 (x0 [B·T, D] for l0 = 0; their output: res2 of
 * block nb-1): dense blocks, and from first_moe on per-image MoE blocks, whose router runs once
 * (if route_first), on one thread, when its input is complete. Each thread of the region owns
 * a slice of the B·T rows. */
static void blocks_by_rows(mvmoe_model *m, mvmoe_acts *a, int B, int l0, int nb, int first_moe, int route_first,
                           uint64_t seed, int64_t step) {
    const mvmoe_config *c = &m->cfg;
    const int T = mvmoe_config_tokens(c), BT = B * T, D = c->dim, NH = c->heads;
    int nt = omp_get_max_threads();
    if (nt > BT / ROW_SLICE_MIN) nt = BT / ROW_SLICE_MIN;
#pragma omp parallel num_threads(nt > 1 ? nt : 1)
    {
        /* one thread (a region of one is inactive): the kernels thread themselves */
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int r0 = chunk_start(0, BT, t, n), rows = chunk_start(0, BT, t + 1, n) - r0;
        for (int l = l0; l < nb; l++) {
            const float *in = l ? block_bufs_at(a, B, l - 1).out : a->x0;
            block_bufs bufs = block_bufs_at(a, B, l);
            block_ctx x = {B, l, first_moe, T, seed, step, !route_first};
            if (l == l0) block_norm1_qkv(m, a, B, l0, in, r0, rows);
#pragma omp barrier
            mvmoe_attention_forward(bufs.atty, bufs.att, bufs.qkv, B, T, D, NH, T, n > 1 ? MVMOE_TEAM_CALLER : MVMOE_TEAM_OWN);
            if (l == first_moe && route_first) { /* the per-image router reads every image's class row of `in`:
                                   * complete since the barrier above (paper Sec. 3.1) */
#pragma omp single
                route(m, a, 0, in, T * D, m->p.router_w, B, T, seed, step);
            }
            block_after_attention(m, a, &x, &bufs, in, r0, rows);
            if (l + 1 < nb) block_norm1_qkv(m, a, B, l + 1, bufs.out, r0, rows);
        }
    }
}

/* The remote choices of MoE block l (a->remote, model.h): its site with B images of `rows`
 * rows here, for the forward (after the block ran its plan's choices; out: the block's output
 * buffer) or the backward (dbr: d(branch); after the plan's MoE backward). */
static mvmoe_moe_site remote_site(mvmoe_model *m, int B, int l, int rows) {
    const int first_moe = m->cfg.depth - m->cfg.moe_layers;
    mvmoe_moe_site s = {l - first_moe, B, rows, experts_at(&m->p, &m->cfg, l), experts_at(&m->g, &m->cfg, l),
                        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    return s;
}

static void remote_forward(mvmoe_model *m, mvmoe_acts *a, int B, int l, int rows, float *out) {
    block_bufs bufs = block_bufs_at(a, B, l);
    mvmoe_moe_site s = remote_site(m, B, l, rows);
    s.w = experts_packed(m, l);
    s.ln2 = bufs.ln2, s.branch = a->branch, s.res1 = bufs.res1, s.out = out, s.keep = bufs.keep + B;
    a->remote->forward(a->remote->ctx, &s);
}

/* A per-token MoE block: all rows at once. */
static void token_block_forward(mvmoe_model *m, mvmoe_acts *a, const block_ctx *x, const float *in) {
    const mvmoe_config *c = &m->cfg;
    const int BT = x->B * x->T;
    block_bufs bufs = block_bufs_at(a, x->B, x->l);
    block_norm1_qkv(m, a, x->B, x->l, in, 0, BT);
    mvmoe_attention_forward(bufs.atty, bufs.att, bufs.qkv, x->B, x->T, c->dim, c->heads, x->T, MVMOE_TEAM_OWN);
    block_after_attention(m, a, x, &bufs, in, 0, BT);
}

/* The last block for the class-token rows only, since the head reads nothing else: all T
 * rows still feed the keys and values, but the attention queries, projection, residuals,
 * norm2 and MLP (or the image's experts) run on B rows instead of B·T, about 1/depth of the
 * FLOPs saved, forward and backward. Exact up to float summation order (the skipped rows'
 * outputs are never read). Layer-l buffers: ln1 [B·T, D], qkv [B·T, 3D] as usual; att
 * [B, NH, 1, T]; atty, res1, ln2 [B, D]; fch, fch_gelu [B, H]; MoE rows: one per image. Writes
 * a->clsx [B, D]. Per-token routing keeps the full block (its routers see every token, its
 * capacity counts them, and eval's load statistics too). */
static int class_only_last(const mvmoe_config *c) { return c->routing != MVMOE_ROUTING_TOKEN_LEARNED; }

static void last_block_forward(mvmoe_model *m, mvmoe_acts *a, const block_ctx *x, const float *in) {
    const mvmoe_config *c = &m->cfg;
    const mvmoe_params *p = &m->p;
    const int B = x->B, l = x->l, T = mvmoe_config_tokens(c), D = c->dim;
    block_bufs bufs = block_bufs_at(a, B, l);
    bufs.out = a->clsx;
    mvmoe_layernorm_forward(bufs.ln1, bufs.m1, bufs.r1, in, p->ln1_w + (size_t)l * D, p->ln1_b + (size_t)l * D,
                            B * T, D, LN_EPS);
    /* keys and values of every row, queries of the class rows only: attention reads no other
     * query here (nor does its backward), so a third of the block's qkv product is skipped */
    const float *wqkv = p->qkv_w + (size_t)l * 3 * D * D, *bqkv = p->qkv_b + (size_t)l * 3 * D;
    const mvmoe_packed *pk = packed_for(m);
    if (pk && pk->precision == MVMOE_PRECISION_INT8) {
        /* int8: the whole product from the int8 copy (a slice of its rows is no packed copy
         * of its own), so every qkv product of the model runs on the same int8 weights */
        mvmoe_linear_forward(bufs.qkv, 3 * D, bufs.ln1, D, mvmoe_linear_w(wqkv, pk->qkv_w + l * pk->n_qkv), bqkv,
                             B * T, D, 3 * D);
    } else {
        mvmoe_linear_forward(bufs.qkv + D, 3 * D, bufs.ln1, D, mvmoe_linear_w(wqkv + (size_t)D * D, NULL), bqkv + D,
                             B * T, D, 2 * D);
        mvmoe_linear_forward(bufs.qkv, T * 3 * D, bufs.ln1, T * D, mvmoe_linear_w(wqkv, NULL), bqkv, B, D, D);
    }
    mvmoe_attention_forward(bufs.atty, bufs.att, bufs.qkv, B, T, D, c->heads, 1, MVMOE_TEAM_OWN);
    if (l == x->first_moe && !x->no_route) route(m, a, 0, in, T * D, p->router_w, B, T, x->seed, x->step);
    /* the class rows of `in`, compact, in the output buffer (read by the first residual, before
     * the second writes it) */
    for (int b = 0; b < B; b++) memcpy(a->clsx + (size_t)b * D, in + (size_t)b * T * D, sizeof(float) * D);
    mvmoe_plan *plan = c->routing != MVMOE_ROUTING_DENSE ? &a->plans[0] : NULL;
    int rows = plan ? plan->rows : 0;
    if (plan) plan->rows = 1; /* per-image routing: each image has one row here */
    block_ctx x1 = *x;
    x1.T = 1;
    block_after_attention(m, a, &x1, &bufs, a->clsx, 0, B);
    if (plan) plan->rows = rows;
}

/* ---------------------------------------------------------------- forward */
static int first_moe_of(const mvmoe_config *c) {
    return c->depth - (c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers);
}

/* This pass's settings into a, and the drop-path masks (unless the caller gave them). */
static void forward_setup(mvmoe_acts *a, const mvmoe_config *c, int B, const mvmoe_pass *t) {
    const float drop_path = t ? t->drop_path : 0.0f;
    a->route_noise = t ? t->route_noise : 0;
    a->capacity_ratio = t ? t->capacity_ratio : 0.0f;
    if (!a->training || (t && t->keep_given)) return;
    if (drop_path > 0)
        drop_path_masks(a->keep, c->depth, B, t->batch_global > 0 ? t->batch_offset : 0,
                        t->batch_global > 0 ? t->batch_global : B, drop_path, t->seed, t->step);
    else
        for (size_t i = 0; i < (size_t)c->depth * 2 * B; i++) a->keep[i] = 1.0f;
}

void mvmoe_vit_drop_path_masks(float *keep, const mvmoe_config *c, int B, const mvmoe_pass *t) {
    if (t && t->drop_path > 0)
        drop_path_masks(keep, c->depth, B, 0, B, t->drop_path, t->seed, t->step);
    else
        for (size_t i = 0; i < (size_t)c->depth * 2 * B; i++) keep[i] = 1.0f;
}

/* patch embedding (Conv2d stride P == im2col + linear), class token, position embedding */
static void embed_forward(mvmoe_model *m, mvmoe_acts *a, int B) {
    const mvmoe_config *c = &m->cfg;
    const mvmoe_params *p = &m->p;
    const int T = mvmoe_config_tokens(c), N = T - 1, D = c->dim, CPP = c->in_chans * c->patch * c->patch;
    const int BT = B * T;
    mvmoe_patchify(a->patches, a->img, B, c->in_chans, c->img_size, c->img_size, c->patch);
    const mvmoe_packed *pk = packed_for(m);
    mvmoe_linear_forward(a->pe, D, a->patches, CPP, mvmoe_linear_w(p->patch_w, pk ? pk->patch_w : NULL),
                         p->patch_b, B * N, CPP, D);
    /* x0 row r = (image b, token t): class token or patch t-1, plus position t (by rows, so
     * that a batch of one image uses both cores too) */
#pragma omp parallel for schedule(static) if ((size_t)BT * D >= 16384)
    for (int r = 0; r < BT; r++) {
        const int b = r / T, t = r % T;
        const float *e = t ? a->pe + ((size_t)b * N + t - 1) * D : p->cls, *pos = p->pos + (size_t)t * D;
        float *xr = a->x0 + (size_t)r * D;
        for (int d = 0; d < D; d++) xr[d] = e[d] + pos[d];
    }
}

/* Blocks l0.. to the end (l0 = 0 from x0, else from res2 of block l0-1), then logits =
 * head(norm(x)[class token]). route: the per-image router runs at first_moe (else the caller
 * made a->plans[0]). */
static void blocks_and_head(mvmoe_model *m, mvmoe_acts *a, int B, int l0, int route_first, const mvmoe_pass *t) {
    const mvmoe_config *c = &m->cfg;
    const mvmoe_params *p = &m->p;
    const uint64_t seed = t ? t->seed : 0;
    const int64_t step = t ? t->step : 0;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes;
    const int first_moe = first_moe_of(c);
    const int class_only = class_only_last(c);
    /* by rows: every block but a class-only last block, and per-token MoE blocks (their
     * routers run per block on every token and cap the experts' loads across the batch) */
    int nd = class_only ? c->depth - 1 : c->depth;
    if (c->routing == MVMOE_ROUTING_TOKEN_LEARNED && nd > first_moe) nd = first_moe;
    if (nd > l0 && a->remote && nd > first_moe) {
        /* choices run elsewhere: each MoE block in a region of its own, their outputs added
         * between it and the next block (the same rows per thread: the same bits) */
        const int lm0 = l0 > first_moe ? l0 : first_moe;
        if (lm0 > l0) blocks_by_rows(m, a, B, l0, lm0, first_moe, route_first, seed, step);
        for (int l = lm0; l < nd; l++) {
            blocks_by_rows(m, a, B, l, l + 1, first_moe, route_first, seed, step);
            remote_forward(m, a, B, l, T, block_bufs_at(a, B, l).out);
        }
    } else if (nd > l0) {
        blocks_by_rows(m, a, B, l0, nd, first_moe, route_first, seed, step);
    }
    const int lin = nd > l0 ? nd : l0; /* the first block left */
    const float *in = lin > 0 ? block_bufs_at(a, B, lin - 1).out : a->x0;
    for (int l = lin; l < c->depth; l++) {
        block_ctx x = {B, l, first_moe, T, seed, step, !route_first};
        if (class_only) { /* only the last block is left here */
            last_block_forward(m, a, &x, in);
            if (a->remote && l >= first_moe) remote_forward(m, a, B, l, 1, a->clsx);
            break;
        }
        token_block_forward(m, a, &x, in);
        in = block_bufs_at(a, B, l).out;
    }

    /* logits = head(norm(x)[class token]): only the class-token rows need the final norm */
    if (!class_only)
        for (int b = 0; b < B; b++) memcpy(a->clsx + (size_t)b * D, in + (size_t)b * T * D, sizeof(float) * D);
    mvmoe_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->clsx, p->norm_w, p->norm_b, B, D,
                            LN_EPS);
    mvmoe_linear_forward(a->logits, K, a->lnf, D, mvmoe_linear_w(p->head_w, NULL), p->head_b, B, D, K);
}

void mvmoe_vit_forward(mvmoe_model *m, mvmoe_acts *a, int B, const mvmoe_pass *t) {
    forward_setup(a, &m->cfg, B, t);
    embed_forward(m, a, B);
    blocks_and_head(m, a, B, 0, 1, t);
}

float *mvmoe_vit_moe_input(const mvmoe_model *m, mvmoe_acts *a) {
    const int first_moe = first_moe_of(&m->cfg);
    return first_moe > 0 ? a->res2 + (size_t)(first_moe - 1) * a->layer_bt_d : a->x0;
}

void mvmoe_vit_forward_front(mvmoe_model *m, mvmoe_acts *a, int B, const mvmoe_pass *t) {
    const mvmoe_config *c = &m->cfg;
    const int T = mvmoe_config_tokens(c), first_moe = first_moe_of(c);
    forward_setup(a, c, B, t);
    embed_forward(m, a, B);
    if (first_moe > 0) blocks_by_rows(m, a, B, 0, first_moe, first_moe, 0, t ? t->seed : 0, t ? t->step : 0);
    /* the per-image router on the class rows of the MoE part's input (paper Sec. 3.1) */
    route(m, a, 0, mvmoe_vit_moe_input(m, a), T * c->dim, m->p.router_w, B, T, t ? t->seed : 0, t ? t->step : 0);
}

void mvmoe_vit_forward_back(mvmoe_model *m, mvmoe_acts *a, int B, const mvmoe_pass *t) {
    if (B == 0) { /* no image here: only the other ranks' choices on this rank's experts */
        const mvmoe_config *c = &m->cfg;
        for (int l = first_moe_of(c); a->remote && l < c->depth; l++) {
            mvmoe_moe_site s = remote_site(m, 0, l, l == c->depth - 1 ? 1 : mvmoe_config_tokens(c));
            s.w = experts_packed(m, l);
            a->remote->forward(a->remote->ctx, &s);
        }
        return;
    }
    forward_setup(a, &m->cfg, B, t);
    blocks_and_head(m, a, B, first_moe_of(&m->cfg), 0, t);
}

/* The router losses of t on a's router tensors, their weights times `scale`; zeroes and
 * fills the router-side gradient buffers for the backward. */
static void router_losses(mvmoe_model *m, mvmoe_acts *a, int B, const int32_t *labels, const mvmoe_pass *t,
                          float scale) {
    const mvmoe_config *c = &m->cfg;
    const float lambda = (t ? t->superclass_lambda : 0.0f) * scale, aux_weight = (t ? t->aux_weight : 0.0f) * scale;
    const int *superclass_of = t && t->superclass_of ? t->superclass_of : c->superclass_of;
    a->loss_router = a->loss_aux = 0;
    if (c->routing == MVMOE_ROUTING_DENSE) return;
    const int E = c->experts, n = a->n_route;
    const size_t nE = (size_t)n * E;
    if (a->training) {
        memset(a->d_router_logits, 0, sizeof(float) * a->n_plans * nE);
        memset(a->d_router_probs, 0, sizeof(float) * a->n_plans * nE);
        memset(a->d_gates, 0, sizeof(float) * a->n_plans * (size_t)n * c->top_k);
    }
    if (c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS) {
        /* CE(logits, y) + λ·CE(router, superclass(y)) (paper Sec. 3.2), on clean logits */
        if (labels && superclass_of) {
            for (int b = 0; b < B; b++) a->rtarget[b] = superclass_of[labels[b]];
            a->loss_router = mvmoe_aux_router_ce(a->training ? a->d_router_logits : NULL, a->router_logits, a->rtarget,
                                                 B, E, lambda);
        }
    } else {
        /* learned routing: V-MoE's importance + load losses, summed over routers */
        for (int l = 0; l < a->n_plans; l++) {
            size_t off = (size_t)l * nE;
            a->loss_aux += mvmoe_aux_importance(a->training ? a->d_router_probs + off : NULL, a->router_probs + off,
                                                n, E, aux_weight);
            a->loss_aux += mvmoe_aux_load(a->training ? a->d_router_logits + off : NULL, a->router_logits + off,
                                          a->router_noise + off, n, E, c->top_k, 1.0f / (float)E,
                                          aux_weight);
        }
    }
}

double mvmoe_vit_loss(mvmoe_model *m, mvmoe_acts *a, int B, const int32_t *labels, const mvmoe_pass *t) {
    a->loss_ce = mvmoe_softmax_ce_forward(a->losses, a->probs, a->logits, a->targets, B,
                                          m->cfg.num_classes);
    router_losses(m, a, B, labels, t, 1.0f);
    return a->loss_ce + a->loss_router + a->loss_aux;
}

double mvmoe_vit_loss_router(mvmoe_model *m, mvmoe_acts *a, int B, const int32_t *labels, const mvmoe_pass *t,
                             float scale) {
    a->loss_ce = 0;
    router_losses(m, a, B, labels, t, scale);
    return a->loss_router + a->loss_aux;
}

/* ---------------------------------------------------------------- backward */
/* dbr[b] = keep[b] · dres[b]; returns dres itself when every keep is 1 (no copy needed). */
static const float *branch_grad(float *dbr, const float *dres, const float *keep, int B, int T,
                                int D) {
    int all_one = 1;
    for (int b = 0; b < B; b++) all_one &= keep[b] == 1.0f;
    if (all_one) return dres;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t base = (size_t)b * T * D;
        for (size_t i = 0; i < (size_t)T * D; i++) dbr[base + i] = keep[b] * dres[base + i];
    }
    return dbr;
}

/* The input gradients of a dense block's MLP, d_ln = fc1ᵀ(GELU'(fch) ⊙ fc2ᵀ(dbr)), each thread
 * over its own rows by chunks (row_chunks): the hidden gradients d_fch_gelu and d_fch go from
 * one op to the next in L2 instead of through L3. d_fch stays complete for the weight
 * gradients, which the caller computes after (they sum over all rows). fp32 only: the bf16
 * backward rounds each operand once for its input- and weight-gradient products together
 * (kernels/linear_bf16.c). */
static void mlp_input_grads_by_rows(mvmoe_acts *a, const float *dbr, const float *fch, const float *w1,
                                    const float *w2, int BT, int D, int H) {
    int nt = omp_get_max_threads();
    if (nt > BT / ROW_SLICE_MIN) nt = BT / ROW_SLICE_MIN;
#pragma omp parallel num_threads(nt > 1 ? nt : 1)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int r0 = chunk_start(0, BT, t, n), rows = chunk_start(0, BT, t + 1, n) - r0;
        const int chunks = row_chunks(rows, H);
        for (int i = 0; i < chunks; i++) {
            const int c0 = chunk_start(r0, rows, i, chunks), cn = chunk_start(r0, rows, i + 1, chunks) - c0;
            const size_t oh = (size_t)c0 * H;
            /* d_fch_gelu = dbr·W2 (fc2's input gradient), d_fch = it ⊙ GELU', d_ln = d_fch·W1 */
            mvmoe_gemm_serial('N', 'N', cn, H, D, 1.0f, dbr + (size_t)c0 * D, D, w2, H, 0.0f, a->d_fch_gelu + oh, H);
            mvmoe_gelu_backward_saved(a->d_fch + oh, a->d_fch_gelu + oh, fch + oh, (size_t)cn * H,
                                      MVMOE_GRAD_OVERWRITE);
            mvmoe_gemm_serial('N', 'N', cn, D, H, 1.0f, a->d_fch + oh, H, w1, D, 0.0f, a->d_ln + (size_t)c0 * D, D);
        }
    }
}

/* Backward of block x->l (block_norm1_qkv · attention · block_after_attention). dres
 * [B·T_eff, D] holds d(out) and becomes d(res1) in place; scratch [B·T_eff, D] takes the
 * branches' gradients when a stochastic-depth factor is not 1. d(in) ends in a->d_res
 * [B·T, D]: for a full block dres is a->d_res itself (the residual path is already there);
 * for the class-only last block (T_eff = 1) the class rows of d(res1) are put there first. */
static void block_backward(mvmoe_model *m, mvmoe_acts *a, const block_ctx *x, const float *in, float *dres,
                           float *scratch) {
    const mvmoe_config *c = &m->cfg;
    const mvmoe_params *p = &m->p;
    mvmoe_params *g = &m->g;
    const int B = x->B, l = x->l, T = mvmoe_config_tokens(c), D = c->dim, H = c->mlp_dim, E = c->experts;
    const int R = B * x->T; /* rows after attention */
    block_bufs bufs = block_bufs_at(a, B, l);

    /* MLP branch: out = res1 + keep·mlp(ln2(res1)) */
    const float *dbr = branch_grad(scratch, dres, bufs.keep + B, B, x->T, D);
    if (l < x->first_moe) {
        const size_t slot = (size_t)mvmoe_mlp_slot(c, l, 0);
        const float *w1 = p->fc1_w + slot * H * D, *w2 = p->fc2_w + slot * D * H;
        if (mvmoe_get_precision() != MVMOE_PRECISION_BF16) { /* d_fch_gelu, d_fch, d_ln: overwritten */
            /* the forward left GELU' in fch (block_after_attention) */
            mlp_input_grads_by_rows(a, dbr, bufs.fch, w1, w2, R, D, H);
            mvmoe_linear_backward(NULL, g->fc2_w + slot * D * H, g->fc2_b + slot * D, dbr, bufs.fch_gelu, w2, R, H, D,
                                  MVMOE_GRAD_OVERWRITE);
            mvmoe_linear_backward(NULL, g->fc1_w + slot * H * D, g->fc1_b + slot * H, a->d_fch, bufs.ln2, w1, R, D, H,
                                  MVMOE_GRAD_OVERWRITE);
        } else { /* bf16: each product's operands rounded once, all rows */
            mvmoe_linear_backward(a->d_fch_gelu, g->fc2_w + slot * D * H, g->fc2_b + slot * D, dbr, bufs.fch_gelu, w2, R,
                                  H, D, MVMOE_GRAD_OVERWRITE);
            mvmoe_gelu_backward_saved(a->d_fch, a->d_fch_gelu, bufs.fch, (size_t)R * H, MVMOE_GRAD_OVERWRITE);
            mvmoe_linear_backward(a->d_ln, g->fc1_w + slot * H * D, g->fc1_b + slot * H, a->d_fch, bufs.ln2, w1, R, D,
                                  H, MVMOE_GRAD_OVERWRITE);
        }
    } else {
        mvmoe_zero(a->d_ln, (size_t)R * D);
        const int lm = l - x->first_moe, token = c->routing == MVMOE_ROUTING_TOKEN_LEARNED, pi = token ? lm : 0;
        mvmoe_plan *plan = &a->plans[pi];
        mvmoe_experts w = experts_at(p, c, l), gw = experts_at(g, c, l);
        const size_t nE = (size_t)a->n_route * E, nk = (size_t)a->n_route * c->top_k;
        int rows = plan->rows;
        if (!token) plan->rows = x->T; /* per-image routing: the image's rows here */
        mvmoe_moe_backward(a->d_ln, a->d_gates + pi * nk, &gw, a->d_moe, a->d_moe_h, a->d_moe_hg, dbr,
                           a->moe_xg + lm * a->layer_moe_rd, a->moe_h + lm * a->layer_moe_rh,
                           a->moe_hg + lm * a->layer_moe_rh, a->moe_y + lm * a->layer_moe_rd, &w, plan, D, H);
        plan->rows = rows;
        if (a->remote && !token) { /* the choices run elsewhere: their d(ln2) and gate gradients */
            mvmoe_moe_site s = remote_site(m, B, l, x->T);
            s.dbr = dbr, s.d_ln = a->d_ln, s.d_gates = a->d_gates;
            a->remote->backward(a->remote->ctx, &s);
        }
        if (token) { /* this block's router read norm2(x): its gradient joins d_ln */
            mvmoe_plan_gate_backward(a->d_router_probs + pi * nE, a->d_gates + pi * nk, plan);
            mvmoe_router_backward(a->d_ln, D, g->trouter_w + (size_t)lm * E * D, a->d_router_logits + pi * nE,
                                  a->d_router_probs + pi * nE, a->router_probs + pi * nE, bufs.ln2, D, p->trouter_w + (size_t)lm * E * D,
                                  R, D, E);
        }
    }
    /* d(res1) = d(out) + LN2ᵀ(d_ln), in place */
    mvmoe_layernorm_backward(dres, g->ln2_w + (size_t)l * D, g->ln2_b + (size_t)l * D, a->d_ln, bufs.m2, bufs.r2,
                             bufs.res1, p->ln2_w + (size_t)l * D, R, D);

    /* attention branch: res1 = in + keep·proj(attn(qkv(ln1(in)))); keys and values of every row
     * get gradient, queries only of the rows after attention */
    dbr = branch_grad(scratch, dres, bufs.keep, B, x->T, D);
    mvmoe_linear_backward(a->d_atty, g->proj_w + (size_t)l * D * D, g->proj_b + (size_t)l * D, dbr, bufs.atty,
                          p->proj_w + (size_t)l * D * D, R, D, D, MVMOE_GRAD_OVERWRITE);
    mvmoe_attention_backward(a->d_qkv, a->d_att, a->d_atty, bufs.att, bufs.qkv, B, T, D, c->heads, x->T,
                             MVMOE_GRAD_OVERWRITE);
    mvmoe_linear_backward(a->d_ln, g->qkv_w + (size_t)l * 3 * D * D, g->qkv_b + (size_t)l * 3 * D, a->d_qkv,
                          bufs.ln1, p->qkv_w + (size_t)l * 3 * D * D, B * T, D, 3 * D, MVMOE_GRAD_OVERWRITE);
    /* d(in) = the residual path + LN1ᵀ(d_ln) (every row) */
    if (dres != a->d_res) {
        mvmoe_zero(a->d_res, (size_t)B * T * D);
        for (int b = 0; b < B; b++)
            memcpy(a->d_res + (size_t)b * T * D, dres + (size_t)b * x->T * D, sizeof(float) * x->T * D);
    }
    mvmoe_layernorm_backward(a->d_res, g->ln1_w + (size_t)l * D, g->ln1_b + (size_t)l * D, a->d_ln, bufs.m1, bufs.r1,
                             in, p->ln1_w + (size_t)l * D, B * T, D);
}

/* The head's backward from the loss (d_logits = (probs − targets)·scale; scale 1/B: the mean
 * over the batch) to the last block's output gradient: d_clsx, and for a full last block
 * d_res [B·T, D] with the class rows set. */
static void head_backward(mvmoe_model *m, mvmoe_acts *a, int B, float scale) {
    const mvmoe_config *c = &m->cfg;
    const mvmoe_params *p = &m->p;
    mvmoe_params *g = &m->g;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes;
    memset(a->d_logits, 0, sizeof(float) * (size_t)B * K);
    mvmoe_softmax_ce_backward(a->d_logits, a->probs, a->targets, B, K, scale);
    memset(a->d_lnf, 0, sizeof(float) * (size_t)B * D);
    mvmoe_linear_backward(a->d_lnf, g->head_w, g->head_b, a->d_logits, a->lnf, p->head_w, B, D, K,
                          MVMOE_GRAD_ACCUMULATE);
    memset(a->d_clsx, 0, sizeof(float) * (size_t)B * D);
    mvmoe_layernorm_backward(a->d_clsx, g->norm_w, g->norm_b, a->d_lnf, a->lnf_mean, a->lnf_rstd,
                             a->clsx, p->norm_w, B, D);
    if (!class_only_last(c)) { /* else the last block starts from d_clsx */
        mvmoe_zero(a->d_res, (size_t)B * T * D);
        for (int b = 0; b < B; b++)
            memcpy(a->d_res + (size_t)b * T * D, a->d_clsx + (size_t)b * D, sizeof(float) * D);
    }
}

/* The per-image router read the class rows of the first MoE block's input: its gradient
 * (gates of every MoE block + the router loss) joins d(in) there, in a->d_res. */
static void image_router_backward(mvmoe_model *m, mvmoe_acts *a, int B, const float *in) {
    const mvmoe_config *c = &m->cfg;
    const int T = mvmoe_config_tokens(c), D = c->dim;
    mvmoe_plan_gate_backward(a->d_router_probs, a->d_gates, &a->plans[0]);
    mvmoe_router_backward(a->d_res, T * D, m->g.router_w, a->d_router_logits, a->d_router_probs, a->router_probs,
                          in, T * D, m->p.router_w, B, D, c->experts);
}

/* Blocks l_hi down to l_lo; d_res holds d(input of block l_lo) after. router: run the per-image
 * router's backward where it read its input (at first_moe). */
static void blocks_backward(mvmoe_model *m, mvmoe_acts *a, int B, int l_hi, int l_lo, int router) {
    const mvmoe_config *c = &m->cfg;
    const int D = c->dim, T = mvmoe_config_tokens(c), first_moe = first_moe_of(c);
    const int class_only = class_only_last(c);
    for (int l = l_hi; l >= l_lo; l--) {
        const float *in = l == 0 ? a->x0 : a->res2 + (l - 1) * a->layer_bt_d;
        if (class_only && l == c->depth - 1) { /* compact [B, D] gradients in the [B·T, D] scratch
                                                * of d_branch (T >= 2) */
            block_ctx x = {B, l, first_moe, 1, 0, 0, 0};
            memcpy(a->d_branch, a->d_clsx, sizeof(float) * (size_t)B * D);
            block_backward(m, a, &x, in, a->d_branch, a->d_branch + (size_t)B * D);
        } else {
            block_ctx x = {B, l, first_moe, T, 0, 0, 0};
            block_backward(m, a, &x, in, a->d_res, a->d_branch);
        }
        /* d_res now holds d(in) */
        if (router && l == first_moe && c->routing != MVMOE_ROUTING_DENSE &&
            c->routing != MVMOE_ROUTING_TOKEN_LEARNED)
            image_router_backward(m, a, B, in);
        if (a->after_block_backward) a->after_block_backward(a->after_block_user, l);
    }
}

/* embedding: x0[b,0] = cls + pos[0]; x0[b,1+n] = pe[b,n] + pos[1+n], from d_res = d(x0) */
static void embed_backward(mvmoe_model *m, mvmoe_acts *a, int B) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_params *g = &m->g;
    const int T = mvmoe_config_tokens(c), N = T - 1, D = c->dim, CPP = c->in_chans * c->patch * c->patch;
    for (int b = 0; b < B; b++) {
        const float *dx = a->d_res + (size_t)b * T * D;
        for (int d = 0; d < D; d++) g->cls[d] += dx[d];
        for (size_t i = 0; i < (size_t)T * D; i++) g->pos[i] += dx[i];
        memcpy(a->d_pe + (size_t)b * N * D, dx + D, sizeof(float) * (size_t)N * D);
    }
    mvmoe_linear_backward(NULL, g->patch_w, g->patch_b, a->d_pe, a->patches, m->p.patch_w, B * N, CPP, D,
                          MVMOE_GRAD_ACCUMULATE);
}

void mvmoe_vit_backward(mvmoe_model *m, mvmoe_acts *a, int B) {
    mvmoe_zero(m->grad_mem, m->layout.total);
    /* loss = mean_b CE → dlogits = (probs - targets) / B */
    head_backward(m, a, B, 1.0f / (float)B);
    blocks_backward(m, a, B, m->cfg.depth - 1, 0, 1);
    embed_backward(m, a, B);
}

void mvmoe_vit_backward_back(mvmoe_model *m, mvmoe_acts *a, int B, float scale) {
    if (B == 0) { /* as in the forward, last block first */
        const mvmoe_config *c = &m->cfg;
        for (int l = c->depth - 1; a->remote && l >= first_moe_of(c); l--) {
            mvmoe_moe_site s = remote_site(m, 0, l, l == c->depth - 1 ? 1 : mvmoe_config_tokens(c));
            a->remote->backward(a->remote->ctx, &s);
        }
        return;
    }
    memset(a->d_gates, 0, sizeof(float) * (size_t)B * m->cfg.top_k);
    head_backward(m, a, B, scale);
    blocks_backward(m, a, B, m->cfg.depth - 1, first_moe_of(&m->cfg), 0);
}

void mvmoe_vit_backward_front(mvmoe_model *m, mvmoe_acts *a, int B) {
    const int first_moe = first_moe_of(&m->cfg);
    image_router_backward(m, a, B, mvmoe_vit_moe_input(m, a));
    if (first_moe > 0) blocks_backward(m, a, B, first_moe - 1, 0, 0);
    embed_backward(m, a, B);
}
