/* AVX-512 softmax rows for attention, chosen at run time (isa.c). Softmax is the largest
 * non-GEMM cost of 12x64 inference (T = 50: ~16 % of a batch-256 pass on the AVX2 path), and
 * most of it is the exponential, which runs here 16 lanes at a time.
 *
 * It gives the bits of the AVX2 path in attention.c (simd.h: mvmoe_simd_max,
 * mvmoe_simd_exp_shift_sum, mvmoe_simd_scale), which tests/kernels/test_attention.c checks:
 *  - the maximum is exact in any order;
 *  - exp16 is exp8's polynomial and operation order, lane for lane (simd512.h);
 *  - the sum keeps AVX2's 8 partial sums and order: each 16-lane block is added as its low
 *    8 lanes, then its high 8 (chunk k of 8 after chunk k-1), masked lanes as +0, and the
 *    final 8 -> 1 reduction is AVX2's;
 *  - the scale is the same multiplication by the same 1/sum. */
#include <stddef.h>

#include "kernels/softmax_avx512.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/simd512.h"

AVX512 void mvmoe_softmax_rows_avx512(float *A, int rows, int T) {
    for (int r = 0; r < rows; r++) {
        float *x = A + (size_t)r * T;
        __m512 vm = _mm512_set1_ps(x[0]);
        for (int i = 0; i < T; i += 16) {
            const __mmask16 k = T - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (T - i)) - 1);
            vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, x + i));
        }
        const __m512 vs = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < T; i += 16) {
            const int left = T - i;
            const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vs));
            e = _mm512_maskz_mov_ps(k, e);
            _mm512_mask_storeu_ps(x + i, k, e);
            acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
            if (left > 8) acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps(e, 1));
        }
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        const __m512 inv = _mm512_set1_ps(1.0f / _mm_cvtss_f32(s));
        for (int i = 0; i < T; i += 16) {
            const __mmask16 k = T - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (T - i)) - 1);
            _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
        }
    }
}
#endif
