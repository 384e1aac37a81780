/* Memory a model will take, computed from its config before anything is allocated, so that a
 * model or batch that cannot fit fails with a message (the CLI's --max-memory) instead of an
 * out-of-memory kill or a machine swapping for an hour.
 *
 * It sums the size tables the allocators themselves read: the parameter arena and tensor
 * table (layout.c), the activation arenas (acts.c: one for inference, one for training), and
 * adds what is proportional to them: gradients and AdamW m and v (mvmoe_model_train_init),
 * mvmoe_evaluate's confusion matrix, the packed weights (mvmoe_model_pack_weights) and, with
 * bf16 products on, their rounded operands (kernels/linear_bf16.c). A buffer added to an
 * arena is therefore counted here without any change; tests/model/test_memory.c checks the
 * sum against what really gets allocated. Sums are taken in double: a hostile config can ask
 * for more than SIZE_MAX bytes, and then the answer is SIZE_MAX rather than a wrapped-around
 * small number. */
#include <omp.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/layout.h"
#include "model/model.h"

static double pad64b(double bytes) {
    return bytes <= 0 ? 64 : bytes >= 0x1p60 ? bytes : (double)(((uint64_t)bytes + 63) / 64 * 64);
}

/* Bytes mvmoe_acts_init allocates for B images: its own size table (acts.c). */
static double acts_bytes(const mvmoe_config *c, double B, int training) {
    mvmoe_acts_size s;
    mvmoe_acts_size_of(&s, c, B, training);
    return s.bytes;
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
    /* the parameter arena and its tensor table, from layout.c's size table */
    double params = pad64b((double)mvmoe_layout_arena_floats(c) * sizeof(float));
    double total = params + (double)mvmoe_layout_table_cap(c) * sizeof(mvmoe_tensor_info);
    if (batch > 0) {
        /* mvmoe_evaluate's inference arena (also validation during training), its confusion
         * matrix, per-class accuracies and batch indices, and the packed copies of the
         * weights that inference makes (model.c; their size as oneDNN reports it) */
        total += acts_bytes(c, B, 0) + K * K * sizeof(int64_t) + K * sizeof(double) + B * 4;
        const double packed = (double)mvmoe_model_packed_floats(c);
        if (packed > 0) total += pad64b(packed * sizeof(float));
        if (training) total += 3 * params + acts_bytes(c, B, 1); /* gradients, AdamW m, v */
        if (mvmoe_get_precision() == MVMOE_PRECISION_BF16) total += bf16_workspace_bytes(c, B, training);
    } else if (training) {
        total += 3 * params;
    }
    return total >= 0x1p64 ? SIZE_MAX : (size_t)total;
}
