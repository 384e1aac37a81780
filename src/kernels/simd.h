/* Small SIMD helper layer for the kernels (private to src/kernels).
 *
 * Why it exists: the build targets x86-64-v3 (AVX2 + FMA) without -ffast-math, so GCC will not
 * vectorize float reductions (it may not reassociate) and cannot vectorize libm's expf/erff.
 * Softmax rows (attention, loss) and GELU are dominated by exactly those, so this header gives
 *  - reductions (sum, dot, max, sum of squared deviations) with 8 independent partial sums,
 *  - vector exp and erf (AVX2 + FMA intrinsics) and row helpers built on them,
 * each with a portable scalar fallback when the compiler is not targeting AVX2 + FMA. The
 * fallback gives slightly different roundings; results are deterministic for a given build.
 *
 * Accuracy (checked by tests/kernels/test_simd.c; GELU and softmax results by their tests):
 *  - mvmoe_simd_exp8: relative error < 1.5e-7 (measured 7.7e-8) for x in [-87.3, 88.3];
 *    inputs below are clamped (exp returns ~1.2e-38 instead of smaller values), inputs above
 *    return exp(88.3). NaN in, NaN out (so a NaN loss still surfaces as MVMOE_ERR_NUMERIC).
 *  - mvmoe_simd_erf8: absolute error < 1e-7 over all floats (measured 6.6e-8, ~1 ulp near ±1). */
#ifndef MVMOE_KERNELS_SIMD_H
#define MVMOE_KERNELS_SIMD_H

#include <math.h>
#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#define MVMOE_SIMD_AVX2 1
#include <immintrin.h>
#else
#define MVMOE_SIMD_AVX2 0
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

/* ------------------------------------------------------------------ denormals */

/* Denormals flushed to zero on the calling thread (x86: MXCSR FTZ | DAZ) until
 * mvmoe_simd_ftz_end(the returned state); a no-op where not supported. */
static inline unsigned mvmoe_simd_ftz_begin(void) {
#if defined(__x86_64__) || defined(__i386__)
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); /* FTZ | DAZ */
    return csr;
#else
    return 0;
#endif
}
static inline void mvmoe_simd_ftz_end(unsigned csr) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(csr);
#else
    (void)csr;
#endif
}

/* ------------------------------------------------------------------ reductions */

/* Σ x[i], 8 partial sums (pairwise-ish, better than one running float sum). */
static inline float mvmoe_simd_sum(const float *x, int n) {
#if MVMOE_SIMD_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    a0 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++) r += x[i];
    return r;
#else
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[i + l];
    float r = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) r += x[i];
    return r;
#endif
}

/* Σ a[i]·b[i]. */
static inline float mvmoe_simd_dot(const float *a, const float *b, int n) {
#if MVMOE_SIMD_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a0 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
#else
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float r = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
#endif
}

/* Σ (x[i] - m)², the second pass of a two-pass variance (no cancellation, unlike E[x²]-m²). */
static inline float mvmoe_simd_sqdev(const float *x, float m, int n) {
#if MVMOE_SIMD_AVX2
    __m256 a0 = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        a0 = _mm256_fmadd_ps(d, d, a0);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++) r += (x[i] - m) * (x[i] - m);
    return r;
#else
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (x[i + l] - m) * (x[i + l] - m);
    float r = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) r += (x[i] - m) * (x[i] - m);
    return r;
#endif
}

/* max x[i] (n >= 1). A NaN element may or may not be returned, but it still poisons the
 * softmax that follows (x - max is NaN for that element). */
static inline float mvmoe_simd_max(const float *x, int n) {
    float r = x[0];
    int i = 0;
#if MVMOE_SIMD_AVX2
    if (n >= 8) {
        __m256 a0 = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) a0 = _mm256_max_ps(a0, _mm256_loadu_ps(x + i));
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        s = _mm_max_ss(s, _mm_movehdup_ps(s));
        r = _mm_cvtss_f32(s);
    }
#endif
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* ------------------------------------------------------------------ exp, erf */
#if MVMOE_SIMD_AVX2
/* exp(x) = 2^n · e^r with n = round(x·log2 e), r = x - n·ln 2 (Cody-Waite split of ln 2 so r
 * is exact to ~1e-10), |r| <= ln2/2; e^r by its degree-7 Taylor polynomial (truncation
 * 0.347^8/8! = 5e-9 relative), 2^n built directly in the exponent bits. */
static inline __m256 mvmoe_simd_exp8(__m256 x) {
    /* max/min with the constant first: if x is NaN the instruction returns x (the 2nd operand). */
    x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.3f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln2 high part, exact */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);     /* ln2 - high part */
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* erf(x): |x| is cut into 8 intervals [0,.5), [.5,1), ..., [3.5,4) (|x| >= 4 is clamped to 4,
 * erf(4) = 1 - 1.5e-8 rounds to 1.0f). On each interval a degree-7 polynomial in
 * t = |x| - center (centers 0, .75, 1.25, ..., 3.75; the first interval is expanded at 0 with a
 * zero constant term so erf(0) = 0 exactly) interpolates erf at the 8 Chebyshev nodes of the
 * interval. The coefficients were computed in long double from erfl and rounded to float;
 * measured max abs error 7.2e-8 (float evaluation included). Coefficients are picked per lane
 * with one permute each, so the whole thing is branch-free. */
/* erf coefficients: row k holds the t^k coefficient of each interval's polynomial (also used
 * by the AVX-512 GELU, kernels/activations_avx512.c) */
__attribute__((unused)) static const float mvmoe_simd_erf_coef[8][8] = {
    {0.000000000e+00f, 7.111556530e-01f, 9.229001403e-01f, 9.866716862e-01f,
     9.985373020e-01f, 9.998993874e-01f, 9.999957085e-01f, 9.999998808e-01f},
    {1.128379464e+00f, 6.429310441e-01f, 2.365211248e-01f, 5.277499557e-02f,
     7.142318878e-03f, 5.862772814e-04f, 2.918902283e-05f, 8.814314469e-07f},
    {-1.107247317e-05f, -4.821981490e-01f, -2.956517339e-01f, -9.235620499e-02f,
     -1.607015729e-02f, -1.612267457e-03f, -9.486933413e-05f, -3.306069630e-06f},
    {-3.759519756e-01f, 2.678855695e-02f, 1.675358415e-01f, 9.015733749e-02f,
     2.172453143e-02f, 2.760384232e-03f, 1.958112698e-04f, 7.969994840e-06f},
    {-1.333608292e-03f, 1.506756395e-01f, -6.132016890e-03f, -4.810553417e-02f,
     -1.908825710e-02f, -3.257709090e-03f, -2.861694666e-04f, -1.378546858e-05f},
    {1.182570085e-01f, -5.322369188e-02f, -4.718514532e-02f, 6.619999185e-03f,
     1.065944694e-02f, 2.756164875e-03f, 3.136722953e-04f, 1.834072282e-05f},
    {-1.161482744e-02f, -2.658287063e-02f, 2.059754543e-02f, 9.049599990e-03f,
     -2.779561328e-03f, -1.667863922e-03f, -2.737579634e-04f, -2.069178481e-05f},
    {-1.584315859e-02f, 1.794584654e-02f, 3.732251003e-03f, -5.947051104e-03f,
     -7.159299566e-04f, 6.369699840e-04f, 1.731994416e-04f, 1.704719580e-05f},
};
/* the intervals' centers, in the order of the table's columns */
__attribute__((unused)) static const float mvmoe_simd_erf_centers[8] = {0.0f, 0.75f, 1.25f, 1.75f, 2.25f, 2.75f, 3.25f, 3.75f};

static inline __m256 mvmoe_simd_erf8(__m256 x) {
    const float (*C)[8] = mvmoe_simd_erf_coef;
    const __m256 centers = _mm256_loadu_ps(mvmoe_simd_erf_centers);
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_andnot_ps(signbit, x);
    z = _mm256_min_ps(_mm256_set1_ps(4.0f), z); /* NaN stays NaN (2nd operand) */
    __m256i idx = _mm256_cvttps_epi32(_mm256_add_ps(z, z));
    idx = _mm256_min_epi32(idx, _mm256_set1_epi32(7));
    __m256 t = _mm256_sub_ps(z, _mm256_permutevar8x32_ps(centers, idx));
    __m256 p = _mm256_permutevar8x32_ps(_mm256_loadu_ps(C[7]), idx);
    for (int k = 6; k >= 0; k--)
        p = _mm256_fmadd_ps(p, t, _mm256_permutevar8x32_ps(_mm256_loadu_ps(C[k]), idx));
    p = _mm256_min_ps(_mm256_set1_ps(1.0f), p);
    return _mm256_or_ps(p, _mm256_and_ps(signbit, x)); /* erf is odd */
}

/* Loads / stores the first n (0..8) lanes; the others read as 0. */
static inline __m256i mvmoe_simd_tailmask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

/* y[i] = exp(x[i] - shift) for i < n (y may equal x); returns Σ y[i]. The softmax kernel. */
static inline float mvmoe_simd_exp_shift_sum(float *y, const float *x, float shift, int n) {
#if MVMOE_SIMD_AVX2
    __m256 vs = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = mvmoe_simd_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        _mm256_storeu_ps(y + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        __m256i m = mvmoe_simd_tailmask(n - i);
        __m256 e = mvmoe_simd_exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vs));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(y + i, m, e);
        acc = _mm256_add_ps(acc, e);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
#else
    float acc = 0.0f;
    for (int i = 0; i < n; i++) {
        y[i] = expf(x[i] - shift);
        acc += y[i];
    }
    return acc;
#endif
}

/* x[i] *= s */
static inline void mvmoe_simd_scale(float *x, float s, int n) {
    for (int i = 0; i < n; i++) x[i] *= s;
}

/* ------------------------------------------------------------------ GELU spans (activations.c) */
#define MVMOE_GELU_INV_SQRT2 0.70710678118654752440
#define MVMOE_GELU_INV_SQRT2PI 0.39894228040143267794

/* out[i] = gelu(in[i]) = in·0.5·(1 + erf(in·(1/√2))), PyTorch's evaluation order. */
static inline void mvmoe_simd_gelu(float *out, const float *in, size_t n) {
    size_t i = 0;
#if MVMOE_SIMD_AVX2
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f),
                 k = _mm256_set1_ps((float)MVMOE_GELU_INV_SQRT2);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(in + i);
        __m256 e = mvmoe_simd_erf8(_mm256_mul_ps(x, k));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(x, half), _mm256_add_ps(one, e)));
    }
    if (i < n) {
        __m256i m = mvmoe_simd_tailmask((int)(n - i));
        __m256 x = _mm256_maskload_ps(in + i, m);
        __m256 e = mvmoe_simd_erf8(_mm256_mul_ps(x, k));
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_mul_ps(x, half), _mm256_add_ps(one, e)));
    }
#else
    for (; i < n; i++) out[i] = in[i] * 0.5f * (1.0f + erff(in[i] * (float)MVMOE_GELU_INV_SQRT2));
#endif
}

/* din[i] = (acc ? din[i] : 0) + dout[i]·GELU'(in[i]), GELU'(x) = Φ(x) + x·φ(x); din may be dout. */
static inline void mvmoe_simd_gelu_grad(float *din, const float *dout, const float *in, size_t n, int acc) {
    size_t i = 0;
#if MVMOE_SIMD_AVX2
    const __m256 half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f),
                 k = _mm256_set1_ps((float)MVMOE_GELU_INV_SQRT2),
                 kp = _mm256_set1_ps((float)MVMOE_GELU_INV_SQRT2PI);
    for (; i < n; i += 8) {
        __m256i m = mvmoe_simd_tailmask(n - i >= 8 ? 8 : (int)(n - i));
        __m256 x = _mm256_maskload_ps(in + i, m);
        __m256 cdf = _mm256_fmadd_ps(half, mvmoe_simd_erf8(_mm256_mul_ps(x, k)), half);
        __m256 pdf = _mm256_mul_ps(mvmoe_simd_exp8(_mm256_mul_ps(mhalf, _mm256_mul_ps(x, x))), kp);
        __m256 g = _mm256_fmadd_ps(x, pdf, cdf);
        __m256 d = _mm256_fmadd_ps(_mm256_maskload_ps(dout + i, m), g,
                                   acc ? _mm256_maskload_ps(din + i, m) : _mm256_setzero_ps());
        _mm256_maskstore_ps(din + i, m, d);
    }
#else
    for (; i < n; i++) {
        float x = in[i];
        float cdf = 0.5f + 0.5f * erff(x * (float)MVMOE_GELU_INV_SQRT2);
        float pdf = expf(-0.5f * x * x) * (float)MVMOE_GELU_INV_SQRT2PI;
        din[i] = (acc ? din[i] : 0.0f) + dout[i] * (cdf + x * pdf);
    }
#endif
}

/* out = gelu(x) and g (which held x) = GELU'(x), each with the bits of mvmoe_simd_gelu and
 * mvmoe_simd_gelu_grad: the derivative costs one exp more here, and the backward no erf. */
static inline void mvmoe_simd_gelu_and_grad(float *out, float *g, size_t n) {
    size_t i = 0;
#if MVMOE_SIMD_AVX2
    const __m256 half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f), one = _mm256_set1_ps(1.0f),
                 k = _mm256_set1_ps((float)MVMOE_GELU_INV_SQRT2),
                 kp = _mm256_set1_ps((float)MVMOE_GELU_INV_SQRT2PI);
    for (; i < n; i += 8) {
        __m256i m = mvmoe_simd_tailmask(n - i >= 8 ? 8 : (int)(n - i));
        __m256 x = _mm256_maskload_ps(g + i, m);
        __m256 e = mvmoe_simd_erf8(_mm256_mul_ps(x, k));
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_mul_ps(x, half), _mm256_add_ps(one, e)));
        __m256 cdf = _mm256_fmadd_ps(half, e, half);
        __m256 pdf = _mm256_mul_ps(mvmoe_simd_exp8(_mm256_mul_ps(mhalf, _mm256_mul_ps(x, x))), kp);
        _mm256_maskstore_ps(g + i, m, _mm256_fmadd_ps(x, pdf, cdf));
    }
#else
    mvmoe_simd_gelu(out, g, n);
    for (; i < n; i++) {
        float x = g[i];
        float cdf = 0.5f + 0.5f * erff(x * (float)MVMOE_GELU_INV_SQRT2);
        float pdf = expf(-0.5f * x * x) * (float)MVMOE_GELU_INV_SQRT2PI;
        g[i] = cdf + x * pdf;
    }
#endif
}

/* ------------------------------------------------------------------ LayerNorm sums (layernorm.c) */

/* The LayerNorm backward's row sums in 8 lanes: for the first D/8·8 columns c,
 * sg[c % 8] += g and sgx[c % 8] += g·x̂ with g = dy·w, x̂ = (x - m)·rs (sg, sgx start at 0).
 * Returns the number of columns done; the caller adds the lanes and the rest. */
static inline int mvmoe_simd_ln_row_sums8(float sg[8], float sgx[8], const float *x, const float *dy,
                                          const float *w, float m, float rs, int D) {
    int c = 0;
#if MVMOE_SIMD_AVX2
    __m256 vg = _mm256_setzero_ps(), vgx = _mm256_setzero_ps();
    const __m256 vm = _mm256_set1_ps(m), vrs = _mm256_set1_ps(rs);
    for (; c + 8 <= D; c += 8) {
        const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(w + c));
        const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vrs);
        vg = _mm256_add_ps(vg, g);
        vgx = _mm256_fmadd_ps(g, xh, vgx);
    }
    _mm256_storeu_ps(sg, vg);
    _mm256_storeu_ps(sgx, vgx);
#else
    for (int l = 0; l < 8; l++) sg[l] = sgx[l] = 0.0f;
    for (; c + 8 <= D; c += 8)
        for (int l = 0; l < 8; l++) {
            float g = dy[c + l] * w[c + l], xh = (x[c + l] - m) * rs;
            sg[l] += g;
            sgx[l] += g * xh;
        }
#endif
    return c;
}

/* aw[16] = Σ_r dy·x̂, ab[16] = Σ_r dy over one block of 16 columns of M rows at stride D
 * (in, dout point at the block's first column), summed in double: the LayerNorm weight and
 * bias gradients. The AVX2 version holds the 16 + 16 double accumulators in registers (GCC
 * keeps a double[16] array on the stack otherwise); both add the same float terms in the same
 * order. */
static inline void mvmoe_simd_ln_col16_sums(double *aw, double *ab, const float *in, const float *dout,
                                            const float *mean, const float *rstd, int M, int D) {
#if MVMOE_SIMD_AVX2
    __m256d w[4], b[4];
    for (int k = 0; k < 4; k++) w[k] = b[k] = _mm256_setzero_pd();
    for (int r = 0; r < M; r++) {
        const float *x = in + (size_t)r * D, *dy = dout + (size_t)r * D;
        const __m256 m = _mm256_set1_ps(mean[r]), rs = _mm256_set1_ps(rstd[r]);
        for (int h = 0; h < 2; h++) {
            const __m256 d = _mm256_loadu_ps(dy + 8 * h);
            const __m256 p = _mm256_mul_ps(d, _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 8 * h), m), rs));
            w[2 * h] = _mm256_add_pd(w[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
            w[2 * h + 1] = _mm256_add_pd(w[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
            b[2 * h] = _mm256_add_pd(b[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(d)));
            b[2 * h + 1] = _mm256_add_pd(b[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)));
        }
    }
    for (int k = 0; k < 4; k++) {
        _mm256_storeu_pd(aw + 4 * k, w[k]);
        _mm256_storeu_pd(ab + 4 * k, b[k]);
    }
#else
    for (int l = 0; l < 16; l++) aw[l] = ab[l] = 0.0;
    for (int r = 0; r < M; r++) {
        const float *x = in + (size_t)r * D, *dy = dout + (size_t)r * D;
        const float m = mean[r], rs = rstd[r];
        for (int l = 0; l < 16; l++) {
            aw[l] += (double)(dy[l] * ((x[l] - m) * rs));
            ab[l] += (double)dy[l];
        }
    }
#endif
}

#endif
