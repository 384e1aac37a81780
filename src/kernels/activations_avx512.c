/* AVX-512 versions of the GELU spans (activations.c), chosen at run time (isa.c). They are the
 * AVX2 code at 16 lanes: the same exp/erf polynomials and the same operation order per element,
 * so both versions produce the same bits (tests/kernels/test_gelu.c compares them). The
 * functions carry a target attribute instead of the file being built with -mavx512f, so
 * nothing else in the binary assumes AVX-512. */
#include <stddef.h>

#include "kernels/activations_avx512.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/simd512.h"

/* erf(x), as mvmoe_simd_erf8 (simd.h): the coefficient table is the one there, lanes 0..7 of
 * each 16-float row (only indices 0..7 are ever selected). */
AVX512 static inline __m512 erf16(__m512 x, const float (*C)[16], __m512 centers) {
    const __m512 signbit = _mm512_set1_ps(-0.0f);
    __m512 z = _mm512_andnot_ps(signbit, x);
    z = _mm512_min_ps(_mm512_set1_ps(4.0f), z); /* NaN stays NaN (2nd operand) */
    __m512i idx = _mm512_cvttps_epi32(_mm512_add_ps(z, z));
    idx = _mm512_min_epi32(idx, _mm512_set1_epi32(7));
    __m512 t = _mm512_sub_ps(z, _mm512_permutexvar_ps(idx, centers));
    __m512 p = _mm512_permutexvar_ps(idx, _mm512_loadu_ps(C[7]));
    for (int k = 6; k >= 0; k--) p = _mm512_fmadd_ps(p, t, _mm512_permutexvar_ps(idx, _mm512_loadu_ps(C[k])));
    p = _mm512_min_ps(_mm512_set1_ps(1.0f), p);
    return _mm512_or_ps(p, _mm512_and_ps(signbit, x));
}

static void widen(float (*C16)[16], const float (*C8)[8]) {
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 16; j++) C16[k][j] = j < 8 ? C8[k][j] : 0.0f;
}

AVX512 void mvmoe_gelu_forward_span_avx512(float *out, const float *in, size_t n, const float (*C8)[8],
                                            const float *centers8, float inv_sqrt2) {
    float C[8][16], ce[16] = {0};
    widen(C, C8);
    for (int j = 0; j < 8; j++) ce[j] = centers8[j];
    const __m512 centers = _mm512_loadu_ps(ce), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f),
                 k = _mm512_set1_ps(inv_sqrt2);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, in + i);
        __m512 e = erf16(_mm512_mul_ps(x, k), (const float (*)[16])C, centers);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(x, half), _mm512_add_ps(one, e)));
    }
}

/* out = gelu(x) as mvmoe_gelu_forward_span_avx512, and g (which held x) = GELU'(x) as
 * mvmoe_gelu_backward_span_avx512 computes it: one erf for both. */
AVX512 void mvmoe_gelu_forward_grad_span_avx512(float *out, float *g, size_t n, const float (*C8)[8],
                                                 const float *centers8, float inv_sqrt2, float inv_sqrt2pi) {
    float C[8][16], ce[16] = {0};
    widen(C, C8);
    for (int j = 0; j < 8; j++) ce[j] = centers8[j];
    const __m512 centers = _mm512_loadu_ps(ce), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f),
                 mhalf = _mm512_set1_ps(-0.5f), k = _mm512_set1_ps(inv_sqrt2), kp = _mm512_set1_ps(inv_sqrt2pi);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = erf16(_mm512_mul_ps(x, k), (const float (*)[16])C, centers);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(x, half), _mm512_add_ps(one, e)));
        __m512 cdf = _mm512_fmadd_ps(half, e, half);
        __m512 pdf = _mm512_mul_ps(exp16(_mm512_mul_ps(mhalf, _mm512_mul_ps(x, x))), kp);
        _mm512_mask_storeu_ps(g + i, m, _mm512_fmadd_ps(x, pdf, cdf));
    }
}

AVX512 void mvmoe_gelu_backward_span_avx512(float *din, const float *dout, const float *in, size_t n,
                                             const float (*C8)[8], const float *centers8,
                                             float inv_sqrt2, float inv_sqrt2pi, int acc) {
    float C[8][16], ce[16] = {0};
    widen(C, C8);
    for (int j = 0; j < 8; j++) ce[j] = centers8[j];
    const __m512 centers = _mm512_loadu_ps(ce), half = _mm512_set1_ps(0.5f),
                 mhalf = _mm512_set1_ps(-0.5f), k = _mm512_set1_ps(inv_sqrt2),
                 kp = _mm512_set1_ps(inv_sqrt2pi);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, in + i);
        __m512 cdf = _mm512_fmadd_ps(half, erf16(_mm512_mul_ps(x, k), (const float (*)[16])C, centers), half);
        __m512 pdf = _mm512_mul_ps(exp16(_mm512_mul_ps(mhalf, _mm512_mul_ps(x, x))), kp);
        __m512 g = _mm512_fmadd_ps(x, pdf, cdf);
        /* without acc the addend is +0: the bits of accumulating into zeros */
        __m512 d = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, dout + i), g,
                                   acc ? _mm512_maskz_loadu_ps(m, din + i) : _mm512_setzero_ps());
        _mm512_mask_storeu_ps(din + i, m, d);
    }
}
#endif
