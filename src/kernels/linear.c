/* The linear layers' one entry point (kernels.h): chooses the backend of each product.
 *
 *   forward:  int8 mode (inference only) with a packed (there: int8) copy, dense rows
 *                                              -> linear_int8.c
 *             bf16 products on (mvmoe_set_precision) and the weight large enough, with a
 *             packed (there: bf16) copy        -> linear_bf16.c
 *             a packed copy, dense rows        -> linear_packed.c
 *             otherwise, or when one of those cannot run the call -> linear_sgemm.c
 *   backward: bf16 products on and the weight large enough -> linear_bf16.c, else (or when it
 *             cannot) linear_sgemm.c
 *
 * The choice depends on the mode, the weight's shape and whether the caller has a packed copy,
 * never on the rows of a call, so a product's arithmetic does not change with how its rows
 * are cut (the thread count never changes a result). The backends never call each other. */
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "kernels/kernels.h"
#include "kernels/linear_backend.h"
#include "mvmoe.h"

/* Products whose weight has fewer elements stay fp32 in the bf16 mode: the rounding passes
 * would cost more than they save (linear_bf16.c). */
#define BF16_MIN_WEIGHTS (64 * 64)

static mvmoe_precision mode = MVMOE_PRECISION_FP32;

/* Whether products with a weight w[N,K] run in bf16 now (mode on, and the weight large enough) */
static int bf16_shape(int N, int K) { return mode == MVMOE_PRECISION_BF16 && (double)N * K >= BF16_MIN_WEIGHTS; }

mvmoe_status mvmoe_set_precision(mvmoe_precision p) {
    if (p != MVMOE_PRECISION_FP32 && p != MVMOE_PRECISION_BF16 && p != MVMOE_PRECISION_INT8)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "unknown precision %d (fp32, bf16 or int8)", (int)p);
    if (p == MVMOE_PRECISION_BF16 && mvmoe_linear_bf16_probe())
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED,
                   "bf16 products need a CPU with AVX-512 BF16 or AMX-BF16, for which oneDNN (%s) "
                   "has kernels; this one has none: use fp32 (the default)",
                   mvmoe_gemm_library());
    mode = p; /* int8 needs no probe: a plain-C loop serves CPUs without AVX-512 VNNI */
    return MVMOE_OK;
}

mvmoe_precision mvmoe_get_precision(void) { return mode; }

const char *mvmoe_precision_name(mvmoe_precision p) {
    return p == MVMOE_PRECISION_BF16 ? "bf16" : p == MVMOE_PRECISION_INT8 ? "int8" : "fp32";
}

size_t mvmoe_linear_packed_size(int N, int K) {
    const size_t bytes = mode == MVMOE_PRECISION_INT8 ? mvmoe_linear_int8_bytes(N, K)
                       : bf16_shape(N, K) ? (size_t)N * K * sizeof(uint16_t) /* the bf16 copy, row-major */
                                          : mvmoe_linear_packed_bytes(N, K);
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

int mvmoe_linear_pack(float *dst, const float *w, int N, int K) {
    if (mode == MVMOE_PRECISION_INT8) return mvmoe_linear_int8_pack(dst, w, N, K);
    if (bf16_shape(N, K)) {
        mvmoe_bf16_round((uint16_t *)dst, w, (size_t)N * K);
        return 0;
    }
    return mvmoe_linear_packed_pack(dst, w, N, K);
}

void mvmoe_linear_forward(float *out, int ldo, const float *in, int ldi, mvmoe_linear_weights w,
                          const float *b, int M, int K, int N) {
    if (w.packed && ldo == N && ldi == K) {
        if (mode == MVMOE_PRECISION_INT8) { /* the packed copy holds int8 weights */
            if (!mvmoe_linear_int8_forward(out, in, w.packed, b, M, K, N)) return;
        } else if (bf16_shape(N, K)) { /* the packed copy holds bf16 weights */
            if (!mvmoe_linear_bf16_forward(out, in, (const uint16_t *)w.packed, b, M, K, N)) return;
        } else if (!mvmoe_linear_packed_forward(out, in, w.packed, w.w, b, M, K, N)) {
            return;
        }
    }
    mvmoe_linear_sgemm_forward(out, ldo, in, ldi, w.w, b, M, K, N);
}

void mvmoe_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                           const float *w, int M, int K, int N, mvmoe_grad_write din_write) {
    /* overwriting gives the bits of accumulating into zeros (x + 0 = x), without the pass over
     * din that would zero it */
    const float din_beta = din_write == MVMOE_GRAD_OVERWRITE ? 0.0f : 1.0f;
    if ((din || dw) && bf16_shape(N, K) &&
        mvmoe_linear_bf16_backward(din, din_beta, dw, db, dout, in, w, M, K, N) == 0)
        return; /* done with bf16 products, db included */
    mvmoe_linear_sgemm_backward(din, din_beta, dw, db, dout, in, w, M, K, N);
}

/* out[M,N] = in[M,K]·w[N,K]ᵀ + b — plain loops, the oracle. */
void mvmoe_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int M,
                              int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b ? b[j] : 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)in[(size_t)i * K + k] * w[(size_t)j * K + k];
            out[(size_t)i * N + j] = (float)acc;
        }
}

void mvmoe_linear_backward_ref(float *din, float *dw, float *db, const float *dout, const float *in,
                               const float *w, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float g = dout[(size_t)i * N + j];
            if (db) db[j] += g;
            for (int k = 0; k < K; k++) {
                if (din) din[(size_t)i * K + k] += g * w[(size_t)j * K + k];
                if (dw) dw[(size_t)j * K + k] += g * in[(size_t)i * K + k];
            }
        }
}
