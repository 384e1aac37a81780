/* AVX-512 helpers shared by the run-time-chosen AVX-512 kernels (activations_avx512.c,
 * attention_avx512.c); private to src/kernels. Functions carry a target attribute instead of
 * the files being built with -mavx512f, so nothing else in the binary assumes AVX-512. */
#ifndef MVMOE_KERNELS_SIMD512_H
#define MVMOE_KERNELS_SIMD512_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>

#define AVX512 __attribute__((target("avx512f,avx512dq")))

/* exp(x), as mvmoe_simd_exp8 (simd.h), lane for lane */
AVX512 static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-87.3f), x);
    x = _mm512_min_ps(_mm512_set1_ps(88.3f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* p·2^n in one instruction: n is an integer in [-126, 127] (x is clamped), so 2^n is a
     * normal float and scalef rounds exactly as exp8's multiplication by the 2^n it builds in
     * the exponent bits: the same bits, 3 instructions fewer */
    return _mm512_scalef_ps(p, n);
}

/* r[c] = column c of the 16 x 16 block whose rows were r[0..15], in 64 in-lane and cross-lane
 * shuffles (attention's key tiles: a scalar transpose took ~2300 cycles for 16 x 64 floats). */
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

/* AVX-512 BF16 (bf16.c, when __builtin_cpu_supports("avx512bf16")) */
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* 32 floats -> 32 bf16 (nearest even; denormal inputs flush to signed zero, NaNs are quieted:
 * the instruction's rules, which mvmoe_bf16_round_ref follows) */
AVX512BF16 static inline void bf16_round32(uint16_t *dst, const float *src) {
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 16), _mm512_loadu_ps(src));
    _mm512_storeu_si512((void *)dst, (__m512i)v);
}


/* AVX-512 VNNI (linear_int8.c, when mvmoe_isa_vnni()): Σ_k (a[k] + 128)·w[k] over n bytes
 * (n a multiple of 64; a, w signed int8). VPDPBUSD multiplies unsigned by signed bytes, so the
 * signed activations are moved to unsigned by flipping their top bit (a + 128); the caller
 * subtracts 128·Σ_k w[k]. Each 4-byte group's sum goes to an int32 lane without saturation
 * (255·127·4 fits easily), so the total is the exact integer: the same as a plain loop's. */
#define AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
AVX512VNNI static inline int32_t dot_u8s8(const int8_t *a, const int8_t *w, int n) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < n; k += 64) {
        __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)(a + k)), flip);
        acc = _mm512_dpbusd_epi32(acc, u, _mm512_loadu_si512((const void *)(w + k)));
    }
    return _mm512_reduce_add_epi32(acc);
}

#endif
#endif
