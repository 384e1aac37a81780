/* AVX-512 attention kernels, chosen at run time (isa.c): softmax rows, and a fused block for
 * small heads (hd = 16, T <= 64: 12x64 and the other narrow presets).
 *
 * Softmax was the largest non-GEMM cost of 12x64 inference (T = 50, on the AVX2 path;
 * docs/PERFORMANCE.md §2.6). It gives the bits of the AVX2 path in attention.c (simd.h:
 * mvmoe_simd_max, mvmoe_simd_exp_shift_sum, mvmoe_simd_scale), which
 * tests/kernels/test_attention.c checks:
 *  - the maximum is exact in any order;
 *  - exp16 is exp8's polynomial and operation order, lane for lane (simd512.h);
 *  - the sum keeps AVX2's 8 partial sums and order: each 16-lane block is added as its low
 *    8 lanes, then its high 8 (chunk k of 8 after chunk k-1), masked lanes as +0, and the
 *    final 8 -> 1 reduction is AVX2's;
 *  - the scale is the same multiplication by the same 1/sum. */
#include <stddef.h>

#include "kernels/attention_avx512.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/simd512.h"

/* Lanes [16j, 16j + 16) ∩ [0, T). */
AVX512 static inline __mmask16 lanes(int T, int j) {
    const int left = T - 16 * j;
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* R rows of T <= 16·NV scores held in R·NV registers (the fused small-head block below):
 * softmax without a round trip through memory. A row's work is mostly reductions and the
 * latency of its exp polynomials; R independent rows side by side give the core R times the
 * independent work. */
AVX512 static inline void softmax_regs(__m512 (*v)[16], int T, const int R, const int NV) {
    __m512 vs[4];
    __m256 acc[4];
    for (int r = 0; r < R; r++) { /* max, starting from the row's first element */
        vs[r] = _mm512_broadcastss_ps(_mm512_castps512_ps128(v[r][0]));
        for (int j = 0; j < NV; j++) vs[r] = _mm512_mask_max_ps(vs[r], lanes(T, j), vs[r], v[r][j]);
        vs[r] = _mm512_set1_ps(_mm512_reduce_max_ps(vs[r]));
        acc[r] = _mm256_setzero_ps();
    }
    for (int j = 0; j < NV; j++)
        for (int r = 0; r < R; r++) {
            v[r][j] = _mm512_maskz_mov_ps(lanes(T, j), exp16(_mm512_sub_ps(v[r][j], vs[r])));
            if (T > 16 * j) acc[r] = _mm256_add_ps(acc[r], _mm512_castps512_ps256(v[r][j]));
            if (T > 16 * j + 8) acc[r] = _mm256_add_ps(acc[r], _mm512_extractf32x8_ps(v[r][j], 1));
        }
    for (int r = 0; r < R; r++) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        const __m512 inv = _mm512_set1_ps(1.0f / _mm_cvtss_f32(s));
        for (int j = 0; j < NV; j++) v[r][j] = _mm512_mul_ps(v[r][j], inv);
    }
}

/* R (<= 4) query rows q_r (hd = 16 floats at stride ld) of the fused block: scores against the
 * transposed key tile kt[16][64] (scale · Σ_c q_r[c]·k_j[c], c in order, as att_score2 does),
 * softmax in registers, probabilities stored to A rows (stride T). */
AVX512 static inline void small_scores_softmax(float *A, const float *q, size_t ld, const float *kt,
                                               int T, float scale, const int R) {
    __m512 v[4][16];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) v[r][u] = _mm512_setzero_ps();
    for (int c = 0; c < 16; c++) {
        __m512 kv[4];
        for (int u = 0; u < 4; u++) kv[u] = _mm512_load_ps(kt + c * 64 + 16 * u);
        for (int r = 0; r < R; r++) {
            const __m512 b = _mm512_set1_ps(q[(size_t)r * ld + c]);
            for (int u = 0; u < 4; u++) v[r][u] = _mm512_fmadd_ps(b, kv[u], v[r][u]);
        }
    }
    const __m512 vsc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) v[r][u] = _mm512_mul_ps(v[r][u], vsc);
    softmax_regs(v, T, R, 4);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) _mm512_mask_storeu_ps(A + (size_t)r * T + 16 * u, lanes(T, u), v[r][u]);
}

/* o_r = Σ_j A_rj v_j for R (<= 8) rows: one chain per row over the keys in order, as
 * att_combo's two-row path does, so the bits are the AVX2 path's. */
AVX512 static inline void small_av(float *o, size_t ldo, const float *A, int T, const float *v,
                                   size_t ld, const int R) {
    __m512 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int j = 0; j < T; j++) {
        const __m512 vv = _mm512_loadu_ps(v + (size_t)j * ld);
        for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(A[(size_t)r * T + j]), vv, acc[r]);
    }
    for (int r = 0; r < R; r++) _mm512_storeu_ps(o + (size_t)r * ldo, acc[r]);
}

/* Why fused: with hd = 16 and T = 50, an (image, head) pair is 160 kFLOP, and the three-step
 * path (tile-kernel scores, softmax, sgemm A·V) ran it far below the core's FMA rate, the
 * slowest part of 12x64 (docs/PERFORMANCE.md §2.6). Here the scores of 4 rows stay in 16
 * registers through the softmax, and A·V runs 8 rows (8 independent chains) at once. */
AVX512 void mvmoe_attention_small_avx512(float *o, size_t ldo, float *A, const float *q,
                                         const float *k, const float *v, size_t ld, int T, int nr,
                                         float scale) {
    _Alignas(64) float kt[16 * 64];
    for (int j0 = 0; j0 < 64; j0 += 16) { /* kt[c][j] = k[j][c], zero for j >= T */
        __m512 r[16];
        for (int j = 0; j < 16; j++)
            r[j] = j0 + j < T ? _mm512_loadu_ps(k + (size_t)(j0 + j) * ld) : _mm512_setzero_ps();
        transpose16(r);
        for (int c = 0; c < 16; c++) _mm512_store_ps(kt + c * 64 + j0, r[c]);
    }
    int i = 0;
    for (; i + 4 <= nr; i += 4) small_scores_softmax(A + (size_t)i * T, q + (size_t)i * ld, ld, kt, T, scale, 4);
    for (; i < nr; i++) small_scores_softmax(A + (size_t)i * T, q + (size_t)i * ld, ld, kt, T, scale, 1);
    i = 0;
    for (; i + 8 <= nr; i += 8) small_av(o + (size_t)i * ldo, ldo, A + (size_t)i * T, T, v, ld, 8);
    for (; i < nr; i++) small_av(o + (size_t)i * ldo, ldo, A + (size_t)i * T, T, v, ld, 1);
}

/* ---------------------------------------------------------------- hd = 64, T <= 80 */
/* Why: with hd = 64 and T = 65 (12x192; T = 50 for 12x256 and 12x384) a pair is six products
 * of 65 x 65 x 64, and sgemm spent much of its time on each in call and packing overhead,
 * which made attention a sizable part of a 12x192 training step (docs/PERFORMANCE.md §2.6).
 * These keep a pair's working set in L1 and its scores in registers through the softmax.
 * Unlike the small-head block above they do not follow the AVX2 path's order (that path uses
 * sgemm for hd >= 32, whose bits already depend on the machine); what they keep: every output
 * element is one chain in a fixed order, so a row's bits do not depend on the group or block
 * it falls in, nor on the thread count. */
#define KT_LD 80 /* keys per row of a transposed tile: T <= 80 */
/* the row counts (R) and vector counts (NV) must be constants in each copy, or the
 * accumulator arrays leave the registers */
#define AVX512_INLINE AVX512 static inline __attribute__((always_inline))

/* kt[c][j] = x_j[c] for c < 64, j < 16·ceil(T/16) (zero for j >= T); x rows at stride ld */
AVX512 static void transpose_rows64(float *kt, const float *x, size_t ld, int T) {
    for (int j0 = 0; j0 < T; j0 += 16)
        for (int c0 = 0; c0 < 64; c0 += 16) {
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = j0 + j < T ? _mm512_loadu_ps(x + (size_t)(j0 + j) * ld + c0) : _mm512_setzero_ps();
            transpose16(r);
            for (int c = 0; c < 16; c++) _mm512_store_ps(kt + (size_t)(c0 + c) * KT_LD + j0, r[c]);
        }
}

/* s[r][u], lanes j = 16u..16u+15: scale · Σ_c a_r[c]·kt[c][j], c = 0..63 in order, for R (<= 4)
 * rows a_r at stride lda and NV (<= 5) vectors of keys. */
AVX512_INLINE void scores64(__m512 (*s)[16], const float *a, size_t lda, const float *kt, float scale,
                                   const int R, const int NV) {
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) s[r][u] = _mm512_setzero_ps();
    for (int c = 0; c < 64; c++) {
        __m512 kv[5];
        for (int u = 0; u < NV; u++) kv[u] = _mm512_load_ps(kt + (size_t)c * KT_LD + 16 * u);
        for (int r = 0; r < R; r++) {
            const __m512 b = _mm512_set1_ps(a[(size_t)r * lda + c]);
            for (int u = 0; u < NV; u++) s[r][u] = _mm512_fmadd_ps(b, kv[u], s[r][u]);
        }
    }
    const __m512 vsc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) s[r][u] = _mm512_mul_ps(s[r][u], vsc);
}

/* Forward of R query rows: scores, softmax in registers, probabilities to A rows (stride T). */
AVX512_INLINE void forward64_rows(float *A, const float *q, size_t ld, const float *kt, int T,
                                         float scale, const int R, const int NV) {
    __m512 v[4][16];
    scores64(v, q, ld, kt, scale, R, NV);
    softmax_regs(v, T, R, NV);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) _mm512_mask_storeu_ps(A + (size_t)r * T + 16 * u, lanes(T, u), v[r][u]);
}

/* Backward of R query rows up to dS: dA = dO·Vᵀ (scores against the transposed values, scale
 * 1), then dS = A ⊙ (dA - Σ_j dA_j·A_j) · scale, stored to dS rows (stride T). */
AVX512_INLINE void backward64_rows(float *dS, const float *dO, size_t ldo, const float *A,
                                          const float *vt, int T, float scale, const int R, const int NV) {
    __m512 s[4][16];
    scores64(s, dO, ldo, vt, 1.0f, R, NV);
    const __m512 vsc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++) {
        const float *a = A + (size_t)r * T;
        __m512 acc = _mm512_setzero_ps();
        for (int u = 0; u < NV; u++) acc = _mm512_fmadd_ps(s[r][u], _mm512_maskz_loadu_ps(lanes(T, u), a + 16 * u), acc);
        const __m512 rs = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
        for (int u = 0; u < NV; u++) {
            const __m512 av = _mm512_maskz_loadu_ps(lanes(T, u), a + 16 * u);
            _mm512_mask_storeu_ps(dS + (size_t)r * T + 16 * u, lanes(T, u),
                                  _mm512_mul_ps(_mm512_mul_ps(av, _mm512_sub_ps(s[r][u], rs)), vsc));
        }
    }
}

/* d_r (64 floats at stride ldd) = (acc ? d_r : 0) + Σ_{n<cnt} cf[r·cs_r + n·cs_n]·x_n for R (<= 6)
 * rows; x_n rows of 64 floats at stride ldx. Each element is one chain over n in order; the
 * old value is added once, after. */
AVX512_INLINE void combo64(float *d, size_t ldd, const float *cf, size_t cs_r, size_t cs_n,
                                  const float *x, size_t ldx, int cnt, int acc, const int R) {
    __m512 s[6][4];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) { /* the output rows (strided: not prefetched by the core) */
            _mm_prefetch((const char *)(d + (size_t)r * ldd + 16 * u), _MM_HINT_T0);
            s[r][u] = _mm512_setzero_ps();
        }
    for (int n = 0; n < cnt; n++) {
        __m512 xv[4];
        for (int u = 0; u < 4; u++) _mm_prefetch((const char *)(x + (size_t)(n + 6) * ldx + 16 * u), _MM_HINT_T0);
        for (int u = 0; u < 4; u++) xv[u] = _mm512_loadu_ps(x + (size_t)n * ldx + 16 * u);
        for (int r = 0; r < R; r++) {
            const __m512 b = _mm512_set1_ps(cf[(size_t)r * cs_r + (size_t)n * cs_n]);
            for (int u = 0; u < 4; u++) s[r][u] = _mm512_fmadd_ps(b, xv[u], s[r][u]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) {
            float *p = d + (size_t)r * ldd + 16 * u;
            _mm512_storeu_ps(p, acc ? _mm512_add_ps(_mm512_loadu_ps(p), s[r][u]) : s[r][u]);
        }
}

/* combo64 over `rows` output rows, six at a time (24 accumulators), then the rest together */
AVX512 static void combo64_rows(float *d, size_t ldd, const float *cf, size_t cs_r, size_t cs_n, const float *x,
                                size_t ldx, int cnt, int rows, int acc) {
    int r = 0;
    for (; r + 6 <= rows; r += 6) combo64(d + (size_t)r * ldd, ldd, cf + (size_t)r * cs_r, cs_r, cs_n, x, ldx, cnt, acc, 6);
    d += (size_t)r * ldd, cf += (size_t)r * cs_r;
    switch (rows - r) {
    case 5: combo64(d, ldd, cf, cs_r, cs_n, x, ldx, cnt, acc, 5); break;
    case 4: combo64(d, ldd, cf, cs_r, cs_n, x, ldx, cnt, acc, 4); break;
    case 3: combo64(d, ldd, cf, cs_r, cs_n, x, ldx, cnt, acc, 3); break;
    case 2: combo64(d, ldd, cf, cs_r, cs_n, x, ldx, cnt, acc, 2); break;
    case 1: combo64(d, ldd, cf, cs_r, cs_n, x, ldx, cnt, acc, 1); break;
    }
}

/* `rows` query rows in groups of 4 (20 score registers at NV = 5), the last 1..3 one by one. */
#define ROWS64(call4, call1, rows, NV)               \
    do {                                             \
        int i_ = 0;                                  \
        for (; i_ + 4 <= (rows); i_ += 4) call4(NV); \
        for (; i_ < (rows); i_++) call1(NV);         \
    } while (0)
/* ROWS64 with NV = ceil(T/16) vectors of keys, a constant in each copy */
#define ROWS64_BY_T(call4, call1, rows, T)                \
    do {                                                  \
        if ((T) > 64) ROWS64(call4, call1, rows, 5);      \
        else if ((T) > 48) ROWS64(call4, call1, rows, 4); \
        else if ((T) > 32) ROWS64(call4, call1, rows, 3); \
        else if ((T) > 16) ROWS64(call4, call1, rows, 2); \
        else ROWS64(call4, call1, rows, 1);               \
    } while (0)

AVX512 void mvmoe_attention_hd64_forward_avx512(float *o, size_t ldo, float *A, const float *q, const float *k,
                                                const float *v, size_t ld, int T, int nr, float scale) {
    _Alignas(64) float kt[64 * KT_LD];
    transpose_rows64(kt, k, ld, T);
#define F4(NV) forward64_rows(A + (size_t)i_ * T, q + (size_t)i_ * ld, ld, kt, T, scale, 4, NV)
#define F1(NV) forward64_rows(A + (size_t)i_ * T, q + (size_t)i_ * ld, ld, kt, T, scale, 1, NV)
    ROWS64_BY_T(F4, F1, nr, T);
#undef F4
#undef F1
    combo64_rows(o, ldo, A, (size_t)T, 1, v, ld, T, nr, 0); /* o_i = Σ_j A_ij v_j */
}

AVX512 void mvmoe_attention_hd64_backward_avx512(float *dq, float *dk, float *dv, size_t ld, float *dS,
                                                 const float *dO, size_t ldo, const float *A, const float *q,
                                                 const float *k, const float *v, int T, int nq, float scale,
                                                 int acc) {
    _Alignas(64) float vt[64 * KT_LD];
    transpose_rows64(vt, v, ld, T);
#define B4(NV) backward64_rows(dS + (size_t)i_ * T, dO + (size_t)i_ * ldo, ldo, A + (size_t)i_ * T, vt, T, scale, 4, NV)
#define B1(NV) backward64_rows(dS + (size_t)i_ * T, dO + (size_t)i_ * ldo, ldo, A + (size_t)i_ * T, vt, T, scale, 1, NV)
    ROWS64_BY_T(B4, B1, nq, T);
#undef B4
#undef B1
    combo64_rows(dq, ld, dS, (size_t)T, 1, k, ld, T, nq, acc);  /* dq_i (+)= Σ_j dS_ij k_j */
    combo64_rows(dk, ld, dS, 1, (size_t)T, q, ld, nq, T, acc);  /* dk_j (+)= Σ_{i<nq} dS_ij q_i */
    combo64_rows(dv, ld, A, 1, (size_t)T, dO, ldo, nq, T, acc); /* dv_j (+)= Σ_{i<nq} A_ij dO_i */
}
#undef ROWS64_BY_T
#undef ROWS64

/* R rows of A (stride T) in three streamed passes (max; exp, sum; scale), the R rows
 * interleaved in each pass: a single row's passes are chains of dependent max and add
 * (4-cycle latency each per 16 floats), R rows give the core R independent chains. Measured
 * on one core, 4 interleaved rows take about a third less time than one row at a time at
 * T = 65 and 197 (docs/PERFORMANCE.md §2.6), and rows held in registers are no option, since
 * T > 64 leaves too few of them. */
AVX512 static inline void softmax_stream(float *x, int T, const int R) {
    __m512 vm[4], vs[4], inv[4];
    __m256 acc[4];
    const int nv = (T + 15) / 16;
    for (int r = 0; r < R; r++) vm[r] = _mm512_set1_ps(x[(size_t)r * T]);
    for (int j = 0; j < nv; j++) {
        const __mmask16 k = lanes(T, j);
        for (int r = 0; r < R; r++)
            vm[r] = _mm512_mask_max_ps(vm[r], k, vm[r], _mm512_maskz_loadu_ps(k, x + (size_t)r * T + 16 * j));
    }
    for (int r = 0; r < R; r++) {
        vs[r] = _mm512_set1_ps(_mm512_reduce_max_ps(vm[r]));
        acc[r] = _mm256_setzero_ps();
    }
    for (int j = 0; j < nv; j++) {
        const __mmask16 k = lanes(T, j);
        for (int r = 0; r < R; r++) {
            float *p = x + (size_t)r * T + 16 * j;
            const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p), vs[r])));
            _mm512_mask_storeu_ps(p, k, e);
            acc[r] = _mm256_add_ps(acc[r], _mm512_castps512_ps256(e));
            if (T - 16 * j > 8) acc[r] = _mm256_add_ps(acc[r], _mm512_extractf32x8_ps(e, 1));
        }
    }
    for (int r = 0; r < R; r++) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        inv[r] = _mm512_set1_ps(1.0f / _mm_cvtss_f32(s));
    }
    for (int j = 0; j < nv; j++) {
        const __mmask16 k = lanes(T, j);
        for (int r = 0; r < R; r++) {
            float *p = x + (size_t)r * T + 16 * j;
            _mm512_mask_storeu_ps(p, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p), inv[r]));
        }
    }
}

AVX512 void mvmoe_softmax_rows_avx512(float *A, int rows, int T) {
    int r = 0;
    for (; r + 4 <= rows; r += 4) softmax_stream(A + (size_t)r * T, T, 4);
    for (; r < rows; r++) softmax_stream(A + (size_t)r * T, T, 1);
}
#endif
