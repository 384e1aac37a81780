/* x86-64 kernels of the runtime (rt_kernels.h): AVX-512 (+ VNNI) and AVX2 + FMA, compiled
 * by function target attributes and chosen by __builtin_cpu_supports, so the file builds with
 * portable flags and the binary runs on any x86-64 CPU.
 *
 * Two designs per operation: for M >= 4 tokens the blocked matrix-matrix kernels ("activation
 * panels" below, the model's products); for M < 4 (the class token) the dot-product kernels:
 * register tiles of MR rows of a × NR weight rows, each output one dot product accumulated in
 * vector lanes over k (masked loads for the tail of k), summed across lanes at the end.
 * linear_f32 sums in a different order from the reference's, so equal within rounding.
 * dot_i8: exact int32 sums, so every implementation returns the reference's values.
 *   - VNNI: VPDPBUSD multiplies unsigned by signed bytes; the activations get +128 (their top
 *     bit flipped) and 128·Σ_k w[n,k] is taken off, those sums made at open (rt_model.c) or,
 *     when not given (expert paging, dot_i8), once per call, and used for every row of a: exact
 *     integer arithmetic (the blocked kernel in wrapping int32, whose result is the exact sum).
 *     linear_i8's blocked kernel dequantizes (and adds the residual) in the tile's store.
 *   - AVX2: VPMADDUBSW on |w| and a·sign(w): each pair of products is at most 2·127·127 =
 *     32,258, so the 16-bit sums never saturate (weights and activations are in -127…127);
 *     VPMADDWD by ones widens them to int32. */
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "runtime/rt_kernels.h"
#include "runtime/rt_ops_body.h"

#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")))
#define INLINE static inline __attribute__((always_inline))
/* the blocked kernels' 40-44 KiB stack frames stay out of the M < 4 path (stack probes per call) */
#define NOINLINE static __attribute__((noinline))
/* 4 bytes of int8 weights read as one int32 (a broadcast operand), at any byte address */
typedef int32_t __attribute__((may_alias, aligned(1))) i32_alias;

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
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) acc[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 av[2];
        for (int i = 0; i < mr; i++) av[i] = _mm256_loadu_ps(a + (long)(m0 + i) * lda + k);
        for (int j = 0; j < nr; j++) {
            const __m256 wv = _mm256_loadu_ps(w + (long)(n0 + j) * K + k);
            for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    if (k < K) {
        static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(ramp + 8 - (K - k)));
        __m256 av[2];
        for (int i = 0; i < mr; i++) av[i] = _mm256_maskload_ps(a + (long)(m0 + i) * lda + k, mask);
        for (int j = 0; j < nr; j++) {
            const __m256 wv = _mm256_maskload_ps(w + (long)(n0 + j) * K + k, mask);
            for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const float s = hsum256(acc[i][j]);
            out[(long)(m0 + i) * ldo + n0 + j] = b ? s + b[n0 + j] : s;
        }
}

T_AVX2 static void linear_f32_avx2d(float *out, int ldo, const float *a, int lda, const float *w, const float *b,
                                   int M, int K, int N) {
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

T_AVX2 static void dot_i8_avx2d(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? N - n0 : 4;
        for (int m = 0; m < M; m++) {
            __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256()};
            const int8_t *x = qa + (long)m * K;
            for (int k = 0; k < K; k += 32) {
                const __m256i av = load32_i8(x + k, K - k);
                for (int j = 0; j < nr; j++) {
                    const __m256i wv = load32_i8(qw + (long)(n0 + j) * K + k, K - k);
                    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(p, ones));
                }
            }
            for (int j = 0; j < nr; j++) acc[(long)m * N + n0 + j] = hsum256i(s[j]);
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 */

T_512 INLINE void tile_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int K, int m0,
                           int n0, int mr, int nr) {
    __m512 acc[4][4];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) acc[i][j] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        const __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 av[4];
        for (int i = 0; i < mr; i++) av[i] = _mm512_maskz_loadu_ps(mk, a + (long)(m0 + i) * lda + k);
        for (int j = 0; j < nr; j++) {
            const __m512 wv = _mm512_maskz_loadu_ps(mk, w + (long)(n0 + j) * K + k);
            for (int i = 0; i < mr; i++) acc[i][j] = _mm512_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const float s = _mm512_reduce_add_ps(acc[i][j]);
            out[(long)(m0 + i) * ldo + n0 + j] = b ? s + b[n0 + j] : s;
        }
}

T_512 static void linear_f32_512d(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
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

T_VNNI static void dot_i8_vnnid(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    const __m512i ones = _mm512_set1_epi8(1), flip = _mm512_set1_epi8((char)0x80);
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? N - n0 : 4;
        int32_t wsum[4] = {0, 0, 0, 0};
        for (int j = 0; j < nr; j++) {
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
                for (int j = 0; j < nr; j++)
                    s[j] = _mm512_dpbusd_epi32(s[j], av, _mm512_maskz_loadu_epi8(mk, qw + (long)(n0 + j) * K + k));
            }
            for (int j = 0; j < nr; j++) acc[(long)m * N + n0 + j] = _mm512_reduce_add_epi32(s[j]) - 128 * wsum[j];
        }
    }
}

/* ---------------------------------------------------------------- activation panels
 * The matrix-matrix kernels (M >= PANEL_MIN_M) turn the problem around: the activations (small,
 * M x K) are packed into K-major panels of one vector of tokens, and the weights, read in place
 * as [N, K], are broadcast one value (fp32) or one group of 4 bytes (int8) at a time over
 * NR weight rows. Each accumulator is then NR outputs' partial sums for a vector of tokens
 * (no horizontal reduction), kept in named registers, and the tile is transposed in registers
 * before its store (out is [M, ldo]). AVX-512 tiles are 8 weight rows x 2 panels (32 tokens:
 * each broadcast weight feeds two products, fewer loads per product), and 16 rows x 1 panel
 * for an odd last panel and for N not a multiple of 16. The panels live on the stack, bounded
 * by blocking M (PANEL_MB tokens) and K (32 KiB at most), so nothing is allocated per call;
 * blocks of K after the first add to the partial sums already stored. A block of weights is
 * copied (8 KiB at most, on the stack) only when N is not a multiple of the tile's rows or K
 * not of 4 (int8), so the micro-kernels read whole weight rows and groups and never past the
 * matrix: 40 KiB of stack per call in all (44 KiB for VNNI int8, with the shifted weight sums
 * of up to 1024 columns). */
#define PANEL_MIN_M 4 /* below: the dot-product kernels above (M = 1: the class token) */
#define PANEL_MB 64   /* tokens per block */
#define KC_F32 128    /* k per block, fp32: 64 x 128 x 4 bytes = 32 KiB of panels */
#define KC_I8 512     /* k per block, int8: 64 x 512 bytes = 32 KiB */

/* ---------------------------------------------------------------- AVX-512 panels */

/* r[j] lane i -> r[i] lane j (16 x 32-bit). */
#define TR16_STEP1(r, t, i)                                                                                            \
    t[2 * (i)] = _mm512_unpacklo_ps(r[2 * (i)], r[2 * (i) + 1]);                                                     \
    t[2 * (i) + 1] = _mm512_unpackhi_ps(r[2 * (i)], r[2 * (i) + 1])
T_512 INLINE void tr16(__m512 r[16]) {
    __m512 t[16];
    TR16_STEP1(r, t, 0);
    TR16_STEP1(r, t, 1);
    TR16_STEP1(r, t, 2);
    TR16_STEP1(r, t, 3);
    TR16_STEP1(r, t, 4);
    TR16_STEP1(r, t, 5);
    TR16_STEP1(r, t, 6);
    TR16_STEP1(r, t, 7);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* per 128-bit lane L: r[4i + x] = column x + 4L of rows 4i..4i+3 */
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2])));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2])));
        r[4 * i + 2] =
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3])));
        r[4 * i + 3] =
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3])));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
        r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
    }
}

/* Panels of 16 tokens: p[(q*kc + k)*16 + t] = a[m0 + 16q + t, k0 + k], zero past M. */
T_512 static void pack_f32_512(float *p, const float *a, int lda, int rows, int k0, int kc) {
    for (int q = 0; q * 16 < rows; q++) {
        const int nt = rows - 16 * q < 16 ? rows - 16 * q : 16;
        for (int kk = 0; kk < kc; kk += 16) {
            const int nk = kc - kk < 16 ? kc - kk : 16;
            const __mmask16 mk = (__mmask16)((1u << nk) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                r[t] = t < nt ? _mm512_maskz_loadu_ps(mk, a + (long)(16 * q + t) * lda + k0 + kk) : _mm512_setzero_ps();
            tr16(r);
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                if (c < nk) _mm512_store_ps(p + ((long)q * kc + kk + c) * 16, r[c]);
        }
    }
}

/* Copies weight rows n < nr (of 16) and k < kc into a zero-padded [16, ldc] block. */
static void copy_block(void *dst, int ldc, const void *w, long ld, int nr, int kc, size_t elem) {
    memset(dst, 0, (size_t)16 * ldc * elem);
    for (int j = 0; j < nr; j++) memcpy((char *)dst + (size_t)j * ldc * elem, (const char *)w + j * ld * elem, kc * elem);
}

#define FMA4(q, j)                                                                                                     \
    c[j] = _mm512_fmadd_ps(av, _mm512_set1_ps(q[0]), c[j]);                                                           \
    c[j + 1] = _mm512_fmadd_ps(av, _mm512_set1_ps(q[ld]), c[j + 1]);                                                   \
    c[j + 2] = _mm512_fmadd_ps(av, _mm512_set1_ps(q[2 * ld]), c[j + 2]);                                               \
    c[j + 3] = _mm512_fmadd_ps(av, _mm512_set1_ps(q[ld3]), c[j + 3])
/* The 16 x 16 tile out[t, j] (+)= Σ_k p[k*16 + t]·w[j*ld + k], t < rows, j < nr. */
T_512 static void tile_f32_512(float *out, int ldo, const float *p, const float *w, long ld, int kc, const float *b,
                               int rows, int nr, int first) {
    __m512 c[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) c[j] = _mm512_setzero_ps();
    /* four row pointers and the strides ld, 3·ld: base + index·scale addressing, so the
     * pointers stay in general registers */
    const float *w0 = w, *w4 = w + 4 * ld, *w8 = w + 8 * ld, *w12 = w + 12 * ld;
    const long ld3 = 3 * ld;
    for (int k = 0; k < kc; k++, p += 16, w0++, w4++, w8++, w12++) {
        const __m512 av = _mm512_load_ps(p);
        FMA4(w0, 0), FMA4(w4, 4), FMA4(w8, 8), FMA4(w12, 12);
    }
    tr16(c);
    const __mmask16 mn = (__mmask16)((1u << nr) - 1);
    const __m512 bias = b && first ? _mm512_maskz_loadu_ps(mn, b) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        if (t < rows) {
            float *o = out + (long)t * ldo;
            const __m512 prev = first ? bias : _mm512_maskz_loadu_ps(mn, o);
            _mm512_mask_storeu_ps(o, mn, _mm512_add_ps(c[t], prev));
        }
}

#define FMA2(q, j)                                                                                                     \
    c[j] = _mm512_fmadd_ps(a0, bw = _mm512_set1_ps(q), c[j]);                                                         \
    d[j] = _mm512_fmadd_ps(a1, bw, d[j])
/* The 32 x 8 tile out[t, j] (+)= Σ_k (p[k*16 + t] | p[kc*16 + k*16 + t - 16])·w[j*ld + k]: two
 * panels of 16 tokens (the first full, rows2 tokens of the second valid), 8 weight rows. */
T_512 static void tile2_f32_512(float *out, int ldo, const float *p, const float *w, long ld, int kc, const float *b,
                                int rows2, int first) {
    __m512 c[8], d[8], bw;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) c[j] = d[j] = _mm512_setzero_ps();
    const float *w0 = w, *w4 = w + 4 * ld, *p1 = p + (long)kc * 16;
    const long ld3 = 3 * ld;
    for (int k = 0; k < kc; k++, p += 16, p1 += 16, w0++, w4++) {
        const __m512 a0 = _mm512_load_ps(p), a1 = _mm512_load_ps(p1);
        FMA2(w0[0], 0);
        FMA2(w0[ld], 1);
        FMA2(w0[2 * ld], 2);
        FMA2(w0[ld3], 3);
        FMA2(w4[0], 4);
        FMA2(w4[ld], 5);
        FMA2(w4[2 * ld], 6);
        FMA2(w4[ld3], 7);
    }
    __m512 r[16];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) r[j] = c[j], r[8 + j] = d[j];
    tr16(r); /* r[t]: lanes 0-7 token t, lanes 8-15 token 16 + t, weight rows 0-7 */
    const __m256 bias = b && first ? _mm256_loadu_ps(b) : _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        float *o = out + (long)t * ldo, *o2 = out + (long)(16 + t) * ldo;
        const __m256 lo = _mm512_castps512_ps256(r[t]), hi = _mm512_extractf32x8_ps(r[t], 1);
        _mm256_storeu_ps(o, _mm256_add_ps(lo, first ? bias : _mm256_loadu_ps(o)));
        if (t < rows2) _mm256_storeu_ps(o2, _mm256_add_ps(hi, first ? bias : _mm256_loadu_ps(o2)));
    }
}

T_512 NOINLINE void linear_f32_512p(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                                  int K, int N) {
    _Alignas(64) float pk[PANEL_MB * KC_F32];
    _Alignas(64) float wt[16 * KC_F32];
    for (int m0 = 0; m0 < M; m0 += PANEL_MB) {
        const int rows = M - m0 < PANEL_MB ? M - m0 : PANEL_MB;
        for (int k0 = 0; k0 < K; k0 += KC_F32) {
            const int kc = K - k0 < KC_F32 ? K - k0 : KC_F32;
            pack_f32_512(pk, a + (long)m0 * lda, lda, rows, k0, kc);
            for (int n0 = 0; n0 < N; n0 += 16) {
                const int nr = N - n0 < 16 ? N - n0 : 16;
                const float *wb = w + (long)n0 * K + k0;
                long ld = K;
                if (nr < 16) copy_block(wt, kc, wb, ld, nr, kc, sizeof(float)), wb = wt, ld = kc;
                int q = 0;
                if (nr == 16)
                    for (; q * 16 + 16 < rows; q += 2) {
                        const int rows2 = rows - 16 * q - 16 < 16 ? rows - 16 * q - 16 : 16;
                        float *o = out + (long)(m0 + 16 * q) * ldo + n0;
                        const float *pq = pk + (long)q * kc * 16;
                        tile2_f32_512(o, ldo, pq, wb, ld, kc, b ? b + n0 : NULL, rows2, k0 == 0);
                        tile2_f32_512(o + 8, ldo, pq, wb + 8 * ld, ld, kc, b ? b + n0 + 8 : NULL, rows2, k0 == 0);
                    }
                for (; q * 16 < rows; q++)
                    tile_f32_512(out + (long)(m0 + 16 * q) * ldo + n0, ldo, pk + (long)q * kc * 16, wb, ld, kc,
                                 b ? b + n0 : NULL, rows - 16 * q < 16 ? rows - 16 * q : 16, nr, k0 == 0);
            }
        }
    }
}

T_512 static void linear_f32_512(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                                 int K, int N) {
    if (M >= PANEL_MIN_M)
        linear_f32_512p(out, ldo, a, lda, w, b, M, K, N);
    else
        linear_f32_512d(out, ldo, a, lda, w, b, M, K, N);
}

/* Panels of 16 tokens x 4 bytes, +128 (u8 for VPDPBUSD): p[((q*G + g)*16 + t)*4 + i] =
 * a[m0 + 16q + t, k0 + 4g + i] + 128, G = ceil(kc / 4); padding (k past kc, tokens past M) 128. */
T_VNNI static void pack_u8_512(uint8_t *p, const int8_t *qa, int K, int rows, int k0, int kc) {
    const int G = (kc + 3) / 4;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int q = 0; q * 16 < rows; q++) {
        const int nt = rows - 16 * q < 16 ? rows - 16 * q : 16;
        for (int kk = 0; kk < kc; kk += 64) {
            const int nk = kc - kk < 64 ? kc - kk : 64;
            const __mmask64 mk = nk == 64 ? ~(__mmask64)0 : (((__mmask64)1 << nk) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                r[t] = t < nt ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi8(mk, qa + (long)(16 * q + t) * K + k0 + kk))
                              : _mm512_setzero_ps();
            tr16(r);
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                if (c < (nk + 3) / 4)
                    _mm512_store_si512((__m512i *)(p + (((long)q * G + kk / 4 + c) * 16) * 4),
                                       _mm512_xor_si512(_mm512_castps_si512(r[c]), flip));
        }
    }
}

/* Σ_k w[n0 + j, k] for j < nr (0 past nr): the +128 of the activations comes off as 128 times it. */
T_VNNI static __m512i wsum_512(const int8_t *w, int K, int nr) {
    const __m512i ones = _mm512_set1_epi8(1);
    _Alignas(64) int32_t s[16] = {0};
    for (int j = 0; j < nr; j++) {
        __m512i v = _mm512_setzero_si512();
        for (int k = 0; k < K; k += 64) {
            const __mmask64 mk = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
            v = _mm512_dpbusd_epi32(v, ones, _mm512_maskz_loadu_epi8(mk, w + (long)j * K + k));
        }
        s[j] = _mm512_reduce_add_epi32(v);
    }
    return _mm512_load_si512((const __m512i *)s);
}

/* Where a tile's sums go: int32 into acc [M, N] (dot_i8, and the blocks of k before the last),
 * or, with dq, dequantized into out as rt_body_dequant_add does it (linear_i8): y =
 * (float)sum·(sa[m]·sw[n]) (+ b[n]), out = y or out + y, each a separate IEEE operation (no
 * contraction: ISO C mode), so the bits of dot_i8 followed by that body. */
typedef struct {
    int32_t *acc;
    int N;
    float *out;
    int ldo, add;
    const float *sa, *sw, *b;
} i8_dst;

/* Row m, columns n.. (mask mn) of a finished sum v; swv, bv: the tile's columns of sw and b. */
T_VNNI INLINE void dq_store16(const i8_dst *d, int m, int n, __mmask16 mn, __m512i v, __m512 swv, __m512 bv) {
    float *o = d->out + (long)m * d->ldo + n;
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(_mm512_set1_ps(d->sa[m]), swv));
    if (d->b) y = _mm512_add_ps(y, bv);
    if (d->add) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mn, o), y);
    _mm512_mask_storeu_ps(o, mn, y);
}
T_VNNI INLINE void dq_store8(const i8_dst *d, int m, int n, __m256i v, __m256 swv, __m256 bv) {
    float *o = d->out + (long)m * d->ldo + n;
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(_mm256_set1_ps(d->sa[m]), swv));
    if (d->b) y = _mm256_add_ps(y, bv);
    if (d->add) y = _mm256_add_ps(_mm256_loadu_ps(o), y);
    _mm256_storeu_ps(o, y);
}

/* VPDPBUSD with the weights' 4 bytes broadcast from memory. Inline assembly because GCC 12
 * copies every accumulator of _mm512_dpbusd_epi32 through another register in this loop
 * (twice the instructions); the assembler's, not the compiler's, knowledge of VNNI is used. */
#define DPB(acc, q) __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(av), "m"(*(const i32_alias *)(q)))
#define DP4(q, j)                                                                                                      \
    DPB(c[j], q);                                                                                                      \
    DPB(c[j + 1], q + ld);                                                                                             \
    DPB(c[j + 2], q + 2 * ld);                                                                                         \
    DPB(c[j + 3], q + ld3)
/* The 16 x 16 tile at (m, n): sum[t, j] (+)= Σ_g p[g] · w[j, 4g..4g+3] (u8 x s8 in groups of 4),
 * t < rows, j < nr; the first block of k subtracts 128·wsum[j], the last one (with d->out)
 * dequantizes. All in wrapping int32 arithmetic: the result is the exact sum, which fits in
 * int32. */
T_VNNI static void tile_i8_vnni(const i8_dst *d, int m, int n, const uint8_t *p, const int8_t *w, long ld, int G,
                                __m512i wsum128, int rows, int nr, int first, int last) {
    __m512i c[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) c[j] = _mm512_setzero_si512();
    const int8_t *w0 = w, *w4 = w + 4 * ld, *w8 = w + 8 * ld, *w12 = w + 12 * ld;
    const long ld3 = 3 * ld;
    for (int g = 0; g < G; g++, p += 64, w0 += 4, w4 += 4, w8 += 4, w12 += 4) {
        const __m512i av = _mm512_load_si512((const __m512i *)p);
        DP4(w0, 0);
        DP4(w4, 4);
        DP4(w8, 8);
        DP4(w12, 12);
    }
    __m512 r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) r[j] = _mm512_castsi512_ps(c[j]);
    tr16(r);
    const __mmask16 mn = (__mmask16)((1u << nr) - 1);
    const int dq = last && d->out;
    const __m512 swv = dq ? _mm512_maskz_loadu_ps(mn, d->sw + n) : _mm512_setzero_ps();
    const __m512 bv = dq && d->b ? _mm512_maskz_loadu_ps(mn, d->b + n) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        if (t < rows) {
            int32_t *o = d->acc + (long)(m + t) * d->N + n;
            const __m512i v = _mm512_castps_si512(r[t]);
            const __m512i s = first ? _mm512_sub_epi32(v, wsum128) : _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mn, o));
            if (dq)
                dq_store16(d, m + t, n, mn, s, swv, bv);
            else
                _mm512_mask_storeu_epi32(o, mn, s);
        }
}

/* tile2_i8_vnni's store when its one block of k is the whole sum and it dequantizes: the
 * flags constants (inlined per case), row pointers stepped, no int32 round trip: the same
 * operations as dq_store8 (its epilogue was a third of the tile's time with the flags tested
 * per row). */
T_VNNI INLINE void tile2_dq_store(const i8_dst *d, int m, int n, const __m512 r[16], __m256i wsum128, int rows2,
                                  int has_b, int add) {
    const __m256 swv = _mm256_loadu_ps(d->sw + n), bv = has_b ? _mm256_loadu_ps(d->b + n) : _mm256_setzero_ps();
    const float *sa = d->sa + m;
    const long ldo = d->ldo;
    float *o = d->out + (long)m * ldo + n, *o2 = o + 16 * ldo;
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++, o += ldo, o2 += ldo) {
        const __m256i lo = _mm256_sub_epi32(_mm512_castsi512_si256(_mm512_castps_si512(r[t])), wsum128);
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(_mm256_set1_ps(sa[t]), swv));
        if (has_b) y = _mm256_add_ps(y, bv);
        if (add) y = _mm256_add_ps(_mm256_loadu_ps(o), y);
        _mm256_storeu_ps(o, y);
        if (t < rows2) {
            const __m256i hi = _mm256_sub_epi32(_mm512_extracti32x8_epi32(_mm512_castps_si512(r[t]), 1), wsum128);
            __m256 y2 = _mm256_mul_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(_mm256_set1_ps(sa[16 + t]), swv));
            if (has_b) y2 = _mm256_add_ps(y2, bv);
            if (add) y2 = _mm256_add_ps(_mm256_loadu_ps(o2), y2);
            _mm256_storeu_ps(o2, y2);
        }
    }
}

#define DPR(acc, x, y) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(y))
#define DP2(q, j)                                                                                                      \
    do {                                                                                                               \
        const __m512i bw = _mm512_set1_epi32(*(const i32_alias *)(q));                                                 \
        DPR(c[j], a0, bw);                                                                                             \
        DPR(d[j], a1, bw);                                                                                             \
    } while (0)
/* tile_i8_vnni for two panels (32 tokens, rows2 valid in the second) and 8 weight rows (the
 * broadcast weights used twice): see tile2_f32_512. */
T_VNNI static void tile2_i8_vnni(const i8_dst *dst, int m, int n, const uint8_t *p, const int8_t *w, long ld, int G,
                                 __m256i wsum128, int rows2, int first, int last) {
    __m512i c[8], d[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) c[j] = d[j] = _mm512_setzero_si512();
    const int8_t *w0 = w, *w4 = w + 4 * ld;
    const uint8_t *p1 = p + (long)G * 64;
    const long ld3 = 3 * ld;
    for (int g = 0; g < G; g++, p += 64, p1 += 64, w0 += 4, w4 += 4) {
        const __m512i a0 = _mm512_load_si512((const __m512i *)p), a1 = _mm512_load_si512((const __m512i *)p1);
        DP2(w0, 0);
        DP2(w0 + ld, 1);
        DP2(w0 + 2 * ld, 2);
        DP2(w0 + ld3, 3);
        DP2(w4, 4);
        DP2(w4 + ld, 5);
        DP2(w4 + 2 * ld, 6);
        DP2(w4 + ld3, 7);
    }
    __m512 r[16];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) r[j] = _mm512_castsi512_ps(c[j]), r[8 + j] = _mm512_castsi512_ps(d[j]);
    tr16(r); /* r[t]: lanes 0-7 token t, lanes 8-15 token 16 + t, weight rows 0-7 */
    if (first && last && dst->out) { /* one block of k, dequantized: the common case, specialized */
        if (dst->b && dst->add)
            tile2_dq_store(dst, m, n, r, wsum128, rows2, 1, 1);
        else if (dst->b)
            tile2_dq_store(dst, m, n, r, wsum128, rows2, 1, 0);
        else if (dst->add)
            tile2_dq_store(dst, m, n, r, wsum128, rows2, 0, 1);
        else
            tile2_dq_store(dst, m, n, r, wsum128, rows2, 0, 0);
        return;
    }
    const int dq = last && dst->out;
    const __m256 swv = dq ? _mm256_loadu_ps(dst->sw + n) : _mm256_setzero_ps();
    const __m256 bv = dq && dst->b ? _mm256_loadu_ps(dst->b + n) : _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        int *o = (int *)(dst->acc + (long)(m + t) * dst->N + n), *o2 = (int *)(dst->acc + (long)(m + 16 + t) * dst->N + n);
        const __m256i lo = _mm512_castsi512_si256(_mm512_castps_si512(r[t]));
        const __m256i hi = _mm512_extracti32x8_epi32(_mm512_castps_si512(r[t]), 1);
        const __m256i s = first ? _mm256_sub_epi32(lo, wsum128) : _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)o));
        if (dq)
            dq_store8(dst, m + t, n, s, swv, bv);
        else
            _mm256_storeu_si256((__m256i *)o, s);
        if (t < rows2) {
            const __m256i s2 =
                first ? _mm256_sub_epi32(hi, wsum128) : _mm256_add_epi32(hi, _mm256_loadu_si256((const __m256i *)o2));
            if (dq)
                dq_store8(dst, m + 16 + t, n, s2, swv, bv);
            else
                _mm256_storeu_si256((__m256i *)o2, s2);
        }
    }
}

/* columns per chunk whose weight sums (given, or made by wsum_512) are shifted once per call,
 * before the blocks of tokens that use them (4 KiB of stack) */
#define WS_NC 1024

/* The blocked int8 product: exact sums into d->acc, or dequantized into d->out (see i8_dst).
 * wsum: the weight rows' sums made at open, or NULL (made here). */
T_VNNI NOINLINE void gemm_i8_vnnip(const i8_dst *d, const int8_t *qa, const int8_t *qw, const int32_t *wsum, int M,
                                   int K, int N) {
    _Alignas(64) uint8_t pk[PANEL_MB * KC_I8];
    _Alignas(64) int8_t wt[16 * KC_I8];
    _Alignas(64) int32_t wsc[WS_NC];
    for (int nc0 = 0; nc0 < N; nc0 += WS_NC) {
        const int nc1 = N - nc0 < WS_NC ? N : nc0 + WS_NC;
        for (int n0 = nc0; n0 < nc1; n0 += 16) {
            const int nr = nc1 - n0 < 16 ? nc1 - n0 : 16;
            const __m512i s = wsum ? _mm512_maskz_loadu_epi32((__mmask16)((1u << nr) - 1), wsum + n0)
                                   : wsum_512(qw + (long)n0 * K, K, nr);
            _mm512_store_si512((__m512i *)(wsc + (n0 - nc0)), _mm512_slli_epi32(s, 7));
        }
        for (int m0 = 0; m0 < M; m0 += PANEL_MB) {
            const int rows = M - m0 < PANEL_MB ? M - m0 : PANEL_MB;
            for (int k0 = 0; k0 < K; k0 += KC_I8) {
                const int kc = K - k0 < KC_I8 ? K - k0 : KC_I8, G = (kc + 3) / 4;
                const int first = k0 == 0, last = k0 + kc == K;
                pack_u8_512(pk, qa + (long)m0 * K, K, rows, k0, kc);
                for (int n0 = nc0; n0 < nc1; n0 += 16) {
                    const int nr = nc1 - n0 < 16 ? nc1 - n0 : 16;
                    const int8_t *wb = qw + (long)n0 * K + k0;
                    /* the first block of tokens reads each weight row for the first time (from
                     * L3 or memory): the next 16 rows' k block is requested while these compute */
                    if (m0 == 0 && n0 + 16 < nc1)
                        for (int j = 0; j < 16 && n0 + 16 + j < nc1; j++)
                            for (int k = 0; k < kc; k += 64)
                                _mm_prefetch((const char *)(wb + (long)(16 + j) * K + k), _MM_HINT_T0);
                    long ld = K;
                    const __m512i ws = _mm512_load_si512((const __m512i *)(wsc + (n0 - nc0)));
                    if (nr < 16 || kc % 4) copy_block(wt, 4 * G, wb, ld, nr, kc, 1), wb = wt, ld = 4 * G;
                    int q = 0;
                    if (nr == 16)
                        for (; q * 16 + 16 < rows; q += 2) {
                            const int rows2 = rows - 16 * q - 16 < 16 ? rows - 16 * q - 16 : 16;
                            const uint8_t *pq = pk + (long)q * G * 64;
                            tile2_i8_vnni(d, m0 + 16 * q, n0, pq, wb, ld, G, _mm512_castsi512_si256(ws), rows2, first,
                                          last);
                            tile2_i8_vnni(d, m0 + 16 * q, n0 + 8, pq, wb + 8 * ld, ld, G,
                                          _mm512_extracti32x8_epi32(ws, 1), rows2, first, last);
                        }
                    for (; q * 16 < rows; q++)
                        tile_i8_vnni(d, m0 + 16 * q, n0, pk + (long)q * G * 64, wb, ld, G, ws,
                                     rows - 16 * q < 16 ? rows - 16 * q : 16, nr, first, last);
                }
            }
        }
    }
}

T_VNNI static void dot_i8_vnni(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    if (M >= PANEL_MIN_M) {
        const i8_dst d = {acc, N, NULL, 0, 0, NULL, NULL, NULL};
        gemm_i8_vnnip(&d, qa, qw, NULL, M, K, N);
    } else {
        dot_i8_vnnid(acc, qa, qw, M, K, N);
    }
}

T_VNNI static void linear_i8_vnni(float *out, int ldo, const int8_t *qa, const float *sa, const int8_t *qw,
                                  const float *sw, const int32_t *wsum, const float *b, int M, int K, int N, int add,
                                  int32_t *acc) {
    if (M >= PANEL_MIN_M) {
        const i8_dst d = {acc, N, out, ldo, add, sa, sw, b};
        gemm_i8_vnnip(&d, qa, qw, wsum, M, K, N);
    } else {
        dot_i8_vnnid(acc, qa, qw, M, K, N);
        rt_body_dequant_add(out, ldo, acc, sa, sw, b, M, N, add);
    }
}


/* ---------------------------------------------------------------- AVX2 panels (see above) */

/* r[j] lane i -> r[i] lane j (8 x 32-bit). */
T_AVX2 INLINE void tr8(__m256 r[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) { /* per 128-bit lane L: u[4i + x] = column x + 4L of rows 4i..4i+3 */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

static const int32_t ramp8[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
T_AVX2 INLINE __m256i mask8(int n) { return _mm256_loadu_si256((const __m256i *)(ramp8 + 8 - n)); }

/* Panels of 8 tokens: p[(q*kc + k)*8 + t] = a[8q + t, k0 + k], zero past rows. */
T_AVX2 static void pack_f32_avx2(float *p, const float *a, int lda, int rows, int k0, int kc) {
    for (int q = 0; q * 8 < rows; q++) {
        const int nt = rows - 8 * q < 8 ? rows - 8 * q : 8;
        for (int kk = 0; kk < kc; kk += 8) {
            const int nk = kc - kk < 8 ? kc - kk : 8;
            const __m256i mk = mask8(nk);
            __m256 r[8];
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++)
                r[t] = t < nt ? _mm256_maskload_ps(a + (long)(8 * q + t) * lda + k0 + kk, mk) : _mm256_setzero_ps();
            tr8(r);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                if (c < nk) _mm256_store_ps(p + ((long)q * kc + kk + c) * 8, r[c]);
        }
    }
}

#define FMA4_256(q, j)                                                                                                 \
    c[j] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(q), c[j]);                                                         \
    c[j + 1] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(q + ld), c[j + 1]);                                             \
    c[j + 2] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(q + 2 * ld), c[j + 2]);                                         \
    c[j + 3] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(q + ld3), c[j + 3])
/* The 8 x 8 tile out[t, j] (+)= Σ_k p[k*8 + t]·w[j*ld + k], t < rows, j < nr. */
T_AVX2 static void tile_f32_avx2(float *out, int ldo, const float *p, const float *w, long ld, int kc, const float *b,
                                 int rows, int nr, int first) {
    __m256 c[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) c[j] = _mm256_setzero_ps();
    const float *w0 = w, *w4 = w + 4 * ld;
    const long ld3 = 3 * ld;
    for (int k = 0; k < kc; k++, p += 8, w0++, w4++) {
        const __m256 av = _mm256_load_ps(p);
        FMA4_256(w0, 0);
        FMA4_256(w4, 4);
    }
    tr8(c);
    const __m256i mn = mask8(nr);
    const __m256 bias = b && first ? _mm256_maskload_ps(b, mn) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < 8; t++)
        if (t < rows) {
            float *o = out + (long)t * ldo;
            const __m256 prev = first ? bias : _mm256_maskload_ps(o, mn);
            _mm256_maskstore_ps(o, mn, _mm256_add_ps(c[t], prev));
        }
}

/* Copies weight rows n < nr (of 8) and k < kc into a zero-padded [8, ldc] block. */
static void copy_block8(void *dst, int ldc, const void *w, long ld, int nr, int kc, size_t elem) {
    memset(dst, 0, (size_t)8 * ldc * elem);
    for (int j = 0; j < nr; j++) memcpy((char *)dst + (size_t)j * ldc * elem, (const char *)w + j * ld * elem, kc * elem);
}

T_AVX2 NOINLINE void linear_f32_avx2p(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                                    int K, int N) {
    _Alignas(32) float pk[PANEL_MB * KC_F32];
    _Alignas(32) float wt[8 * KC_F32];
    for (int m0 = 0; m0 < M; m0 += PANEL_MB) {
        const int rows = M - m0 < PANEL_MB ? M - m0 : PANEL_MB;
        for (int k0 = 0; k0 < K; k0 += KC_F32) {
            const int kc = K - k0 < KC_F32 ? K - k0 : KC_F32;
            pack_f32_avx2(pk, a + (long)m0 * lda, lda, rows, k0, kc);
            for (int n0 = 0; n0 < N; n0 += 8) {
                const int nr = N - n0 < 8 ? N - n0 : 8;
                const float *wb = w + (long)n0 * K + k0;
                long ld = K;
                if (nr < 8) copy_block8(wt, kc, wb, ld, nr, kc, sizeof(float)), wb = wt, ld = kc;
                for (int q = 0; q * 8 < rows; q++)
                    tile_f32_avx2(out + (long)(m0 + 8 * q) * ldo + n0, ldo, pk + (long)q * kc * 8, wb, ld, kc,
                                  b ? b + n0 : NULL, rows - 8 * q < 8 ? rows - 8 * q : 8, nr, k0 == 0);
            }
        }
    }
}

T_AVX2 static void linear_f32_avx2(float *out, int ldo, const float *a, int lda, const float *w, const float *b, int M,
                                   int K, int N) {
    if (M >= PANEL_MIN_M)
        linear_f32_avx2p(out, ldo, a, lda, w, b, M, K, N);
    else
        linear_f32_avx2d(out, ldo, a, lda, w, b, M, K, N);
}

/* Panels of 8 tokens x 4 bytes (signed, as given): p[((q*G + g)*8 + t)*4 + i] =
 * a[8q + t, k0 + 4g + i], G = ceil(kc / 4), zero padding. */
T_AVX2 static void pack_i8_avx2(int8_t *p, const int8_t *qa, int K, int rows, int k0, int kc) {
    const int G = (kc + 3) / 4;
    for (int q = 0; q * 8 < rows; q++) {
        const int nt = rows - 8 * q < 8 ? rows - 8 * q : 8;
        for (int kk = 0; kk < kc; kk += 32) {
            const int nk = kc - kk < 32 ? kc - kk : 32;
            __m256 r[8];
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++)
                r[t] = t < nt ? _mm256_castsi256_ps(load32_i8(qa + (long)(8 * q + t) * K + k0 + kk, nk))
                              : _mm256_setzero_ps();
            tr8(r);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                if (c < (nk + 3) / 4) _mm256_store_ps((float *)(p + (((long)q * G + kk / 4 + c) * 8) * 4), r[c]);
        }
    }
}

/* An 8 x 8 int32 tile's store: c[j] holds weight row j over 8 tokens; transposed to rows of
 * tokens and stored (t < rows, j < nr), the first block of k less ws128 (the VNNI kernels'
 * 128·Σw, or zero), a later one added to what is there. */
T_AVX2 INLINE void tile8_store(int32_t *acc, int N, const __m256i c[8], int rows, int nr, int first, __m256i ws128) {
    __m256 r[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) r[j] = _mm256_castsi256_ps(c[j]);
    tr8(r);
    const __m256i mn = mask8(nr);
#pragma GCC unroll 8
    for (int t = 0; t < 8; t++)
        if (t < rows) {
            int *o = (int *)(acc + (long)t * N);
            const __m256i v = _mm256_castps_si256(r[t]);
            _mm256_maskstore_epi32(o, mn,
                                   first ? _mm256_sub_epi32(v, ws128) : _mm256_add_epi32(v, _mm256_maskload_epi32(o, mn)));
        }
}

/* VPMADDUBSW on |w| and a·sign(w) (see the top of the file), widened by VPMADDWD. */
#define DOT_256(acc, q)                                                                                                \
    do {                                                                                                               \
        const __m256i wb = _mm256_set1_epi32(*(const i32_alias *)(q));                                                 \
        const __m256i pr = _mm256_maddubs_epi16(_mm256_abs_epi8(wb), _mm256_sign_epi8(av, wb));                        \
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pr, ones));                                                      \
    } while (0)
/* The 8 x 8 tile acc[t, j] (+)= Σ_g p[g]·w[j, 4g..4g+3], t < rows, j < nr: exact int32. */
T_AVX2 static void tile_i8_avx2(int32_t *acc, int N, const int8_t *p, const int8_t *w, long ld, int G, int rows, int nr,
                                int first) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) c[j] = _mm256_setzero_si256();
    const int8_t *w0 = w, *w4 = w + 4 * ld;
    const long ld3 = 3 * ld;
    for (int g = 0; g < G; g++, p += 32, w0 += 4, w4 += 4) {
        const __m256i av = _mm256_load_si256((const __m256i *)p);
        DOT_256(c[0], w0);
        DOT_256(c[1], w0 + ld);
        DOT_256(c[2], w0 + 2 * ld);
        DOT_256(c[3], w0 + ld3);
        DOT_256(c[4], w4);
        DOT_256(c[5], w4 + ld);
        DOT_256(c[6], w4 + 2 * ld);
        DOT_256(c[7], w4 + ld3);
    }
    tile8_store(acc, N, c, rows, nr, first, _mm256_setzero_si256());
}

T_AVX2 NOINLINE void dot_i8_avx2p(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    _Alignas(32) int8_t pk[PANEL_MB * KC_I8];
    _Alignas(32) int8_t wt[8 * KC_I8];
    for (int m0 = 0; m0 < M; m0 += PANEL_MB) {
        const int rows = M - m0 < PANEL_MB ? M - m0 : PANEL_MB;
        for (int k0 = 0; k0 < K; k0 += KC_I8) {
            const int kc = K - k0 < KC_I8 ? K - k0 : KC_I8, G = (kc + 3) / 4;
            pack_i8_avx2(pk, qa + (long)m0 * K, K, rows, k0, kc);
            for (int n0 = 0; n0 < N; n0 += 8) {
                const int nr = N - n0 < 8 ? N - n0 : 8;
                const int8_t *wb = qw + (long)n0 * K + k0;
                long ld = K;
                if (nr < 8 || kc % 4) copy_block8(wt, 4 * G, wb, ld, nr, kc, 1), wb = wt, ld = 4 * G;
                for (int q = 0; q * 8 < rows; q++)
                    tile_i8_avx2(acc + (long)(m0 + 8 * q) * N + n0, N, pk + (long)q * G * 32, wb, ld, G,
                                 rows - 8 * q < 8 ? rows - 8 * q : 8, nr, k0 == 0);
            }
        }
    }
}

T_AVX2 static void dot_i8_avx2(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    if (M >= PANEL_MIN_M)
        dot_i8_avx2p(acc, qa, qw, M, K, N);
    else
        dot_i8_avx2d(acc, qa, qw, M, K, N);
}

/* ---------------------------------------------------------------- AVX-VNNI panels
 * AVX-VNNI (VPDPBUSD on 256-bit vectors, VEX-encoded: Intel client CPUs since Alder Lake, which
 * have no AVX-512, and AMD since Zen 5): the AVX2 panels with the activations' top bit flipped
 * (+128: unsigned bytes) and 128·Σ_k w[n,k] taken off at the first block of k, as the AVX-512
 * VNNI kernel does. One instruction per 4-byte group and weight row, where the AVX2 kernel's
 * VPMADDUBSW needs |w|, a·sign(w), the multiply, the widening and the add. Exact int32 sums
 * (wrapping arithmetic, whose result is the exact sum), so the AVX2 set's values. */
#define T_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))

/* The 8 x 8 tile acc[t, j] (+)= Σ_g p[g]·w[j, 4g..4g+3] (u8 x s8), t < rows, j < nr; the first
 * block of k takes ws128[j] = 128·Σ_k w[j, k] off. */
T_AVXVNNI static void tile_i8_avxvnni(int32_t *acc, int N, const int8_t *p, const int8_t *w, long ld, int G, int rows,
                                      int nr, int first, __m256i ws128) {
    __m256i c[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) c[j] = _mm256_setzero_si256();
    const int8_t *w0 = w, *w4 = w + 4 * ld;
    const long ld3 = 3 * ld;
    for (int g = 0; g < G; g++, p += 32, w0 += 4, w4 += 4) {
        const __m256i av = _mm256_load_si256((const __m256i *)p);
        const int8_t *wj[8] = {w0, w0 + ld, w0 + 2 * ld, w0 + ld3, w4, w4 + ld, w4 + 2 * ld, w4 + ld3};
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) c[j] = _mm256_dpbusd_avx_epi32(c[j], av, _mm256_set1_epi32(*(const i32_alias *)wj[j]));
    }
    tile8_store(acc, N, c, rows, nr, first, ws128);
}

T_AVXVNNI NOINLINE void dot_i8_avxvnnip(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    _Alignas(32) int8_t pk[PANEL_MB * KC_I8];
    _Alignas(32) int8_t wt[8 * KC_I8];
    _Alignas(32) int32_t wsc[WS_NC + 8];
    const __m256i one = _mm256_set1_epi8(1), flip = _mm256_set1_epi8((char)0x80);
    for (int nc0 = 0; nc0 < N; nc0 += WS_NC) {
        const int nc1 = N - nc0 < WS_NC ? N : nc0 + WS_NC;
        for (int n = nc0; n < nc1; n++) { /* 128·Σ_k w[n, k], once per call */
            __m256i sv = _mm256_setzero_si256();
            for (int k = 0; k < K; k += 32) sv = _mm256_dpbusd_avx_epi32(sv, one, load32_i8(qw + (long)n * K + k, K - k));
            wsc[n - nc0] = 128 * hsum256i(sv);
        }
        for (int m0 = 0; m0 < M; m0 += PANEL_MB) {
            const int rows = M - m0 < PANEL_MB ? M - m0 : PANEL_MB;
            for (int k0 = 0; k0 < K; k0 += KC_I8) {
                const int kc = K - k0 < KC_I8 ? K - k0 : KC_I8, G = (kc + 3) / 4;
                pack_i8_avx2(pk, qa + (long)m0 * K, K, rows, k0, kc);
                const long bytes = (long)((rows + 7) / 8) * G * 32;
                for (long i = 0; i < bytes; i += 32) /* +128: the activations as unsigned bytes */
                    _mm256_store_si256((__m256i *)(pk + i),
                                       _mm256_xor_si256(_mm256_load_si256((const __m256i *)(pk + i)), flip));
                for (int n0 = nc0; n0 < nc1; n0 += 8) {
                    const int nr = nc1 - n0 < 8 ? nc1 - n0 : 8;
                    const int8_t *wb = qw + (long)n0 * K + k0;
                    long ld = K;
                    if (nr < 8 || kc % 4) copy_block8(wt, 4 * G, wb, ld, nr, kc, 1), wb = wt, ld = 4 * G;
                    const __m256i ws = _mm256_maskload_epi32(wsc + (n0 - nc0), mask8(nr));
                    for (int q = 0; q * 8 < rows; q++)
                        tile_i8_avxvnni(acc + (long)(m0 + 8 * q) * N + n0, N, pk + (long)q * G * 32, wb, ld, G,
                                        rows - 8 * q < 8 ? rows - 8 * q : 8, nr, k0 == 0, ws);
                }
            }
        }
    }
}

T_AVXVNNI static void dot_i8_avxvnni(int32_t *acc, const int8_t *qa, const int8_t *qw, int M, int K, int N) {
    if (M >= PANEL_MIN_M)
        dot_i8_avxvnnip(acc, qa, qw, M, K, N);
    else
        dot_i8_avx2d(acc, qa, qw, M, K, N);
}

/* ---------------------------------------------------------------- the tables */

/* the other operations: rt_ops_body.h's loops, vectorized for each set (512-bit vectors for
 * AVX-512, which GCC's generic tuning would otherwise keep at 256) */
RT_OPS_DEFINE(T_AVX2, avx2, 8, 4, 2, 2)
#if defined(__clang__) /* clang has no prefer-vector-width target attribute (the fuzz build) */
#define T_512_OPS __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2")))
#else
#define T_512_OPS __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,prefer-vector-width=512")))
#endif
RT_OPS_DEFINE(T_512_OPS, avx512, 16, 8, 2, 2)

RT_LINEAR_I8_DEFINE(T_AVX2, avx2, dot_i8_avx2)
RT_LINEAR_I8_DEFINE(T_AVXVNNI, avx2vnni, dot_i8_avxvnni)

static const mvmoe_rt_kernels AVX2 = {"avx2", linear_f32_avx2, dot_i8_avx2, RT_OPS_ENTRIES(avx2), linear_i8_avx2};
static const mvmoe_rt_kernels AVX2_VNNI = {"avx2-vnni", linear_f32_avx2, dot_i8_avxvnni, RT_OPS_ENTRIES(avx2),
                                           linear_i8_avx2vnni};
static const mvmoe_rt_kernels AVX512 = {"avx512", linear_f32_512, dot_i8_avx2, RT_OPS_ENTRIES(avx512), linear_i8_avx2};
static const mvmoe_rt_kernels AVX512_VNNI = {"avx512-vnni", linear_f32_512, dot_i8_vnni, RT_OPS_ENTRIES(avx512),
                                             linear_i8_vnni};

const mvmoe_rt_kernels *mvmoe_rt_kernels_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &AVX2 : NULL;
}

/* AVX-VNNI is CPUID leaf 7, sub-leaf 1, EAX bit 4 (asked directly: clang 14's
 * __builtin_cpu_supports does not know "avxvnni"); the YMM state is the OS's already when AVX2
 * is reported usable. */
static int has_avx_vnni(void) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1u);
}

const mvmoe_rt_kernels *mvmoe_rt_kernels_avx2_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_avx_vnni() ? &AVX2_VNNI : NULL;
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
