/* Memory a model will take, computed from its config before anything is allocated, so that a
 * model or batch that cannot fit fails with a message (the CLI's --max-memory) instead of an
 * out-of-memory kill or a machine swapping for an hour.
 *
 * It mirrors the allocations of src/model/layout.c (parameter arena: regions padded to 16
 * floats; tensor table), mvmoe_model_train_init (gradients, AdamW m and v), mvmoe_acts_init
 * (one arena of 16-float-padded buffers, plus the MoE routing plans), mvmoe_evaluate
 * (confusion matrix), mvmoe_model_pack_weights (packed weights) and, with bf16 products on,
 * their rounded operands (kernels/linear_bf16.c). tests/model/test_memory.c checks the mirror against the sizes those
 * functions really allocate, so a buffer added there without adding it here fails a test.
 * Sums are taken in double: a hostile config can ask for more than SIZE_MAX bytes, and then
 * the answer is SIZE_MAX rather than a wrapped-around small number. */
#include <omp.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/layout.h"
#include "model/model.h"
#include "model/router.h"

/* Rounding up as the allocators do; sizes beyond 2^60 are far past any limit, left as they are. */
static double pad16(double n) {
    return n <= 0 ? 0 : n >= 0x1p60 ? n : (double)(((uint64_t)n + 15) / 16 * 16);
}
static double pad64b(double bytes) {
    return bytes <= 0 ? 64 : bytes >= 0x1p60 ? bytes : (double)(((uint64_t)bytes + 63) / 64 * 64);
}

/* Floats of the parameter arena: mirrors layout.c's region_sizes / region_offsets. */
static double arena_floats(const mvmoe_config *c) {
    double D = c->dim, H = c->mlp_dim, depth = c->depth, T = mvmoe_config_tokens(c);
    int moe = c->routing != MVMOE_ROUTING_DENSE;
    double L = moe ? c->moe_layers : 0, E = c->experts, K = c->num_classes;
    double slots = depth - L + L * E, CPP = (double)c->in_chans * c->patch * c->patch;
    int image = c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS || c->routing == MVMOE_ROUTING_IMAGE_LEARNED;
    double sz[] = {
        D * CPP, D, D, T * D,                       /* patch_w, patch_b, cls, pos */
        depth * D, depth * D,                       /* ln1 */
        depth * 3 * D * D, depth * 3 * D,           /* qkv */
        depth * D * D, depth * D,                   /* proj */
        depth * D, depth * D,                       /* ln2 */
        slots * H * D, slots * H, slots * D * H, slots * D, /* fc1, fc2 */
        image ? E * D : 0,                          /* per-image router */
        c->routing == MVMOE_ROUTING_TOKEN_LEARNED ? L * E * D : 0, /* per-token routers */
        D, D, K * D, K,                             /* norm, head */
    };
    double total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) total += pad16(sz[i]);
    return total;
}

/* Bytes of the tensor table mvmoe_layout_build allocates (its `cap` entries). */
static double table_bytes(const mvmoe_config *c) {
    int moe = c->routing != MVMOE_ROUTING_DENSE;
    double Lm = moe ? c->moe_layers : 0, slots = c->depth - Lm + Lm * c->experts;
    return (8 + 8.0 * c->depth + 4 * slots + Lm + 1) * sizeof(mvmoe_tensor_info);
}

/* Bytes mvmoe_acts_init allocates for B images: mirrors its buffer list. */
static double acts_bytes(const mvmoe_config *c, double B, int training) {
    double T = mvmoe_config_tokens(c), N = T - 1, D = c->dim, H = c->mlp_dim, K = c->num_classes,
           NH = c->heads, S = c->img_size, C = c->in_chans, P = c->patch;
    double L = training ? c->depth : 1, BT = B * T, tr = training ? 1 : 0;
    int moe = c->routing != MVMOE_ROUTING_DENSE, token = c->routing == MVMOE_ROUTING_TOKEN_LEARNED;
    double E = moe ? c->experts : 0, k = moe ? c->top_k : 0;
    double Lm = moe ? (training ? c->moe_layers : 1) : 0, R = BT * k;
    double Lr = moe ? (token ? c->moe_layers : 1) : 0, nr = token ? BT : B;
    double n[] = {
        B * C * S * S, B * N * C * P * P, B * N * D,             /* img, patches, pe */
        BT * D, L * BT * D, L * BT, L * BT, L * BT * 3 * D,      /* x0, ln1 (+stats), qkv */
        L * B * NH * T * T, L * BT * D, L * BT * D, L * BT * D,  /* att, atty, res1, ln2 */
        L * BT, L * BT, L * BT * H, L * BT * H, L * BT * D,      /* ln2 stats, fch, gelu, res2 */
        BT * D, (double)c->depth * 2 * B, B * D, B * D, B, B,    /* branch, keep, clsx, lnf */
        B * K, B * K, B, B * K,                                  /* logits, probs, losses, targets */
        tr * BT * D, tr * BT * D, tr * BT * D, tr * BT * 3 * D,  /* d_res, d_branch, d_ln, d_qkv */
        tr * B * NH * T * T, tr * BT * D, tr * BT * H, tr * BT * H, /* d_att, d_atty, d_fch(_gelu) */
        tr * B * D, tr * B * D, tr * B * K, tr * B * N * D,      /* d_clsx, d_lnf, d_logits, d_pe */
        Lm * R * D, Lm * R * H, Lm * R * H, Lm * R * D,          /* MoE expert buffers */
        Lr * nr * E, Lr * nr * E, Lr * nr * E, Lr * nr * k,      /* router z, p, noise, gates */
        tr * R * D, tr * R * H, tr * R * H,                      /* MoE gradients */
        tr * Lr * nr * E, tr * Lr * nr * E, tr * Lr * nr * k,    /* router gradients */
    };
    double floats = 0;
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) floats += pad16(n[i]);
    double bytes = pad64b(floats * sizeof(float));
    if (moe) /* routing plans and their integer arrays */
        bytes += Lr * sizeof(mvmoe_plan) + sizeof(int) * (Lr * (3 * nr * k + E + 1) + nr);
    return bytes;
}

/* The bf16 products' rounded operands (kernels/linear_bf16.c), when that mode is on: per
 * thread, a block of 512 input rows of the widest forward product; in training, the largest
 * backward product's dout, input and weight, all rows (M = batch x tokens). */
static double bf16_workspace_bytes(const mvmoe_config *c, double B, int training) {
    const double D = c->dim, H = c->mlp_dim, T = mvmoe_config_tokens(c),
                 CPP = (double)c->in_chans * c->patch * c->patch;
    const double widest = H > D ? (H > CPP ? H : CPP) : (D > CPP ? D : CPP);
    double bytes = omp_get_max_threads() * 512.0 * widest * 2;
    if (training) {
        double nk = 4 * D > D + H ? 4 * D : D + H; /* qkv: 3D + D; fc1, fc2: H + D */
        if (CPP + D > nk) nk = CPP + D;
        bytes += (B * T * nk + (3 * D * D > H * D ? 3 * D * D : H * D)) * 2;
    }
    return bytes;
}

size_t mvmoe_model_memory_estimate(const mvmoe_config *c, int batch, int training) {
    if (!c || mvmoe_config_validate(c) != MVMOE_OK || batch < 0) return SIZE_MAX;
    double K = c->num_classes, B = batch;
    double params = pad64b(arena_floats(c) * sizeof(float));
    double total = params + table_bytes(c);
    if (batch > 0) {
        /* mvmoe_evaluate's inference arena (also validation during training), its confusion
         * matrix, per-class accuracies and batch indices, and the packed copies of the
         * weights that inference makes (model.c; their size as oneDNN reports it) */
        total += acts_bytes(c, B, 0) + K * K * sizeof(int64_t) + K * sizeof(double) + B * 4;
        const double packed = (double)mvmoe_model_packed_floats(c);
        if (packed > 0) total += pad64b(packed * sizeof(float));
        if (training) total += 3 * params + acts_bytes(c, B, 1); /* gradients, AdamW m, v */
        if (mvmoe_linear_bf16_mode()) total += bf16_workspace_bytes(c, B, training);
    } else if (training) {
        total += 3 * params;
    }
    return total >= 0x1p64 ? SIZE_MAX : (size_t)total;
}
