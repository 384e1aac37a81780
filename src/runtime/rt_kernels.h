/* The runtime's compute kernels (src/runtime, the dependency-free inference runtime behind
 * include/mvmoe_run.h): one interface, one implementation per instruction set, chosen once at
 * run time, so that one binary runs on any CPU of its architecture.
 *
 *   rt_kernels_plain.c  the reference: plain C17, every CPU; kept forever, the others are
 *                       tested against it (tests/runtime/test_rt_kernels.c)
 *   rt_kernels_x86.c    x86-64: AVX-512 (+ VNNI) and AVX2 + FMA, by function target
 *                       attributes and __builtin_cpu_supports, not by -march
 *   rt_kernels_neon.c   arm64: NEON (fp32) and the dot-product extension (SDOT, int8), found
 *                       with getauxval(AT_HWCAP)
 *   rt_kernels.c        the choice (mvmoe_rt_kernels_get), MVMOE_ISA=plain forces the reference
 *
 * Weights are used as the checkpoint stores them, [N, K] row-major, read in place from the
 * memory-mapped file: no packed copy, so an image touches only its experts' pages.
 * The int8 sums are exact integers: every implementation returns the same int32 values, so the
 * int8 logits are the same bits on every CPU (x86 vs arm64 under qemu is checked by the tests).
 * The fp32 sums may be ordered differently per implementation (within rounding).
 * The other operations (layernorm … dequant) are one plain-C body per operation
 * (rt_ops_body.h) that each set compiles with its own target: the same bits from every set. */
#ifndef MVMOE_RUNTIME_RT_KERNELS_H
#define MVMOE_RUNTIME_RT_KERNELS_H

#include <stdint.h>

typedef struct {
    const char *name; /* "plain", "avx2", "avx2-vnni", "avx512", "avx512-vnni", "neon", "neon-dotprod" */
    /* out[m*ldo + n] = Σ_k a[m*lda + k]·w[n*K + k] (+ b[n] if b) for m < M, n < N. */
    void (*linear_f32)(float *out, int ldo, const float *a, int lda, const float *w,
                       const float *b, int M, int K, int N);
    /* acc[m*N + n] = Σ_k qa[m*K + k]·qw[n*K + k], exact in int32 (K < 66,000). qa and qw in
     * -127…127. */
    void (*dot_i8)(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N);
    /* The other operations, one body each (rt_ops_body.h) compiled per set: the same bits from
     * every set. LayerNorm of M rows of D (eps 1e-6), in → out (may alias). */
    void (*layernorm)(float *out, const float *in, const float *w, const float *b, int M, int D);
    /* Exact GELU (the runtime's own erf), in place. */
    void (*gelu)(float *x, long n);
    /* Attention of one image, heads [h0, h1) of `heads`: qkv [T, 3D] (q, k, v; heads of
     * D/heads), the queries of rows [q0, q1) only; out [T, D] (those rows' and heads' entries;
     * each row's result is the same whatever the range it is computed in); scratch: sc
     * RT_ATT_SC(T) floats, kt RT_ATT_KT(T, D) floats. */
    void (*attention)(float *out, const float *qkv, int T, int q0, int q1, int D, int heads, int h0, int h1,
                      float *sc, float *kt);
    /* Per-row symmetric int8 of M activation rows (stride lda): qa [M·K] in -127…127, scale
     * sa [M] (NaN, zeros in qa, for a row that is not finite). */
    void (*quant_rows)(int8_t *qa, float *sa, const float *a, int lda, int M, int K);
    /* out[m·ldo + j] = (float)acc[m·N + j]·(sa[m]·sw[j]) (+ b[j] if b). */
    void (*dequant)(float *out, int ldo, const int32_t *acc, const float *sa, const float *sw, const float *b, int M,
                    int N);
    /* The int8 linear after the activations' quantization: y = (float)Σ_k qa[m·K + k]·qw[n·K + k]
     * ·(sa[m]·sw[n]) (+ b[n] if b), out[m·ldo + n] = y, or with add out[m·ldo + n] + y (the
     * residual): the bits of dot_i8, dequant, then that add, in every set; the blocked kernels
     * dequantize in the tile's store instead of going through acc (scratch, [M·N] int32).
     * wsum: Σ_k qw[n·K + k] per n, made at open (VPDPBUSD's correction, see rt_kernels_x86.c),
     * or NULL: the kernels that need it make it per call. */
    void (*linear_i8)(float *out, int ldo, const int8_t *qa, const float *sa, const int8_t *qw, const float *sw,
                      const int32_t *wsum, const float *b, int M, int K, int N, int add, int32_t *acc);
} mvmoe_rt_kernels;

/* The attention's scratch (rt_ops_body.h: T rounded up to 32 keys, 8 queries at a time). */
#define RT_ATT_SC(T) (8L * (((long)(T) + 31) / 32 * 32))
#define RT_ATT_KT(T, D) ((long)(D) * (((long)(T) + 31) / 32 * 32))

/* The reference implementation (every CPU). */
const mvmoe_rt_kernels *mvmoe_rt_kernels_plain(void);
/* The fastest implementation this CPU runs; MVMOE_ISA=plain in the environment forces the
 * reference. Never NULL. */
const mvmoe_rt_kernels *mvmoe_rt_kernels_get(void);

#if defined(__x86_64__)
/* NULL when this CPU lacks the instructions (rt_kernels_x86.c). */
const mvmoe_rt_kernels *mvmoe_rt_kernels_avx512(void);
const mvmoe_rt_kernels *mvmoe_rt_kernels_avx2(void);
/* AVX2 with AVX-VNNI's 256-bit VPDPBUSD for the int8 products ("avx2-vnni"). */
const mvmoe_rt_kernels *mvmoe_rt_kernels_avx2_vnni(void);
#endif
#if defined(__aarch64__)
/* NULL when this CPU lacks the instructions (rt_kernels_neon.c). neon: fp32 NEON with the
 * int8 sums by widening multiplies; neon_dotprod: the same with SDOT. */
const mvmoe_rt_kernels *mvmoe_rt_kernels_neon(void);
const mvmoe_rt_kernels *mvmoe_rt_kernels_neon_dotprod(void);
#endif

#endif
