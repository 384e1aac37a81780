/* The activation arena of one forward (and backward) pass for B images: one table of its
 * buffers and their sizes, from which both mvmoe_acts_init allocates and the memory estimate
 * (memory.c) counts, so the two cannot drift apart. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model.h"

/* The table's sizes are products of config values and B, taken in double: a hostile config or
 * batch can ask for more than size_t holds, and the estimate must then saturate instead of
 * wrapping around. Below this many bytes every size is an integer exact in a double (< 2^53),
 * so mvmoe_acts_init converts them to size_t only after checking the total against it. */
#define ACTS_MAX_BYTES 0x1p53

/* Room for every entry of acts_table. */
#define ACTS_MAX_BUFFERS 64

typedef struct acts_buf {
    float **p; /* the field of mvmoe_acts that points at this buffer */
    double n;  /* its floats, before padding */
} acts_buf;

/* Rounding up to 16 floats (64 bytes) as the arena does; sizes beyond 2^60 are far past any
 * limit, left as they are. */
static double pad16(double n) {
    return n <= 0 ? 0 : n >= 0x1p60 ? n : (double)(((uint64_t)n + 15) / 16 * 16);
}

/* The float buffers of the arena, in storage order, with their fields in `a`: the one list of
 * them. Returns how many. T tokens, N = T-1 patches; L per-layer copies (depth in training,
 * else 1); MoE: R = B·T·k grouped rows, Lm expert-buffer copies, Lr router plans over nr items. */
static int acts_table(mvmoe_acts *a, const mvmoe_config *c, double Bz, int training,
                      acts_buf r[ACTS_MAX_BUFFERS]) {
    const double T = mvmoe_config_tokens(c), N = T - 1, D = c->dim, H = c->mlp_dim,
                 K = c->num_classes, NH = c->heads, S = c->img_size, C = c->in_chans, P = c->patch;
    const double L = training ? c->depth : 1, BT = Bz * T, tr = training ? 1 : 0;
    const int moe = c->routing != MVMOE_ROUTING_DENSE, token = c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    const double E = moe ? c->experts : 0, k = moe ? c->top_k : 0;
    const double Lm = moe ? (training ? c->moe_layers : 1) : 0, R = BT * k;
    const double Lr = moe ? (token ? c->moe_layers : 1) : 0, nr = token ? BT : Bz;
    const acts_buf t[] = {
        {&a->img, Bz * C * S * S},   {&a->patches, Bz * N * C * P * P}, {&a->pe, Bz * N * D},
        {&a->x0, BT * D},            {&a->ln1, L * BT * D},          {&a->ln1_mean, L * BT},
        {&a->ln1_rstd, L * BT},      {&a->qkv, L * BT * 3 * D},      {&a->att, L * Bz * NH * T * T},
        {&a->atty, L * BT * D},      {&a->res1, L * BT * D},         {&a->ln2, L * BT * D},
        {&a->ln2_mean, L * BT},      {&a->ln2_rstd, L * BT},         {&a->fch, L * BT * H},
        {&a->fch_gelu, L * BT * H},  {&a->res2, L * BT * D},         {&a->branch, BT * D},
        {&a->keep, (double)c->depth * 2 * Bz}, {&a->clsx, Bz * D},   {&a->lnf, Bz * D},
        {&a->lnf_mean, Bz},          {&a->lnf_rstd, Bz},             {&a->logits, Bz * K},
        {&a->probs, Bz * K},         {&a->losses, Bz},               {&a->targets, Bz * K},
        {&a->d_res, tr * BT * D},    {&a->d_branch, tr * BT * D},
        {&a->d_ln, tr * BT * D},     {&a->d_qkv, tr * BT * 3 * D},
        {&a->d_att, tr * Bz * NH * T * T}, {&a->d_atty, tr * BT * D},
        {&a->d_fch, tr * BT * H},    {&a->d_fch_gelu, tr * BT * H},
        {&a->d_clsx, tr * Bz * D},   {&a->d_lnf, tr * Bz * D},
        {&a->d_logits, tr * Bz * K}, {&a->d_pe, tr * Bz * N * D},
        {&a->moe_xg, Lm * R * D}, {&a->moe_h, Lm * R * H}, {&a->moe_hg, Lm * R * H},
        {&a->moe_y, Lm * R * D},  {&a->router_logits, Lr * nr * E},   {&a->router_probs, Lr * nr * E},
        {&a->router_noise, Lr * nr * E}, {&a->rgate, Lr * nr * k},
        {&a->d_moe, tr * R * D}, {&a->d_moe_h, tr * R * H},
        {&a->d_moe_hg, tr * R * H}, {&a->d_router_logits, tr * Lr * nr * E},
        {&a->d_router_probs, tr * Lr * nr * E}, {&a->d_gates, tr * Lr * nr * k},
    };
    const int n = (int)(sizeof t / sizeof t[0]);
    _Static_assert(sizeof t / sizeof t[0] <= ACTS_MAX_BUFFERS, "raise ACTS_MAX_BUFFERS");
    memcpy(r, t, sizeof t);
    return n;
}

/* The sizes from the table, and the routing plans' integers (per plan: expert, pos and src of
 * nr·k choices, E + 1 starts; then nr super-class targets). */
static void acts_size(mvmoe_acts_size *s, mvmoe_acts *a, const mvmoe_config *c, double B,
                      int training, acts_buf r[ACTS_MAX_BUFFERS], int *n) {
    *n = acts_table(a, c, B, training, r);
    s->floats = 0;
    for (int i = 0; i < *n; i++) s->floats += pad16(r[i].n);
    const int moe = c->routing != MVMOE_ROUTING_DENSE, token = c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    const double k = moe ? c->top_k : 0, nr = token ? B * mvmoe_config_tokens(c) : B;
    s->plans = moe ? (token ? c->moe_layers : 1) : 0;
    s->ints = moe ? s->plans * (3 * nr * k + c->experts + 1) + nr : 0;
    const double fbytes = s->floats * sizeof(float);
    /* the float arena is allocated 64-byte aligned, rounded up to 64 bytes (at least 64) */
    s->bytes = (fbytes <= 0 ? 64 : fbytes >= 0x1p60 ? fbytes : (double)(((uint64_t)fbytes + 63) / 64 * 64)) +
               s->plans * sizeof(mvmoe_plan) + s->ints * sizeof(int);
}

void mvmoe_acts_size_of(mvmoe_acts_size *s, const mvmoe_config *c, double B, int training) {
    mvmoe_acts scratch; /* only the addresses of its fields are taken */
    acts_buf r[ACTS_MAX_BUFFERS];
    int n;
    acts_size(s, &scratch, c, B, training, r, &n);
}

mvmoe_status mvmoe_acts_init(mvmoe_acts *a, const mvmoe_config *c, int B, int training) {
    memset(a, 0, sizeof *a);
    if (B < 1) MVMOE_FAIL(MVMOE_ERR_INVALID, "batch %d: need at least 1 image", B);
    acts_buf r[ACTS_MAX_BUFFERS];
    int n;
    mvmoe_acts_size sz;
    acts_size(&sz, a, c, B, training, r, &n);
    /* Refuse a batch whose arena could not even be addressed, or whose token rows overflow
     * the int row indices that routing plans and kernels use. */
    double rows = (double)B * mvmoe_config_tokens(c) * (c->routing != MVMOE_ROUTING_DENSE ? c->top_k : 1);
    if (rows > INT_MAX || !(sz.bytes < ACTS_MAX_BYTES))
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "batch %d of %d-token images (%.3g token rows) is beyond what this "
                   "program can address; use a smaller batch", B, mvmoe_config_tokens(c), rows);
    size_t T = (size_t)mvmoe_config_tokens(c), D = (size_t)c->dim, H = (size_t)c->mlp_dim,
           NH = (size_t)c->heads;
    size_t Bz = (size_t)B, BT = Bz * T;
    int moe = c->routing != MVMOE_ROUTING_DENSE, token = c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    size_t E = moe ? (size_t)c->experts : 0, k = moe ? (size_t)c->top_k : 0, R = BT * k;
    size_t Lr = (size_t)sz.plans, nr = token ? BT : Bz;
    a->B = B;
    a->training = training;
    a->layer_bt = training ? BT : 0;
    a->layer_bt_d = training ? BT * D : 0;
    a->layer_bt_3d = training ? BT * 3 * D : 0;
    a->layer_bt_h = training ? BT * H : 0;
    a->layer_att = training ? Bz * NH * T * T : 0;
    MVMOE_ALLOC_ALIGNED(a->mem, (size_t)sz.floats, training ? "training activations" : "inference activations");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t len = (size_t)r[i].n;
        *r[i].p = len ? a->mem + off : NULL;
        off += (len + 15) / 16 * 16;
    }
    for (size_t i = 0; i < (size_t)c->depth * 2 * Bz; i++) a->keep[i] = 1.0f;
    if (moe) {
        a->layer_moe_rd = training ? R * D : 0;
        a->layer_moe_rh = training ? R * H : 0;
        a->n_route = (int)nr;
        a->n_plans = (int)Lr;
        size_t per_plan = 3 * nr * k + E + 1, ni = (size_t)sz.ints;
        a->plans = calloc(Lr, sizeof *a->plans);
        a->imem = malloc(sizeof(int) * ni);
        if (!a->plans || !a->imem) {
            mvmoe_acts_free(a);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zu routing plans (%zu integers)", Lr, ni);
        }
        for (size_t l = 0; l < Lr; l++) {
            int *base = a->imem + l * per_plan;
            mvmoe_plan *pl = &a->plans[l];
            pl->expert = base;
            pl->pos = base + nr * k;
            pl->src = base + 2 * nr * k;
            pl->start = base + 3 * nr * k;
            pl->gate = a->rgate + l * nr * k;
            pl->n = 0;
            pl->start[0] = 0;
        }
        a->rtarget = (int32_t *)(a->imem + Lr * per_plan);
    }
    return MVMOE_OK;
}

void mvmoe_acts_free(mvmoe_acts *a) {
    free(a->plans);
    free(a->imem);
    free(a->mem);
    memset(a, 0, sizeof *a);
}
