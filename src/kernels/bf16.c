/* float <-> bfloat16 (the bf16 products' operands, linear_bf16.c). The rounding follows AVX-512
 * BF16's VCVTNEPS2BF16, so that the vector path and the plain loop give the same bits: round to
 * nearest even; denormal inputs become signed zeros (the instruction ignores MXCSR and treats
 * them as zero); NaNs stay NaNs, quieted. */
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd512.h"

static inline uint16_t round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    if (!(u & 0x7f800000u)) return (uint16_t)((u >> 16) & 0x8000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void mvmoe_bf16_round_ref(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = round_bf16(src[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The instruction, 32 at a time: twice the plain loop's speed, and rounding is a sizeable part
 * of a bf16 training step (docs/PERFORMANCE.md, "bf16 products"). */
AVX512BF16 static void round_avx512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) bf16_round32(dst + i, src + i);
    for (; i < n; i++) dst[i] = round_bf16(src[i]);
}
#endif

void mvmoe_bf16_round(uint16_t *dst, const float *src, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int have = -1; /* racing first calls store the same value */
    if (have < 0) have = __builtin_cpu_supports("avx512bf16") && mvmoe_isa_width() == 512;
    if (have) {
        round_avx512(dst, src, n);
        return;
    }
#endif
    mvmoe_bf16_round_ref(dst, src, n);
}

float mvmoe_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
