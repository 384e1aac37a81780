/* The reference model (vit_ref.h): the whole ViT / Mobile V-MoE forward and backward, one op
 * after another on all B·T token rows, from the kernels' `_ref` versions and plain loops.
 * Every tensor is a named field of mvmoe_vit_ref with its shape; the comment at the end of a
 * line gives the shape of what the line writes. The fast model (vit.c) must agree with this
 * to float rounding, and make the same routing decisions (tests/model/test_vit_ref.c). */
#include "model/vit_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "model/moe_ref.h"

#define LN_EPS 1e-6f /* LayerNorm eps (timm's ViT) */

/* ---------------------------------------------------------------- sizes and arena */
typedef struct dims {
    int B, T, N, D, H, K, NH, C, S, P, CPP, BT;
    int depth, L, first_moe; /* L MoE blocks: first_moe .. depth-1 */
    int E, k, token;         /* experts, choices, per-token routing */
} dims;

static dims dims_of(const mvmoe_config *c, int B) {
    dims d;
    d.B = B, d.T = mvmoe_config_tokens(c), d.N = d.T - 1, d.D = c->dim, d.H = c->mlp_dim;
    d.K = c->num_classes, d.NH = c->heads, d.C = c->in_chans, d.S = c->img_size, d.P = c->patch;
    d.CPP = d.C * d.P * d.P, d.BT = B * d.T, d.depth = c->depth;
    d.L = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers;
    d.first_moe = d.depth - d.L;
    d.E = d.L ? c->experts : 0, d.k = d.L ? c->top_k : 0;
    d.token = c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    return d;
}

mvmoe_status mvmoe_vit_ref_init(mvmoe_vit_ref *m, const mvmoe_config *c, int B) {
    memset(m, 0, sizeof *m);
    if (B < 1) MVMOE_FAIL(MVMOE_ERR_INVALID, "reference model: batch %d, need at least 1", B);
    const dims d = dims_of(c, B);
    const size_t Bz = (size_t)B, T = (size_t)d.T, N = (size_t)d.N, D = (size_t)d.D, H = (size_t)d.H,
                 K = (size_t)d.K, NH = (size_t)d.NH, depth = (size_t)d.depth, L = (size_t)d.L,
                 E = (size_t)d.E, k = (size_t)d.k, BT = Bz * T, BTD = BT * D;
    const size_t R = d.L ? (d.token ? L : 1) : 0, n = d.token ? BT : Bz; /* routers, items each */
    struct { float **p; size_t n; } f[] = {
        {&m->patches, Bz * N * d.CPP}, {&m->pe, Bz * N * D},   {&m->x0, BTD},
        {&m->keep, depth * 2 * Bz},    {&m->ln1, depth * BTD}, {&m->ln1_mean, depth * BT},
        {&m->ln1_rstd, depth * BT},    {&m->qkv, depth * 3 * BTD}, {&m->att, depth * Bz * NH * T * T},
        {&m->atty, depth * BTD},       {&m->attn, depth * BTD}, {&m->res1, depth * BTD},
        {&m->ln2, depth * BTD},        {&m->ln2_mean, depth * BT}, {&m->ln2_rstd, depth * BT},
        {&m->fch, depth * BT * H},     {&m->fch_gelu, depth * BT * H}, {&m->mlp, depth * BTD},
        {&m->res2, depth * BTD},       {&m->moe_h, L * BT * k * H}, {&m->moe_hg, L * BT * k * H},
        {&m->moe_y, L * BTD * k},      {&m->router_logits, R * n * E},     {&m->router_noise, R * n * E},
        {&m->router_probs, R * n * E},           {&m->rgate, R * n * k},  {&m->d_router_logits, R * n * E},
        {&m->d_router_probs, R * n * E},          {&m->d_gates, R * n * k}, {&m->clsx, Bz * D},
        {&m->lnf, Bz * D},             {&m->lnf_mean, Bz},      {&m->lnf_rstd, Bz},
        {&m->logits, Bz * K},          {&m->probs, Bz * K},     {&m->losses, Bz},
        {&m->targets, Bz * K},         {&m->d_logits, Bz * K},  {&m->d_lnf, Bz * D},
        {&m->d_clsx, Bz * D},          {&m->d_res, BTD},        {&m->d_branch, BTD},
        {&m->d_ln, BTD},               {&m->d_atty, BTD},       {&m->d_qkv, 3 * BTD},
        {&m->d_att, Bz * NH * T * T},  {&m->d_fch_gelu, BT * H}, {&m->d_fch, BT * H},
        {&m->d_pe, Bz * N * D},        {&m->d_moe_y, T * D},    {&m->d_moe_hg, T * H},
        {&m->d_moe_h, T * H},
    };
    const size_t n_int = R * n * k, nf = sizeof f / sizeof f[0];
    size_t words = 0; /* 4-byte words; every tensor starts on a 64-byte boundary */
    for (size_t i = 0; i < nf; i++) words += (f[i].n + 15) / 16 * 16;
    words += 2 * ((n_int + 15) / 16 * 16) + (Bz + 15) / 16 * 16; /* rexpert, rkept, rtarget */
    m->mem = mvmoe_aligned_alloc_checked(words * 4, "reference model activations", __FILE__, __LINE__);
    if (!m->mem) return MVMOE_ERR_NOMEM;
    char *at = m->mem;
    for (size_t i = 0; i < nf; i++) {
        *f[i].p = f[i].n ? (float *)at : NULL;
        at += (f[i].n + 15) / 16 * 64;
    }
    m->rexpert = n_int ? (int *)at : NULL;
    at += (n_int + 15) / 16 * 64;
    m->rkept = n_int ? (int *)at : NULL;
    at += (n_int + 15) / 16 * 64;
    m->rtarget = (int32_t *)at;
    m->c = c, m->B = B, m->n_route = (int)n, m->n_routers = (int)R;
    return MVMOE_OK;
}

void mvmoe_vit_ref_free(mvmoe_vit_ref *m) {
    free(m->mem);
    memset(m, 0, sizeof *m);
}

/* Block l's slices of the per-block activations. */
typedef struct block_acts {
    float *ln1, *m1, *r1, *qkv, *att, *atty, *attn, *res1, *ln2, *m2, *r2, *fch, *fch_gelu, *mlp, *res2;
    float *keep_attn, *keep_mlp; /* [B] each */
} block_acts;

static block_acts block_at(const mvmoe_vit_ref *m, const dims *d, int l) {
    const size_t BT = (size_t)d->BT, BTD = BT * d->D, BTH = BT * d->H;
    block_acts a = {m->ln1 + l * BTD, m->ln1_mean + l * BT, m->ln1_rstd + l * BT,
                    m->qkv + l * 3 * BTD, m->att + (size_t)l * d->B * d->NH * d->T * d->T,
                    m->atty + l * BTD, m->attn + l * BTD, m->res1 + l * BTD, m->ln2 + l * BTD,
                    m->ln2_mean + l * BT, m->ln2_rstd + l * BT, m->fch + l * BTH,
                    m->fch_gelu + l * BTH, m->mlp + l * BTD, m->res2 + l * BTD,
                    m->keep + (size_t)l * 2 * d->B, m->keep + (size_t)l * 2 * d->B + d->B};
    return a;
}

/* Router i's slices (per-image routing: router 0 only; per-token: one per MoE block). */
static mvmoe_route_ref route_at(const mvmoe_vit_ref *m, const dims *d, int i) {
    const size_t nE = (size_t)m->n_route * d->E, nk = (size_t)m->n_route * d->k;
    mvmoe_route_ref r = {m->n_route, d->k, d->E, d->token ? 1 : d->T,
                         m->router_logits + i * nE, m->router_noise + i * nE, m->router_probs + i * nE,
                         m->rexpert + i * nk, m->rkept + i * nk, m->rgate + i * nk,
                         m->d_router_logits + i * nE, m->d_router_probs + i * nE, m->d_gates + i * nk};
    return r;
}

/* The expert weights of MoE block l (consecutive MLP slots of the layout). */
static mvmoe_experts experts_at(const mvmoe_params *p, const mvmoe_config *c, int l) {
    const size_t s = (size_t)mvmoe_mlp_slot(c, l, 0), D = (size_t)c->dim, H = (size_t)c->mlp_dim;
    mvmoe_experts w = {p->fc1_w + s * H * D, p->fc1_b + s * H, p->fc2_w + s * D * H,
                       p->fc2_b + s * D, NULL, NULL, 0, 0};
    return w;
}

/* ---------------------------------------------------------------- forward */
/* Stochastic depth (Huang et al. 2016, as in DeiT): block l's two branches of each image are
 * dropped with p_l = drop_path · l/(depth-1), survivors scaled by 1/(1-p_l). */
static void drop_path_masks(float *keep, const dims *d, const mvmoe_vit_ref_opts *o) {
    const float rate = o->training ? o->drop_path : 0.0f;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, o->seed ^ 0xD509A7u, (uint64_t)o->step);
    for (int l = 0; l < d->depth; l++) {
        const float p = d->depth > 1 ? rate * (float)l / (float)(d->depth - 1) : rate;
        for (int j = 0; j < 2 * d->B; j++) /* keep [depth, 2, B] */
            keep[(size_t)l * 2 * d->B + j] =
                p <= 0 ? 1.0f : (mvmoe_rng_uniform(&rng) < p ? 0.0f : 1.0f / (1.0f - p));
    }
}

/* out = x + keep[b] · branch per image b. out, x, branch [B, T, D]. */
static void residual(float *out, const float *x, const float *branch, const float *keep, const dims *d) {
    for (int b = 0; b < d->B; b++)
        for (size_t i = 0; i < (size_t)d->T * d->D; i++) {
            const size_t q = (size_t)b * d->T * d->D + i;
            out[q] = x[q] + keep[b] * branch[q];
        }
}

/* Router i's decision on items x (rows at stride ldx) with weights W. Learned routing in
 * training adds V-MoE's noise ε ~ N(0, 1/E²) (a pure function of (seed, step, router));
 * per-token routing in training caps each expert at ceil(capacity_ratio · k · n / E) items. */
static void route(mvmoe_route_ref *r, const float *x, int ldx, const float *W, int i,
                  const mvmoe_config *c, const mvmoe_vit_ref_opts *o) {
    const int learned = c->routing == MVMOE_ROUTING_IMAGE_LEARNED || c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, o->seed ^ 0x0A0153u, (uint64_t)o->step * 1024u + (uint64_t)i);
    for (size_t q = 0; q < (size_t)r->n * r->E; q++) /* noise [n, E] */
        r->noise[q] = o->training && learned && o->route_noise ? mvmoe_rng_normal(&rng) / (float)r->E : 0.0f;
    int capacity = 0;
    if (o->training && c->routing == MVMOE_ROUTING_TOKEN_LEARNED && o->capacity_ratio > 0)
        capacity = (int)ceil((double)o->capacity_ratio * r->k * r->n / r->E);
    mvmoe_route_ref_forward(r, x, ldx, W, c->dim, capacity, o->adaptive_k);
}

void mvmoe_vit_ref_forward(mvmoe_vit_ref *m, const float *img, const mvmoe_params *p,
                           const mvmoe_vit_ref_opts *o) {
    const mvmoe_config *c = m->c;
    const dims d = dims_of(c, m->B);
    const int B = d.B, T = d.T, N = d.N, D = d.D, H = d.H, BT = d.BT;
    drop_path_masks(m->keep, &d, o);                                            /* [depth, 2, B] */

    /* patch embedding: Conv2d(kernel = stride = P) as im2col + linear */
    mvmoe_patchify_ref(m->patches, img, B, d.C, d.S, d.S, d.P);                 /* [B, N, CPP] */
    mvmoe_linear_forward_ref(m->pe, m->patches, p->patch_w, p->patch_b, B * N, d.CPP, D); /* [B, N, D] */
    for (int b = 0; b < B; b++) /* token 0: the class token; token t: patch t-1; + position t */
        for (int t = 0; t < T; t++) {
            const float *e = t == 0 ? p->cls : m->pe + ((size_t)b * N + t - 1) * D; /* [D] */
            for (int i = 0; i < D; i++)
                m->x0[((size_t)b * T + t) * D + i] = e[i] + p->pos[(size_t)t * D + i]; /* [B, T, D] */
        }

    for (int l = 0; l < d.depth; l++) {
        const block_acts a = block_at(m, &d, l);
        const float *in = l == 0 ? m->x0 : block_at(m, &d, l - 1).res2;        /* [B, T, D] */
        /* attention branch: in + keep · proj(attention(qkv(LN1(in)))) */
        mvmoe_layernorm_forward_ref(a.ln1, a.m1, a.r1, in, p->ln1_w + (size_t)l * D, p->ln1_b + (size_t)l * D,
                                    BT, D, LN_EPS);                             /* [B, T, D], [B, T] x2 */
        mvmoe_linear_forward_ref(a.qkv, a.ln1, p->qkv_w + (size_t)l * 3 * D * D, p->qkv_b + (size_t)l * 3 * D,
                                 BT, D, 3 * D);                                 /* [B, T, 3D] */
        mvmoe_attention_forward_ref(a.atty, a.att, a.qkv, B, T, D, d.NH);       /* [B, T, D], [B, NH, T, T] */
        mvmoe_linear_forward_ref(a.attn, a.atty, p->proj_w + (size_t)l * D * D, p->proj_b + (size_t)l * D,
                                 BT, D, D);                                     /* [B, T, D] */
        residual(a.res1, in, a.attn, a.keep_attn, &d);                          /* [B, T, D] */
        /* MLP branch: res1 + keep · MLP(LN2(res1)) */
        mvmoe_layernorm_forward_ref(a.ln2, a.m2, a.r2, a.res1, p->ln2_w + (size_t)l * D, p->ln2_b + (size_t)l * D,
                                    BT, D, LN_EPS);                             /* [B, T, D], [B, T] x2 */
        if (l < d.first_moe) {
            const size_t s = (size_t)mvmoe_mlp_slot(c, l, 0);
            mvmoe_linear_forward_ref(a.fch, a.ln2, p->fc1_w + s * H * D, p->fc1_b + s * H, BT, D, H); /* [B, T, H] */
            mvmoe_gelu_forward_ref(a.fch_gelu, a.fch, NULL, (size_t)BT, H);                                /* [B, T, H] */
            mvmoe_linear_forward_ref(a.mlp, a.fch_gelu, p->fc2_w + s * D * H, p->fc2_b + s * D, BT, H, D); /* [B, T, D] */
        } else {
            const int lm = l - d.first_moe;
            mvmoe_route_ref r = route_at(m, &d, d.token ? lm : 0);
            if (d.token) /* per-token: this block's router reads LN2 of every token */
                route(&r, a.ln2, D, p->trouter_w + (size_t)lm * d.E * D, lm, c, o);  /* [B·T, E], [B·T, k] */
            else if (lm == 0) /* per-image (paper Sec. 3.1): one router reads the class token of
                               * the residual stream after the last dense block; every MoE
                               * block follows its plan */
                route(&r, in, T * D, p->router_w, 0, c, o);                     /* [B, E], [B, k] */
            const mvmoe_experts w = experts_at(p, c, l);
            const size_t RH = (size_t)BT * d.k * H, RD = (size_t)BT * d.k * D;
            mvmoe_moe_ref_forward(a.mlp, m->moe_h + lm * RH, m->moe_hg + lm * RH, m->moe_y + lm * RD,
                                  a.ln2, &w, &r, D, H);                         /* [B, T, D] */
        }
        residual(a.res2, a.res1, a.mlp, a.keep_mlp, &d);                        /* [B, T, D] */
    }

    /* head on the final LayerNorm of the class token */
    const float *out = block_at(m, &d, d.depth - 1).res2;                       /* [B, T, D] */
    for (int b = 0; b < B; b++)
        memcpy(m->clsx + (size_t)b * D, out + (size_t)b * T * D, sizeof(float) * D); /* [B, D] */
    mvmoe_layernorm_forward_ref(m->lnf, m->lnf_mean, m->lnf_rstd, m->clsx, p->norm_w, p->norm_b, B, D,
                                LN_EPS);                                        /* [B, D], [B] x2 */
    mvmoe_linear_forward_ref(m->logits, m->lnf, p->head_w, p->head_b, B, D, d.K); /* [B, K] */
}

/* ---------------------------------------------------------------- loss */
double mvmoe_vit_ref_loss(mvmoe_vit_ref *m, const float *targets, const int32_t *labels,
                          const mvmoe_vit_ref_opts *o) {
    const mvmoe_config *c = m->c;
    const dims d = dims_of(c, m->B);
    memcpy(m->targets, targets, sizeof(float) * (size_t)d.B * d.K);            /* [B, K] */
    m->loss_ce = mvmoe_softmax_ce_forward_ref(m->losses, m->probs, m->logits, m->targets, d.B, d.K); /* [B], [B, K] */
    m->loss_router = m->loss_aux = 0;
    if (!d.L) return m->loss_ce;
    const size_t nE = (size_t)m->n_routers * m->n_route * d.E, nk = (size_t)m->n_routers * m->n_route * d.k;
    memset(m->d_router_logits, 0, sizeof(float) * nE);                                      /* [R, n, E] */
    memset(m->d_router_probs, 0, sizeof(float) * nE);                                      /* [R, n, E] */
    memset(m->d_gates, 0, sizeof(float) * nk);                                   /* [R, n, k] */
    if (c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS) {
        /* CE(logits, y) + λ·CE(router logits, superclass(y)) (paper Sec. 3.2) */
        if (labels && c->superclass_of) {
            for (int b = 0; b < d.B; b++) m->rtarget[b] = c->superclass_of[labels[b]]; /* [B] */
            mvmoe_route_ref r = route_at(m, &d, 0);
            m->loss_router = mvmoe_route_ref_superclass_ce(&r, m->rtarget, o->superclass_lambda);
        }
    } else {
        /* learned routing: V-MoE's importance + load losses of every router, σ = 1/E */
        for (int i = 0; i < m->n_routers; i++) {
            mvmoe_route_ref r = route_at(m, &d, i);
            m->loss_aux += mvmoe_route_ref_importance(&r, o->aux_weight);
            m->loss_aux += mvmoe_route_ref_load(&r, 1.0f / (float)d.E, o->aux_weight);
        }
    }
    return m->loss_ce + m->loss_router + m->loss_aux;
}

/* ---------------------------------------------------------------- backward */
/* d_branch = keep[b] · d_res per image b. [B, T, D] */
static void branch_grad(float *d_branch, const float *d_res, const float *keep, const dims *d) {
    for (int b = 0; b < d->B; b++)
        for (size_t i = 0; i < (size_t)d->T * d->D; i++)
            d_branch[(size_t)b * d->T * d->D + i] = keep[b] * d_res[(size_t)b * d->T * d->D + i];
}

static void zero(float *x, size_t n) { memset(x, 0, sizeof(float) * n); }

void mvmoe_vit_ref_backward(mvmoe_params *g, mvmoe_vit_ref *m, const mvmoe_params *p) {
    const mvmoe_config *c = m->c;
    const dims d = dims_of(c, m->B);
    const int B = d.B, T = d.T, N = d.N, D = d.D, H = d.H, K = d.K, BT = d.BT;

    /* loss = mean_b CE: d_logits = (probs − targets) / B */
    zero(m->d_logits, (size_t)B * K);
    mvmoe_softmax_ce_backward_ref(m->d_logits, m->probs, m->targets, B, K, 1.0f / (float)B); /* [B, K] */
    zero(m->d_lnf, (size_t)B * D);
    mvmoe_linear_backward_ref(m->d_lnf, g->head_w, g->head_b, m->d_logits, m->lnf, p->head_w, B, D, K); /* [B, D] */
    zero(m->d_clsx, (size_t)B * D);
    mvmoe_layernorm_backward_ref(m->d_clsx, g->norm_w, g->norm_b, m->d_lnf, m->lnf_mean, m->lnf_rstd,
                                 m->clsx, p->norm_w, B, D);                     /* [B, D] */
    zero(m->d_res, (size_t)BT * D); /* only the class-token rows reach the head */
    for (int b = 0; b < B; b++)
        memcpy(m->d_res + (size_t)b * T * D, m->d_clsx + (size_t)b * D, sizeof(float) * D); /* [B, T, D] */

    for (int l = d.depth - 1; l >= 0; l--) {
        const block_acts a = block_at(m, &d, l);
        const float *in = l == 0 ? m->x0 : block_at(m, &d, l - 1).res2;        /* [B, T, D] */
        /* MLP branch: d_res holds d(res2); res2 = res1 + keep · MLP(LN2(res1)) */
        branch_grad(m->d_branch, m->d_res, a.keep_mlp, &d);                     /* [B, T, D] */
        zero(m->d_ln, (size_t)BT * D);
        if (l < d.first_moe) {
            const size_t s = (size_t)mvmoe_mlp_slot(c, l, 0);
            zero(m->d_fch_gelu, (size_t)BT * H);
            mvmoe_linear_backward_ref(m->d_fch_gelu, g->fc2_w + s * D * H, g->fc2_b + s * D, m->d_branch, a.fch_gelu,
                                      p->fc2_w + s * D * H, BT, H, D);          /* [B, T, H] */
            zero(m->d_fch, (size_t)BT * H);
            mvmoe_gelu_backward_ref(m->d_fch, m->d_fch_gelu, a.fch, (size_t)BT * H); /* [B, T, H] */
            mvmoe_linear_backward_ref(m->d_ln, g->fc1_w + s * H * D, g->fc1_b + s * H, m->d_fch, a.ln2,
                                      p->fc1_w + s * H * D, BT, D, H);          /* [B, T, D] */
        } else {
            const int lm = l - d.first_moe;
            mvmoe_route_ref r = route_at(m, &d, d.token ? lm : 0);
            const mvmoe_experts w = experts_at(p, c, l), gw = experts_at(g, c, l);
            const size_t RH = (size_t)BT * d.k * H, RD = (size_t)BT * d.k * D;
            mvmoe_moe_ref_backward(m->d_ln, &gw, &r, m->d_moe_y, m->d_moe_hg, m->d_moe_h, m->d_branch,
                                   m->moe_h + lm * RH, m->moe_hg + lm * RH, m->moe_y + lm * RD, a.ln2,
                                   &w, D, H);                                   /* [B, T, D], r.dgate [n, k] */
            if (d.token) /* this block's router read LN2: its gradient joins d_ln */
                mvmoe_route_ref_backward(m->d_ln, D, g->trouter_w + (size_t)lm * d.E * D, &r, a.ln2, D,
                                         p->trouter_w + (size_t)lm * d.E * D, D); /* [B·T, D] */
        }
        /* d(res1) = d(res2) + LN2ᵀ(d_ln), accumulated into d_res */
        mvmoe_layernorm_backward_ref(m->d_res, g->ln2_w + (size_t)l * D, g->ln2_b + (size_t)l * D, m->d_ln,
                                     a.m2, a.r2, a.res1, p->ln2_w + (size_t)l * D, BT, D); /* [B, T, D] */

        /* attention branch: res1 = in + keep · proj(attention(qkv(LN1(in)))) */
        branch_grad(m->d_branch, m->d_res, a.keep_attn, &d);                    /* [B, T, D] */
        zero(m->d_atty, (size_t)BT * D);
        mvmoe_linear_backward_ref(m->d_atty, g->proj_w + (size_t)l * D * D, g->proj_b + (size_t)l * D, m->d_branch,
                                  a.atty, p->proj_w + (size_t)l * D * D, BT, D, D); /* [B, T, D] */
        zero(m->d_qkv, (size_t)BT * 3 * D);
        mvmoe_attention_backward_ref(m->d_qkv, m->d_att, m->d_atty, a.att, a.qkv, B, T, D, d.NH); /* [B, T, 3D] */
        zero(m->d_ln, (size_t)BT * D);
        mvmoe_linear_backward_ref(m->d_ln, g->qkv_w + (size_t)l * 3 * D * D, g->qkv_b + (size_t)l * 3 * D,
                                  m->d_qkv, a.ln1, p->qkv_w + (size_t)l * 3 * D * D, BT, D, 3 * D); /* [B, T, D] */
        /* d(in) = d(res1) + LN1ᵀ(d_ln), accumulated into d_res */
        mvmoe_layernorm_backward_ref(m->d_res, g->ln1_w + (size_t)l * D, g->ln1_b + (size_t)l * D, m->d_ln,
                                     a.m1, a.r1, in, p->ln1_w + (size_t)l * D, BT, D); /* [B, T, D] */

        if (l == d.first_moe && d.L && !d.token) {
            /* the per-image router read the class-token rows of `in`: the gates' gradients of
             * every MoE block and the router losses' join d(in) there */
            mvmoe_route_ref r = route_at(m, &d, 0);
            mvmoe_route_ref_backward(m->d_res, T * D, g->router_w, &r, in, T * D, p->router_w, D); /* [B, T, D] */
        }
    }

    /* embedding: x0[b, 0] = cls + pos[0]; x0[b, t] = pe[b, t-1] + pos[t] */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < D; i++) {
                const float v = m->d_res[((size_t)b * T + t) * D + i];
                g->pos[(size_t)t * D + i] += v;                                 /* [T, D] */
                if (t == 0) g->cls[i] += v;                                     /* [D] */
                else m->d_pe[((size_t)b * N + t - 1) * D + i] = v;              /* [B, N, D] */
            }
    mvmoe_linear_backward_ref(NULL, g->patch_w, g->patch_b, m->d_pe, m->patches, p->patch_w, B * N, d.CPP,
                              D);                                               /* [D, CPP], [D] */
}
