/* The SIMD layer's tile kernels for attention (attention.c), private to src/kernels: small
 * register-blocked products over a head's rows, AVX2 + FMA. MVMOE_SIMD_TILES says whether this
 * build has them; without, attention.c runs its plain-C loops (plain dot products and sums of
 * scaled rows). A new vector ISA (arm64's NEON) adds its versions here. NV (1, 2 or 4) is the
 * number of 8-float vectors per row; it is a compile-time constant at every call, so the
 * loops over it unroll. */
#ifndef MVMOE_KERNELS_SIMD_TILES_H
#define MVMOE_KERNELS_SIMD_TILES_H

#include <stddef.h>

#include "kernels/simd.h"

#define MVMOE_SIMD_TILES MVMOE_SIMD_AVX2

#if MVMOE_SIMD_TILES
#if defined(__GNUC__)
#define MVMOE_SIMD_TILE_INLINE static inline __attribute__((always_inline))
#else
#define MVMOE_SIMD_TILE_INLINE static inline
#endif

/* Stores the first `cnt` (1..) lanes of x at p. */
MVMOE_SIMD_TILE_INLINE void mvmoe_simd_tile_store(float *p, __m256 x, int cnt) {
    if (cnt >= 8) _mm256_storeu_ps(p, x);
    else _mm256_maskstore_ps(p, mvmoe_simd_tailmask(cnt), x);
}

/* s_r[j] = scale · Σ_c a_r[c]·tile[c·njp + j] for r = 0, 1 and j < min(nvalid, 8·NV).
 * tile columns are zero-padded, so full vectors may always be loaded. */
MVMOE_SIMD_TILE_INLINE void mvmoe_simd_tile_score2(float *s0, float *s1, const float *a0, const float *a1,
                                                   const float *tile, int njp, int hd, float scale, int nvalid,
                                                   const int NV) {
    __m256 x[4], y[4];
    for (int u = 0; u < NV; u++) x[u] = y[u] = _mm256_setzero_ps();
    for (int c = 0; c < hd; c++) {
        const __m256 b0 = _mm256_broadcast_ss(a0 + c), b1 = _mm256_broadcast_ss(a1 + c);
        const float *t = tile + (size_t)c * njp;
        for (int u = 0; u < NV; u++) {
            const __m256 tv = _mm256_loadu_ps(t + 8 * u);
            x[u] = _mm256_fmadd_ps(b0, tv, x[u]);
            y[u] = _mm256_fmadd_ps(b1, tv, y[u]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
    for (int u = 0; u < NV; u++) {
        mvmoe_simd_tile_store(s0 + 8 * u, _mm256_mul_ps(x[u], vs), nvalid - 8 * u);
        mvmoe_simd_tile_store(s1 + 8 * u, _mm256_mul_ps(y[u], vs), nvalid - 8 * u);
    }
}

MVMOE_SIMD_TILE_INLINE void mvmoe_simd_tile_score1(float *s0, const float *a0, const float *tile, int njp, int hd,
                                                   float scale, int nvalid, const int NV) {
    __m256 x[4];
    for (int u = 0; u < NV; u++) x[u] = _mm256_setzero_ps();
    for (int c = 0; c < hd; c++) {
        const __m256 b0 = _mm256_broadcast_ss(a0 + c);
        const float *t = tile + (size_t)c * njp;
        for (int u = 0; u < NV; u++) x[u] = _mm256_fmadd_ps(b0, _mm256_loadu_ps(t + 8 * u), x[u]);
    }
    const __m256 vs = _mm256_set1_ps(scale);
    for (int u = 0; u < NV; u++) mvmoe_simd_tile_store(s0 + 8 * u, _mm256_mul_ps(x[u], vs), nvalid - 8 * u);
}

/* d_r[c] (+)= Σ_{n<cnt} coef_r[n·cs] · rows[n·ld + c] for c < 8·NV, r = 0 (and 1 if d1). */
MVMOE_SIMD_TILE_INLINE void mvmoe_simd_tile_combo(float *d0, float *d1, const float *c0, const float *c1, size_t cs,
                                                  const float *rows, size_t ld, int cnt, int accumulate, const int NV) {
    __m256 x[4], y[4];
    for (int u = 0; u < NV; u++) x[u] = y[u] = _mm256_setzero_ps();
    if (d1) {
        for (int n = 0; n < cnt; n++) {
            const __m256 b0 = _mm256_broadcast_ss(c0 + n * cs), b1 = _mm256_broadcast_ss(c1 + n * cs);
            const float *r = rows + n * ld;
            for (int u = 0; u < NV; u++) {
                const __m256 rv = _mm256_loadu_ps(r + 8 * u);
                x[u] = _mm256_fmadd_ps(b0, rv, x[u]);
                y[u] = _mm256_fmadd_ps(b1, rv, y[u]);
            }
        }
    } else {
        /* one output row: split n into even/odd chains to hide the FMA latency */
        int n = 0;
        for (; n + 2 <= cnt; n += 2) {
            const __m256 b0 = _mm256_broadcast_ss(c0 + n * cs), b1 = _mm256_broadcast_ss(c0 + (n + 1) * cs);
            const float *r = rows + n * ld;
            for (int u = 0; u < NV; u++) {
                x[u] = _mm256_fmadd_ps(b0, _mm256_loadu_ps(r + 8 * u), x[u]);
                y[u] = _mm256_fmadd_ps(b1, _mm256_loadu_ps(r + ld + 8 * u), y[u]);
            }
        }
        if (n < cnt) {
            const __m256 b0 = _mm256_broadcast_ss(c0 + n * cs);
            for (int u = 0; u < NV; u++)
                x[u] = _mm256_fmadd_ps(b0, _mm256_loadu_ps(rows + n * ld + 8 * u), x[u]);
        }
        for (int u = 0; u < NV; u++) x[u] = _mm256_add_ps(x[u], y[u]);
    }
    for (int u = 0; u < NV; u++) {
        if (accumulate) x[u] = _mm256_add_ps(_mm256_loadu_ps(d0 + 8 * u), x[u]);
        _mm256_storeu_ps(d0 + 8 * u, x[u]);
        if (d1) {
            if (accumulate) y[u] = _mm256_add_ps(_mm256_loadu_ps(d1 + 8 * u), y[u]);
            _mm256_storeu_ps(d1 + 8 * u, y[u]);
        }
    }
}
#endif

#endif
