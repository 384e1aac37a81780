/* x86-64 kernels of the runtime (rt_kernels.h): AVX-512 (+ VNNI) and AVX2 + FMA, compiled
 * by function target attributes and chosen by __builtin_cpu_supports, so the file builds with
 * portable flags and the binary runs on any x86-64 CPU.
 *
 * linear_f32: register tiles of MR rows of a × NR weight rows, each output one dot product
 * accumulated in vector lanes over k (masked loads for the tail of k), summed across lanes
 * at the end: a different order from the reference's, so equal within rounding.
 * dot_i8: exact int32 sums, so every implementation returns the reference's values.
 *   - VNNI: VPDPBUSD multiplies unsigned by signed bytes; the activations get +128 (their top
 *     bit flipped) and 128·Σ_k w[n,k] is taken off, those sums made per call for a block of
 *     4 weight rows (VPDPBUSD of ones) and used for every row of a: exact integer arithmetic.
 *   - AVX2: VPMADDUBSW on |w| and a·sign(w): each pair of products is at most 2·127·127 =
 *     32,258, so the 16-bit sums never saturate (weights and activations are in -127…127);
 *     VPMADDWD by ones widens them to int32. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "runtime/rt_kernels.h"
#include "runtime/rt_ops_body.h"

#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")))
#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- AVX2 + FMA */

T_AVX2 INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* mr x nr outputs at (m0, n0): constants where inlined. */
T_AVX2 INLINE void tile_avx2(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int K,
                             int m0, int n0, int mr, int nr) {
    __m256 acc[2][4];
    _Pragma("GCC unroll 8") for (int i = 0; i < 2; i++)
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 av[2];
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) av[i] = _mm256_loadu_ps(a + (long)(m0 + i) * lda + k);
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
            const __m256 wv = _mm256_loadu_ps(w + (long)(n0 + j) * K + k);
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    if (k < K) {
        static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(ramp + 8 - (K - k)));
        __m256 av[2];
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) av[i] = _mm256_maskload_ps(a + (long)(m0 + i) * lda + k, mask);
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
            const __m256 wv = _mm256_maskload_ps(w + (long)(n0 + j) * K + k, mask);
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
            const float s = hsum256(acc[i][j]);
            out[(long)(m0 + i) * ldo + n0 + j] = b ? s + b[n0 + j] : s;
        }
}

/* Panels of many rows, as the AVX-512 ones below (which say why): 16 rows (2 vectors of 8) ×
 * 6 weight rows, 12 accumulators of AVX2's 16 registers. */
enum { PM2 = 16, PK2 = 256, PN2 = 6 };

T_AVX2 static void ptile_avx2(float *out, int ldo, const float *at, const float *w, int K, int kc, int m0, int n0,
                              int accumulate, const float *b) {
    __m256 acc[PN2][2];
    _Pragma("GCC unroll 8") for (int j = 0; j < PN2; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    const float *wr[PN2];
    _Pragma("GCC unroll 8") for (int j = 0; j < PN2; j++) wr[j] = w + (long)(n0 + j) * K;
    for (int k = 0; k < kc; k++) {
        const __m256 a0 = _mm256_load_ps(at + (long)k * PM2), a1 = _mm256_load_ps(at + (long)k * PM2 + 8);
        _Pragma("GCC unroll 8") for (int j = 0; j < PN2; j++) {
            const __m256 wb = _mm256_broadcast_ss(wr[j] + k);
            acc[j][0] = _mm256_fmadd_ps(a0, wb, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(a1, wb, acc[j][1]);
        }
    }
    _Alignas(32) float t[PN2][PM2];
    _Pragma("GCC unroll 8") for (int j = 0; j < PN2; j++) {
        _mm256_store_ps(t[j], acc[j][0]);
        _mm256_store_ps(t[j] + 8, acc[j][1]);
    }
    for (int i = 0; i < PM2; i++) {
        float *o = out + (long)(m0 + i) * ldo + n0;
        for (int j = 0; j < PN2; j++) {
            float s = t[j][i];
            if (accumulate) s = o[j] + s;
            if (b) s = s + b[n0 + j];
            o[j] = s;
        }
    }
}

/* Rows [0, M16) (a multiple of 16), columns [0, N6) (a multiple of PN2). */
T_AVX2 static void panels_avx2(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M16,
                               int K, int N6) {
    _Alignas(32) float at[PK2 * PM2];
    for (int m0 = 0; m0 < M16; m0 += PM2)
        for (int k0 = 0; k0 < K; k0 += PK2) {
            const int kc = K - k0 < PK2 ? K - k0 : PK2;
            for (int i = 0; i < PM2; i++) {
                const float *x = a + (long)(m0 + i) * lda + k0;
                for (int k = 0; k < kc; k++) at[k * PM2 + i] = x[k];
            }
            for (int n0 = 0; n0 < N6; n0 += PN2)
                ptile_avx2(out, ldo, at, w + k0, K, kc, m0, n0, k0 > 0, k0 + kc == K ? b : NULL);
        }
}

T_AVX2 static void dots_avx2(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                             int K, int N);

T_AVX2 static void linear_f32_avx2(float *out, int ldo, const float *a, int lda, const float *w, const float *b,
                                   int M, int K, int N) {
    const int M16 = M / 16 * 16, N6 = N / PN2 * PN2;
    if (M16 == 0 || N6 == 0) {
        dots_avx2(out, ldo, a, lda, w, b, M, K, N);
        return;
    }
    panels_avx2(out, ldo, a, lda, w, b, M16, K, N6);
    if (N6 < N) dots_avx2(out + N6, ldo, a, lda, w + (long)N6 * K, b ? b + N6 : NULL, M16, K, N - N6);
    if (M16 < M) dots_avx2(out + (long)M16 * ldo, ldo, a + (long)M16 * lda, lda, w, b, M - M16, K, N);
}

/* Few rows: dot-product tiles of up to 2 rows × 4 weight rows, summed across lanes. */
T_AVX2 static void dots_avx2(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                             int K, int N) {
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? N - n0 : 4;
        int m0 = 0;
        if (nr == 4) {
            for (; m0 + 2 <= M; m0 += 2) tile_avx2(out, ldo, a, lda, w, b, K, m0, n0, 2, 4);
            for (; m0 < M; m0++) tile_avx2(out, ldo, a, lda, w, b, K, m0, n0, 1, 4);
        } else {
            for (; m0 < M; m0++) tile_avx2(out, ldo, a, lda, w, b, K, m0, n0, 1, nr);
        }
    }
}

T_AVX2 INLINE int32_t hsum256i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

T_AVX2 INLINE __m256i load32_i8(const int8_t *p, int n) {
    if (n >= 32) return _mm256_loadu_si256((const __m256i *)p);
    int8_t buf[32] = {0};
    memcpy(buf, p, (size_t)n);
    return _mm256_loadu_si256((const __m256i *)buf);
}

T_AVX2 static void dot_i8_avx2(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? N - n0 : 4;
        for (int m = 0; m < M; m++) {
            __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256()};
            const int8_t *x = qa + (long)m * K;
            for (int k = 0; k < K; k += 32) {
                const __m256i av = load32_i8(x + k, K - k);
                _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
                    const __m256i wv = load32_i8(qw + (long)(n0 + j) * K + k, K - k);
                    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(p, ones));
                }
            }
            _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) acc[(long)m * N + n0 + j] = hsum256i(s[j]);
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 */

T_512 INLINE void tile_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int K, int m0,
                           int n0, int mr, int nr) {
    __m512 acc[4][4];
    _Pragma("GCC unroll 8") for (int i = 0; i < 4; i++)
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        const __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 av[4];
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) av[i] = _mm512_maskz_loadu_ps(mk, a + (long)(m0 + i) * lda + k);
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
            const __m512 wv = _mm512_maskz_loadu_ps(mk, w + (long)(n0 + j) * K + k);
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) acc[i][j] = _mm512_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
            const float s = _mm512_reduce_add_ps(acc[i][j]);
            out[(long)(m0 + i) * ldo + n0 + j] = b ? s + b[n0 + j] : s;
        }
}

/* Panels of many rows: the activations transposed, PK columns of k at a time, into at[k][PM]
 * (on the stack: the weights stay where they are, read in place), then tiles of PMV vectors
 * of 16 rows × PN weight rows, each weight broadcast from its row: 24 accumulators, 10 loads
 * per 24 fused multiply-adds and no sum across lanes, where the dot-product tiles below spend
 * as much on their sums across lanes as on the products when K is a few hundred. Each output
 * is one running sum in k order within a chunk of PK, the chunks added in order. */
enum { PM = 64, PK = 256, PN = 6 };

T_512 INLINE void ptile_512(float *out, int ldo, const float *at, const float *w, int K, int kc, int m0, int nv,
                            int n0, int accumulate, const float *b) {
    __m512 acc[PN][PM / 16];
    _Pragma("GCC unroll 8") for (int j = 0; j < PN; j++)
        _Pragma("GCC unroll 8") for (int v = 0; v < PM / 16; v++) acc[j][v] = _mm512_setzero_ps();
    const float *wr[PN];
    _Pragma("GCC unroll 8") for (int j = 0; j < PN; j++) wr[j] = w + (long)(n0 + j) * K;
    for (int k = 0; k < kc; k++) {
        __m512 av[PM / 16];
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) av[v] = _mm512_load_ps(at + (long)k * PM + 16 * v);
        _Pragma("GCC unroll 8") for (int j = 0; j < PN; j++) {
            const __m512 wb = _mm512_set1_ps(wr[j][k]);
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[j][v] = _mm512_fmadd_ps(av[v], wb, acc[j][v]);
        }
    }
    _Alignas(64) float t[PN][PM];
    _Pragma("GCC unroll 8") for (int j = 0; j < PN; j++)
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) _mm512_store_ps(t[j] + 16 * v, acc[j][v]);
    for (int i = 0; i < 16 * nv; i++) {
        float *o = out + (long)(m0 + i) * ldo + n0;
        _Pragma("GCC unroll 8") for (int j = 0; j < PN; j++) {
            float s = t[j][i];
            if (accumulate) s = o[j] + s;
            if (b) s = s + b[n0 + j];
            o[j] = s;
        }
    }
}

/* Rows [0, M16) (a multiple of 16), columns [0, N6) (a multiple of PN). */
T_512 static void panels_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M16,
                             int K, int N6) {
    _Alignas(64) float at[PK * PM];
    for (int m0 = 0; m0 < M16; m0 += PM) {
        const int rows = M16 - m0 < PM ? M16 - m0 : PM, nv = rows / 16;
        for (int k0 = 0; k0 < K; k0 += PK) {
            const int kc = K - k0 < PK ? K - k0 : PK, lastk = k0 + kc == K;
            for (int i = 0; i < rows; i++) {
                const float *x = a + (long)(m0 + i) * lda + k0;
                for (int k = 0; k < kc; k++) at[k * PM + i] = x[k];
            }
            /* the weights' chunk [k0, k0+kc) of each row, read in place */
            const float *wk = w + k0;
            for (int n0 = 0; n0 < N6; n0 += PN) {
                const float *bb = lastk ? b : NULL;
                switch (nv) {
                case 4: ptile_512(out, ldo, at, wk, K, kc, m0, 4, n0, k0 > 0, bb); break;
                case 3: ptile_512(out, ldo, at, wk, K, kc, m0, 3, n0, k0 > 0, bb); break;
                case 2: ptile_512(out, ldo, at, wk, K, kc, m0, 2, n0, k0 > 0, bb); break;
                default: ptile_512(out, ldo, at, wk, K, kc, m0, 1, n0, k0 > 0, bb); break;
                }
            }
        }
    }
}

T_512 static void dots_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                           int K, int N);

T_512 static void linear_f32_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                                 int K, int N) {
    const int M16 = M / 16 * 16, N6 = N / PN * PN;
    if (M16 == 0 || N6 == 0) {
        dots_512(out, ldo, a, lda, w, b, M, K, N);
        return;
    }
    panels_512(out, ldo, a, lda, w, b, M16, K, N6);
    /* the rest: the columns past N6 of the panels' rows, then the rows past M16 */
    if (N6 < N) dots_512(out + N6, ldo, a, lda, w + (long)N6 * K, b ? b + N6 : NULL, M16, K, N - N6);
    if (M16 < M) dots_512(out + (long)M16 * ldo, ldo, a + (long)M16 * lda, lda, w, b, M - M16, K, N);
}

/* Few rows: dot-product tiles of up to 4 rows × 4 weight rows, summed across lanes. */
T_512 static void dots_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                           int K, int N) {
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? N - n0 : 4;
        int m0 = 0;
        if (nr == 4) {
            for (; m0 + 4 <= M; m0 += 4) tile_512(out, ldo, a, lda, w, b, K, m0, n0, 4, 4);
            switch (M - m0) {
            case 3: tile_512(out, ldo, a, lda, w, b, K, m0, n0, 3, 4); break;
            case 2: tile_512(out, ldo, a, lda, w, b, K, m0, n0, 2, 4); break;
            case 1: tile_512(out, ldo, a, lda, w, b, K, m0, n0, 1, 4); break;
            default: break;
            }
        } else {
            for (; m0 < M; m0++) tile_512(out, ldo, a, lda, w, b, K, m0, n0, 1, nr);
        }
    }
}

/* int8 panels (VNNI), as the fp32 panels: the activations +128 (unsigned), QK bytes of k at a
 * time, in groups of 4 bytes per row, qat[k/4][PM][4]; each weight row's 4 bytes at k
 * broadcast; VPDPBUSD adds their 4 products to a row's lane; 128·Σ_k w[n,k] taken off once.
 * Exact integers, so the same sums as every other implementation. K a multiple of 4 (the
 * weights' groups of 4 bytes stay inside their row). */
enum { QK = 1024, QN = 4 }; /* QN = 4: the sums go out 4 columns × 4 rows per 128-bit lane */

T_VNNI INLINE int32_t row_sum_vnni(const int8_t *wr, int K) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i s = _mm512_setzero_si512();
    for (int k = 0; k < K; k += 64) {
        const __mmask64 mk = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
        s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(mk, wr + k));
    }
    return _mm512_reduce_add_epi32(s);
}

T_VNNI INLINE void qtile_vnni(int32_t *acc, int N, const uint8_t *qat, const int8_t *w, int K, int kc, int m0, int nv,
                              int n0, int k0) {
    __m512i s[QN][PM / 16];
    _Pragma("GCC unroll 8") for (int j = 0; j < QN; j++)
        _Pragma("GCC unroll 8") for (int v = 0; v < PM / 16; v++) s[j][v] = _mm512_setzero_si512();
    const int8_t *wr[QN];
    _Pragma("GCC unroll 8") for (int j = 0; j < QN; j++) wr[j] = w + (long)(n0 + j) * K + k0;
    for (int k = 0; k < kc; k += 4) {
        __m512i av[PM / 16];
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)
            av[v] = _mm512_load_si512((const void *)(qat + (long)k * PM + 64 * v));
        _Pragma("GCC unroll 8") for (int j = 0; j < QN; j++) {
            int32_t w4;
            memcpy(&w4, wr[j] + k, 4);
            const __m512i wb = _mm512_set1_epi32(w4);
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) s[j][v] = _mm512_dpbusd_epi32(s[j][v], av[v], wb);
        }
    }
    if (k0 == 0) { /* the first chunk: 128·Σ_k w[n,k] off, then 4 rows × 4 columns per 128 bits */
        _Pragma("GCC unroll 8") for (int j = 0; j < QN; j++) {
            const __m512i c = _mm512_set1_epi32(128 * row_sum_vnni(w + (long)(n0 + j) * K, K));
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) s[j][v] = _mm512_sub_epi32(s[j][v], c);
        }
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) {
            const __m512i t0 = _mm512_unpacklo_epi32(s[0][v], s[1][v]), t1 = _mm512_unpackhi_epi32(s[0][v], s[1][v]);
            const __m512i t2 = _mm512_unpacklo_epi32(s[2][v], s[3][v]), t3 = _mm512_unpackhi_epi32(s[2][v], s[3][v]);
            const __m512i r[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                                  _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
            int32_t *o = acc + (long)(m0 + 16 * v) * N + n0;
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) { /* row 4·lane + q */
                _mm_storeu_si128((__m128i *)(o + (long)q * N), _mm512_castsi512_si128(r[q]));
                _mm_storeu_si128((__m128i *)(o + (long)(4 + q) * N), _mm512_extracti32x4_epi32(r[q], 1));
                _mm_storeu_si128((__m128i *)(o + (long)(8 + q) * N), _mm512_extracti32x4_epi32(r[q], 2));
                _mm_storeu_si128((__m128i *)(o + (long)(12 + q) * N), _mm512_extracti32x4_epi32(r[q], 3));
            }
        }
        return;
    }
    _Alignas(64) int32_t t[QN][PM]; /* later chunks (K > QK): added to the sums so far */
    _Pragma("GCC unroll 8") for (int j = 0; j < QN; j++)
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) _mm512_store_si512((void *)(t[j] + 16 * v), s[j][v]);
    for (int i = 0; i < 16 * nv; i++) {
        int32_t *o = acc + (long)(m0 + i) * N + n0;
        for (int j = 0; j < QN; j++) o[j] += t[j][i];
    }
}

/* Rows [0, M16), columns [0, N6); acc has N columns. */
T_VNNI static void qpanels_vnni(int32_t *acc, const int8_t *qa, const int8_t *qw, int M16, int K, int N6, int N) {
    _Alignas(64) uint8_t qat[QK * PM];
    for (int m0 = 0; m0 < M16; m0 += PM) {
        const int rows = M16 - m0 < PM ? M16 - m0 : PM, nv = rows / 16;
        for (int k0 = 0; k0 < K; k0 += QK) {
            const int kc = K - k0 < QK ? K - k0 : QK;
            for (int i = 0; i < rows; i++) {
                const int8_t *x = qa + (long)(m0 + i) * K + k0;
                for (int k = 0; k < kc; k += 4) {
                    uint32_t x4;
                    memcpy(&x4, x + k, 4);
                    x4 ^= 0x80808080u; /* +128 in each byte */
                    memcpy(qat + (long)k * PM + 4 * i, &x4, 4);
                }
            }
            for (int n0 = 0; n0 < N6; n0 += QN) switch (nv) {
                case 4: qtile_vnni(acc, N, qat, qw, K, kc, m0, 4, n0, k0); break;
                case 3: qtile_vnni(acc, N, qat, qw, K, kc, m0, 3, n0, k0); break;
                case 2: qtile_vnni(acc, N, qat, qw, K, kc, m0, 2, n0, k0); break;
                default: qtile_vnni(acc, N, qat, qw, K, kc, m0, 1, n0, k0); break;
                }
        }
    }
}

T_VNNI static void dots_i8_vnni(int32_t *acc, int lda, const int8_t *qa, const int8_t *qw, int M, int K, int N);

T_VNNI static void dot_i8_vnni(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    const int M16 = M / 16 * 16, N6 = N / QN * QN;
    if (M16 == 0 || N6 == 0 || K % 4 != 0) {
        dots_i8_vnni(acc, N, qa, qw, M, K, N);
        return;
    }
    qpanels_vnni(acc, qa, qw, M16, K, N6, N);
    if (N6 < N) dots_i8_vnni(acc + N6, N, qa, qw + (long)N6 * K, M16, K, N - N6);
    if (M16 < M) dots_i8_vnni(acc + (long)M16 * N, N, qa + (long)M16 * K, qw, M - M16, K, N);
}

/* Few rows: dot products of up to 4 weight rows per row, summed across lanes; acc has lda
 * columns. */
T_VNNI static void dots_i8_vnni(int32_t *acc, int lda, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    const __m512i ones = _mm512_set1_epi8(1), flip = _mm512_set1_epi8((char)0x80);
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? N - n0 : 4;
        int32_t wsum[4] = {0, 0, 0, 0};
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++) {
            __m512i s = _mm512_setzero_si512();
            const int8_t *wr = qw + (long)(n0 + j) * K;
            for (int k = 0; k < K; k += 64) {
                const __mmask64 mk = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
                s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(mk, wr + k));
            }
            wsum[j] = _mm512_reduce_add_epi32(s);
        }
        for (int m = 0; m < M; m++) {
            __m512i s[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                            _mm512_setzero_si512()};
            const int8_t *x = qa + (long)m * K;
            for (int k = 0; k < K; k += 64) {
                const __mmask64 mk = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
                /* padded bytes: activation 0 (+128), weight 0: no contribution */
                const __m512i av = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mk, x + k), flip);
                _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++)
                    s[j] = _mm512_dpbusd_epi32(s[j], av, _mm512_maskz_loadu_epi8(mk, qw + (long)(n0 + j) * K + k));
            }
            _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++)
                acc[(long)m * lda + n0 + j] = _mm512_reduce_add_epi32(s[j]) - 128 * wsum[j];
        }
    }
}

/* ---------------------------------------------------------------- the tables */

/* the other operations: rt_ops_body.h's loops, vectorized for each set (512-bit vectors for
 * AVX-512, which GCC's generic tuning would otherwise keep at 256) */
RT_OPS_DEFINE(T_AVX2, avx2)
RT_OPS_DEFINE(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,prefer-vector-width=512"))), avx512)

static const mvmoe_rt_kernels AVX2 = {"avx2", linear_f32_avx2, dot_i8_avx2, RT_OPS_ENTRIES(avx2)};
static const mvmoe_rt_kernels AVX512 = {"avx512", linear_f32_512, dot_i8_avx2, RT_OPS_ENTRIES(avx512)};
static const mvmoe_rt_kernels AVX512_VNNI = {"avx512-vnni", linear_f32_512, dot_i8_vnni, RT_OPS_ENTRIES(avx512)};

const mvmoe_rt_kernels *mvmoe_rt_kernels_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &AVX2 : NULL;
}

const mvmoe_rt_kernels *mvmoe_rt_kernels_avx512(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2") &&
          __builtin_cpu_supports("fma")))
        return NULL;
    return __builtin_cpu_supports("avx512vnni") ? &AVX512_VNNI : &AVX512;
}
#else
/* Not x86-64: this file is empty (ISO C wants a declaration in every translation unit). */
typedef int mvmoe_rt_kernels_x86_unused;
#endif
