/* The arm64 kernels of the runtime (rt_kernels.h): NEON for fp32, and for the int8 sums either
 * widening multiplies (every arm64 CPU: NEON is part of the base architecture) or the
 * dot-product extension's SDOT (Armv8.2+ cores: Cortex-A55/A75 and later), which is found at
 * run time, so one binary built for plain armv8-a runs on every phone and uses SDOT where the
 * CPU has it. The SDOT functions alone are compiled for +dotprod (a function target attribute):
 * nothing else in the binary may use those instructions.
 *
 * Both work on blocks of 4 activation rows x 4 weight rows (16 vector accumulators: each loaded
 * vector is used 4 times), with 1-row and 1-column blocks for the edges and scalar loops for
 * the K tail, reading the weights in place ([N, K] row-major, as the checkpoint stores them).
 * On other architectures this file compiles to nothing. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <sys/auxv.h>

#include "runtime/rt_kernels.h"
#include "runtime/rt_ops_body.h"

/* Linux's bits of AT_HWCAP on arm64 (asm/hwcap.h), for C libraries whose headers lack them */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

/* GCC's arm_neon.h defines the SDOT intrinsics for "arch=armv8.2-a+dotprod", and an inlined
 * intrinsic needs its caller to have at least those features ("+dotprod" alone is refused);
 * clang (the Android NDK's compiler) takes the feature's name */
#if defined(__clang__)
#define RT_DOTPROD __attribute__((target("dotprod")))
#else
#define RT_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define RT_INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------------- fp32 */

/* out[i, j] for i < MR activation rows, j < NR weight rows; MR and NR are constants at each
 * call, so the arrays below become registers. */
RT_INLINE void f32_block(float *out, int ldo, const float *a, int lda, const float *w,
                         const float *b, int K, int MR, int NR) {
    float32x4_t acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = vdupq_n_f32(0.0f);
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        float32x4_t av[4], wv[4];
        for (int i = 0; i < MR; i++) av[i] = vld1q_f32(a + (long)i * lda + k);
        for (int j = 0; j < NR; j++) wv[j] = vld1q_f32(w + (long)j * K + k);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = vfmaq_f32(acc[i][j], av[i], wv[j]);
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float s = vaddvq_f32(acc[i][j]);
            for (int t = k; t < K; t++) s += a[(long)i * lda + t] * w[(long)j * K + t];
            out[(long)i * ldo + j] = b ? s + b[j] : s;
        }
}

static void linear_f32(float *out, int ldo, const float *a, int lda, const float *w,
                       const float *b, int M, int K, int N) {
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        const float *am = a + (long)m * lda;
        float *om = out + (long)m * ldo;
        int n = 0;
        for (; n + 4 <= N; n += 4)
            f32_block(om + n, ldo, am, lda, w + (long)n * K, b ? b + n : 0, K, 4, 4);
        for (; n < N; n++) f32_block(om + n, ldo, am, lda, w + (long)n * K, b ? b + n : 0, K, 4, 1);
    }
    for (; m < M; m++) {
        const float *am = a + (long)m * lda;
        float *om = out + (long)m * ldo;
        int n = 0;
        for (; n + 4 <= N; n += 4)
            f32_block(om + n, ldo, am, lda, w + (long)n * K, b ? b + n : 0, K, 1, 4);
        for (; n < N; n++) f32_block(om + n, ldo, am, lda, w + (long)n * K, b ? b + n : 0, K, 1, 1);
    }
}

/* ------------------------------------------------------- int8, widening multiplies */

/* 16 products per step: vmull_s8 multiplies bytes 0-7 into int16, vmlal_s8 adds the products
 * of bytes 8-15 lane by lane; |two products| <= 2·127·127 = 32258 fits int16 because the
 * operands lie in -127…127 (rt_kernels.h; -128·-128 twice would not). vpadalq_s16 then adds
 * neighbouring int16 lanes into the int32 accumulator, so every sum is exact. */
RT_INLINE void i8_block(int32_t *acc, int ldc, const int8_t *qa, const int8_t *qw, int K, int MR,
                        int NR) {
    int32x4_t s[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) s[i][j] = vdupq_n_s32(0);
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        int8x16_t av[4], wv[4];
        for (int i = 0; i < MR; i++) av[i] = vld1q_s8(qa + (long)i * K + k);
        for (int j = 0; j < NR; j++) wv[j] = vld1q_s8(qw + (long)j * K + k);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) {
                int16x8_t p = vmull_s8(vget_low_s8(av[i]), vget_low_s8(wv[j]));
                p = vmlal_high_s8(p, av[i], wv[j]);
                s[i][j] = vpadalq_s16(s[i][j], p);
            }
    }
    if (k + 8 <= K) {
        for (int i = 0; i < MR; i++) {
            int8x8_t a8 = vld1_s8(qa + (long)i * K + k);
            for (int j = 0; j < NR; j++)
                s[i][j] = vpadalq_s16(s[i][j], vmull_s8(a8, vld1_s8(qw + (long)j * K + k)));
        }
        k += 8;
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            int32_t t = vaddvq_s32(s[i][j]);
            for (int r = k; r < K; r++) t += (int32_t)qa[(long)i * K + r] * qw[(long)j * K + r];
            acc[(long)i * ldc + j] = t;
        }
}

static void dot_i8(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int n = 0;
        for (; n + 4 <= N; n += 4)
            i8_block(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 4, 4);
        for (; n < N; n++)
            i8_block(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 4, 1);
    }
    for (; m < M; m++) {
        int n = 0;
        for (; n + 4 <= N; n += 4)
            i8_block(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 1, 4);
        for (; n < N; n++)
            i8_block(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 1, 1);
    }
}

/* -------------------------------------------------------------------- int8, SDOT */

/* SDOT adds, in each int32 lane, the 4 products of the lane's 4 bytes: exact, and any int8
 * values (-128 included) are safe. clang's arm_neon.h (clang 14, as in NDK r25) declares
 * vdotq_s32 only when the whole file is compiled for +dotprod, so there the one instruction
 * is written out; GCC's intrinsic works under the function's target attribute. */
#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
RT_DOTPROD RT_INLINE int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
}
#else
#define sdot vdotq_s32
#endif

RT_DOTPROD RT_INLINE void i8_block_sdot(int32_t *acc, int ldc, const int8_t *qa, const int8_t *qw,
                                        int K, int MR, int NR) {
    int32x4_t s[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) s[i][j] = vdupq_n_s32(0);
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        int8x16_t av[4], wv[4];
        for (int i = 0; i < MR; i++) av[i] = vld1q_s8(qa + (long)i * K + k);
        for (int j = 0; j < NR; j++) wv[j] = vld1q_s8(qw + (long)j * K + k);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) s[i][j] = sdot(s[i][j], av[i], wv[j]);
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            int32_t t = vaddvq_s32(s[i][j]);
            for (int r = k; r < K; r++) t += (int32_t)qa[(long)i * K + r] * qw[(long)j * K + r];
            acc[(long)i * ldc + j] = t;
        }
}

RT_DOTPROD static void dot_i8_sdot(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K,
                                   int N) {
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int n = 0;
        for (; n + 4 <= N; n += 4)
            i8_block_sdot(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 4, 4);
        for (; n < N; n++)
            i8_block_sdot(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 4, 1);
    }
    for (; m < M; m++) {
        int n = 0;
        for (; n + 4 <= N; n += 4)
            i8_block_sdot(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 1, 4);
        for (; n < N; n++)
            i8_block_sdot(acc + (long)m * N + n, N, qa + (long)m * K, qw + (long)n * K, K, 1, 1);
    }
}

/* ------------------------------------------------------------------------ getters */

/* the other operations: rt_ops_body.h's loops, which the baseline arm64 flags vectorize with
 * NEON already */
RT_OPS_DEFINE(, neon, 4, 4, 4, 4)
RT_LINEAR_I8_DEFINE(, neon, dot_i8)
RT_LINEAR_I8_DEFINE(RT_DOTPROD, neon_sdot, dot_i8_sdot)

static const mvmoe_rt_kernels NEON = {"neon", linear_f32, dot_i8, RT_OPS_ENTRIES(neon), linear_i8_neon};
static const mvmoe_rt_kernels NEON_DOTPROD = {"neon-dotprod", linear_f32, dot_i8_sdot, RT_OPS_ENTRIES(neon),
                                              linear_i8_neon_sdot};

const mvmoe_rt_kernels *mvmoe_rt_kernels_neon(void) {
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) ? &NEON : 0;
}

const mvmoe_rt_kernels *mvmoe_rt_kernels_neon_dotprod(void) {
    unsigned long hw = getauxval(AT_HWCAP);
    return ((hw & HWCAP_ASIMD) && (hw & HWCAP_ASIMDDP)) ? &NEON_DOTPROD : 0;
}

#else
/* ISO C wants a declaration in every translation unit */
typedef int mvmoe_rt_kernels_neon_absent;
#endif
