/* The reference kernels of the runtime (rt_kernels.h): the textbook loops, one sum per output
 * in k order. */
#include "runtime/rt_kernels.h"
#include "runtime/rt_ops_body.h"

static void linear_f32(float *out, int ldo, const float *a, int lda, const float *w,
                       const float *b, int M, int K, int N) {
    for (int m = 0; m < M; m++) {
        const float *x = a + (long)m * lda;
        for (int n = 0; n < N; n++) {
            const float *wr = w + (long)n * K;
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += x[k] * wr[k];
            out[(long)m * ldo + n] = b ? s + b[n] : s;
        }
    }
}

static void dot_i8(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    for (int m = 0; m < M; m++) {
        const int8_t *x = qa + (long)m * K;
        for (int n = 0; n < N; n++) {
            const int8_t *wr = qw + (long)n * K;
            int32_t s = 0;
            for (int k = 0; k < K; k++) s += (int32_t)x[k] * wr[k];
            acc[(long)m * N + n] = s;
        }
    }
}

RT_OPS_DEFINE(, plain, 4, 2, 4, 4)
RT_LINEAR_I8_DEFINE(, plain, dot_i8)

static const mvmoe_rt_kernels PLAIN = {"plain", linear_f32, dot_i8, RT_OPS_ENTRIES(plain), linear_i8_plain};

const mvmoe_rt_kernels *mvmoe_rt_kernels_plain(void) { return &PLAIN; }
