/* AVX-512 attention kernels, chosen at run time (isa.c): softmax rows, and a fused block for
 * small heads (hd = 16, T <= 64: 12x64 and the other narrow presets).
 *
 * Softmax was the largest non-GEMM cost of 12x64 inference (T = 50: ~16 % of a batch-256
 * pass on the AVX2 path). It gives the bits of the AVX2 path in attention.c (simd.h: mvmoe_simd_max,
 * mvmoe_simd_exp_shift_sum, mvmoe_simd_scale), which tests/kernels/test_attention.c checks:
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

/* r[c] = column c of the 16 x 16 block whose rows were r[0..15]: 64 in-lane and cross-lane
 * shuffles, where the scalar transpose took ~2300 cycles for the 16 x 64 key tile. */
AVX512 static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) { /* per 128-bit lane L: a(4L), b(4L), a(4L+1), b(4L+1) / +2, +3 */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* r[4i+m], lane L: element 4L+m of rows 4i..4i+3 */
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) { /* pairs of row groups: lanes 0/2 and 1/3 */
        t[m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
        t[4 + m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);
        t[8 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
        t[12 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
    }
    for (int m = 0; m < 4; m++) { /* columns m, m+4, m+8, m+12 */
        r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xDD);
        r[4 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0xDD);
    }
}

/* Why fused: with hd = 16 and T = 50, an (image, head) pair is 160 kFLOP, and the three-step
 * path (tile-kernel scores, softmax, sgemm A·V) spent ~4.2 µs on it on one core: about
 * 38 GFLOP/s, the slowest part of 12x64. Here the scores of 4 rows stay in 16 registers
 * through the softmax, and A·V runs 8 rows (8 independent chains) at once. */
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

/* R rows of A (stride T) in three streamed passes (max; exp, sum; scale), the R rows
 * interleaved in each pass: a single row's passes are chains of dependent max and add
 * (4-cycle latency each per 16 floats), R rows give the core R independent chains. Measured
 * on one core, 98 rows: T = 197 9.2 -> 6.3 us, T = 65 4.3 -> 2.7 us against one row at a time
 * (and against rows held in registers, which T > 64 leaves too few of). */
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
