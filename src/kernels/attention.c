/* Multi-head self-attention core (Vaswani et al. 2017, "scaled dot-product attention"):
 * per batch b and head h, S = Q·Kᵀ/√hd, A = softmax_rows(S), O = A·V, with Q, K, V the head's
 * column slices of the packed qkv[B,T,3D] (timm's fused qkv projection layout).
 *
 * Backward, per (b, h):  dA = dO·Vᵀ,  dS = A ⊙ (dA - rowsum(dA ⊙ A)) (softmax Jacobian),
 *   dQ = dS·K/√hd,  dK = dSᵀ·Q/√hd,  dV = Aᵀ·dO.
 * On return datt[b,h] holds dS/√hd (both versions); callers treat it as scratch.
 *
 * Fast version: one OpenMP task per (b, h) pair, so every output element is produced by one
 * thread in a fixed order (results independent of the thread count). Sequences are short
 * (T = 50 .. 197) and heads narrow (hd = 16 .. 64), so each pair's working set fits in L1/L2:
 *  - Q·Kᵀ and dO·Vᵀ transpose K (or V) into a zero-padded on-stack tile [hd][T rounded up to 8]
 *    (at most ATT_TILE floats, a block of keys at a time if larger), then compute two query
 *    rows against up to 32 keys with 8 independent AVX2 accumulators (heads wider than
 *    ATT_TILE/8 = 1024, or a non-AVX2 build, use plain dot products instead);
 *  - A·V, dS·K, dSᵀ·Q and Aᵀ·dO are sums of scaled rows: two output rows at a time share the
 *    row loads, with the head dim held in registers (hd a multiple of 8; else a plain loop);
 *  - softmax rows use the vector exp of simd.h. No heap memory is touched.
 * On AVX-512, two shapes run fused kernels instead (attention_avx512.c): hd = 16 with T <= 64
 * (forward; the bits of the path here) and hd = 64 with T <= 80 (forward and backward, in
 * place of the sgemm calls; float tolerance). */
#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "kernels/attention_avx512.h"
#include "kernels/simd.h"
#include "kernels/simd_tiles.h"

/* A peaky row's small probabilities underflow: exp(s - max) is below FLT_MIN once s - max <
 * -87, and a GEMM fed such denormal values runs tens of times slower on x86 cores (microcode
 * assists; measured on ViT-Tiny's attention at batch 1 with its scores spread over more than
 * ~90: docs/PERFORMANCE.md §2.6). So attention runs with denormals flushed to zero (MXCSR
 * FTZ and DAZ, on this thread, restored before returning: mvmoe_simd_ftz_begin): values below
 * 1.2e-38 become 0, far inside any tolerance, and the same on every path and thread count. */
/* Floats in the per-thread transposed tile: 32 KiB, L1-sized, safe on any thread stack. */
#define ATT_TILE 8192

/* ---------------------------------------------------------------- reference (double) */

void mvmoe_attention_forward_ref(float *out, float *att, const float *qkv, int B, int T, int D,
                                 int NH) {
    const int hd = D / NH;
    const size_t ld = (size_t)3 * D;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd; /* q[T, hd] at stride ld */
            const float *k = q + D, *v = q + 2 * D;                       /* k, v likewise */
            float *A = att + ((size_t)b * NH + h) * T * T;                /* A[T, T] */
            for (int i = 0; i < T; i++) {
                /* scores recomputed in double on each pass rather than stored as float */
                double m = -INFINITY, sum = 0.0;
                for (int pass = 0; pass < 3; pass++)
                    for (int j = 0; j < T; j++) {
                        double s = 0.0;
                        for (int c = 0; c < hd; c++) s += (double)q[i * ld + c] * k[j * ld + c];
                        s *= scale;
                        if (pass == 0) m = s > m ? s : m;
                        else if (pass == 1) sum += exp(s - m);
                        else A[(size_t)i * T + j] = (float)(exp(s - m) / sum);
                    }
                float *o = out + ((size_t)b * T + i) * D + (size_t)h * hd; /* o[hd] */
                for (int c = 0; c < hd; c++) {
                    double acc = 0.0;
                    for (int j = 0; j < T; j++) acc += (double)A[(size_t)i * T + j] * v[j * ld + c];
                    o[c] = (float)acc;
                }
            }
        }
}

void mvmoe_attention_backward_ref(float *dqkv, float *datt, const float *dout, const float *att,
                                  const float *qkv, int B, int T, int D, int NH) {
    if (!dqkv) return;
    const int hd = D / NH;
    const size_t ld = (size_t)3 * D;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t off = (size_t)b * T * ld + (size_t)h * hd;
            const float *q = qkv + off, *k = q + D, *v = q + 2 * D; /* [T, hd] at stride ld */
            float *dq = dqkv + off, *dk = dq + D, *dv = dq + 2 * D;
            const float *dO = dout + (size_t)b * T * D + (size_t)h * hd; /* [T, hd] stride D */
            const float *A = att + ((size_t)b * NH + h) * T * T;         /* [T, T] */
            float *dS = datt + ((size_t)b * NH + h) * T * T;             /* [T, T] scratch */
            for (int i = 0; i < T; i++) {
                double r = 0.0; /* rowsum(dA ⊙ A), dA_ij = dO_i · v_j */
                for (int pass = 0; pass < 2; pass++)
                    for (int j = 0; j < T; j++) {
                        double da = 0.0;
                        for (int c = 0; c < hd; c++) da += (double)dO[i * (size_t)D + c] * v[j * ld + c];
                        double a = A[(size_t)i * T + j];
                        if (pass == 0) r += da * a;
                        else dS[(size_t)i * T + j] = (float)(a * (da - r) * scale);
                    }
            }
            for (int i = 0; i < T; i++) /* dq_i += Σ_j dS_ij k_j */
                for (int c = 0; c < hd; c++) {
                    double acc = 0.0;
                    for (int j = 0; j < T; j++) acc += (double)dS[(size_t)i * T + j] * k[j * ld + c];
                    dq[i * ld + c] = (float)(dq[i * ld + c] + acc);
                }
            for (int j = 0; j < T; j++) /* dk_j += Σ_i dS_ij q_i ; dv_j += Σ_i A_ij dO_i */
                for (int c = 0; c < hd; c++) {
                    double ak = 0.0, av = 0.0;
                    for (int i = 0; i < T; i++) {
                        ak += (double)dS[(size_t)i * T + j] * q[i * ld + c];
                        av += (double)A[(size_t)i * T + j] * dO[i * (size_t)D + c];
                    }
                    dk[j * ld + c] = (float)(dk[j * ld + c] + ak);
                    dv[j * ld + c] = (float)(dv[j * ld + c] + av);
                }
        }
}

/* ---------------------------------------------------------------- fast: building blocks */

/* d_r[c] (+)= Σ_{n<cnt} coef_r[n·cs]·rows[n·ld + c], c < hd; d1/c1 may be NULL (one row). */
static void att_combo(float *d0, float *d1, const float *c0, const float *c1, size_t cs,
                      const float *rows, size_t ld, int cnt, int hd, int accumulate) {
#if MVMOE_SIMD_TILES
    if (hd % 8 == 0) {
        int c = 0;
        for (; c + 32 <= hd; c += 32)
            mvmoe_simd_tile_combo(d0 + c, d1 ? d1 + c : NULL, c0, c1, cs, rows + c, ld, cnt, accumulate, 4);
        if (c + 16 <= hd) {
            mvmoe_simd_tile_combo(d0 + c, d1 ? d1 + c : NULL, c0, c1, cs, rows + c, ld, cnt, accumulate, 2);
            c += 16;
        }
        if (c + 8 <= hd)
            mvmoe_simd_tile_combo(d0 + c, d1 ? d1 + c : NULL, c0, c1, cs, rows + c, ld, cnt, accumulate, 1);
        return;
    }
#endif
    for (int r = 0; r < (d1 ? 2 : 1); r++) {
        float *d = r ? d1 : d0;
        const float *cf = r ? c1 : c0;
        if (!accumulate)
            for (int c = 0; c < hd; c++) d[c] = 0.0f;
        for (int n = 0; n < cnt; n++) {
            const float w = cf[n * cs], *row = rows + n * ld;
            for (int c = 0; c < hd; c++) d[c] += w * row[c];
        }
    }
}

/* S[i, j] = scale · a_i · b_j for i < Tq, j < T; a_i, b_j rows of hd floats at strides lda,
 * ldb; S rows at stride T. `tile` holds ATT_TILE floats. */
static void att_scores(float *S, const float *a, size_t lda, const float *bm, size_t ldb, int Tq,
                       int T, int hd, float scale, float *tile) {
#if MVMOE_SIMD_TILES
    const int jb = (ATT_TILE / hd) & ~7; /* keys per tile block, a multiple of 8 */
    if (jb >= 8) {
        for (int j0 = 0; j0 < T; j0 += jb) {
            const int nj = T - j0 < jb ? T - j0 : jb, njp = (nj + 7) & ~7;
            for (int j = 0; j < njp; j++) { /* tile[c][j] = b[j0 + j][c], zero padded */
                const float *br = bm + (size_t)(j0 + j) * ldb;
                for (int c = 0; c < hd; c++) tile[(size_t)c * njp + j] = j < nj ? br[c] : 0.0f;
            }
            int i = 0;
            for (; i + 2 <= Tq; i += 2) {
                float *s0 = S + (size_t)i * T + j0, *s1 = s0 + T;
                const float *a0 = a + (size_t)i * lda, *a1 = a0 + lda;
                int j = 0;
                for (; j + 32 <= njp; j += 32)
                    mvmoe_simd_tile_score2(s0 + j, s1 + j, a0, a1, tile + j, njp, hd, scale, nj - j, 4);
                if (j + 16 <= njp) {
                    mvmoe_simd_tile_score2(s0 + j, s1 + j, a0, a1, tile + j, njp, hd, scale, nj - j, 2);
                    j += 16;
                }
                if (j < njp) mvmoe_simd_tile_score2(s0 + j, s1 + j, a0, a1, tile + j, njp, hd, scale, nj - j, 1);
            }
            if (i < Tq) {
                float *s0 = S + (size_t)i * T + j0;
                const float *a0 = a + (size_t)i * lda;
                int j = 0;
                for (; j + 32 <= njp; j += 32) mvmoe_simd_tile_score1(s0 + j, a0, tile + j, njp, hd, scale, nj - j, 4);
                for (; j < njp; j += 8) mvmoe_simd_tile_score1(s0 + j, a0, tile + j, njp, hd, scale, nj - j, 1);
            }
        }
        return;
    }
#endif
    (void)tile;
    for (int i = 0; i < Tq; i++)
        for (int j = 0; j < T; j++)
            S[(size_t)i * T + j] = scale * mvmoe_simd_dot(a + (size_t)i * lda, bm + (size_t)j * ldb, hd);
}

/* ---------------------------------------------------------------- fast: per (b, h) pair */

/* Where oneDNN's sgemm (mvmoe_gemm_serial, single-threaded inside our loops) beats the tile
 * kernels above, measured on one core (docs/PERFORMANCE.md §2.6): for the products over the
 * key index (A·V, dS·K, dSᵀ·Q, Aᵀ·dO) at every head width once a pair has 8 query rows (at
 * T = 50, hd = 16 in less than half the tile kernel's time), and for the hd-deep products
 * (Q·Kᵀ, dO·Vᵀ) from hd = 32 on (at hd = 64 about twice the AVX2 tile kernel's speed; at
 * hd = 16 sgemm's fixed cost makes it no faster). The choice depends only on the shapes, never
 * on the thread count. */
#define ATT_GEMM_MIN_HD 32
/* Longest sequence the AVX-512 hd = 64 kernels take (attention_avx512.c; longer ones, like
 * ViT-Tiny's T = 197, keep sgemm, which is efficient there) */
#define ATT_HD64_MAX_T 80
#if defined(__x86_64__) && defined(__GNUC__)
/* Whether a pair of this shape runs the AVX-512 hd = 64 kernels (forward and backward alike). */
static int att_hd64_avx512(int hd, int T) { return hd == 64 && T <= ATT_HD64_MAX_T && mvmoe_isa_width() == 512; }
#endif
#define ATT_GEMM_MIN_ROWS 8

/* Each row of A[rows, T] replaced by its softmax (stable: the row max is subtracted first).
 * The AVX-512 version gives the same bits (attention_avx512.c). */
static void softmax_rows(float *A, int rows, int T) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (mvmoe_isa_width() == 512) {
        mvmoe_softmax_rows_avx512(A, rows, T);
        return;
    }
#endif
    for (int i = 0; i < rows; i++) {
        float *row = A + (size_t)i * T;
        float m = mvmoe_simd_max(row, T);
        float sum = mvmoe_simd_exp_shift_sum(row, row, m, T);
        mvmoe_simd_scale(row, 1.0f / sum, T);
    }
}

/* Query rows [i0, i1) of the first nq of image b, head h; their probabilities go to A[i1-i0, T],
 * output rows at out + b·nq·D. Every row is computed the same way whatever the block. */
static void att_forward_block(float *out, float *A, const float *qkv, int b, int h, int T,
                              int nq, int D, int NH, int i0, int i1) {
    _Alignas(32) float tile[ATT_TILE];
    const int hd = D / NH, nr = i1 - i0;
    const size_t ld = (size_t)3 * D;
    const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
    float *o = out + ((size_t)b * nq + i0) * D + (size_t)h * hd;
    q += (size_t)i0 * ld;
    const float scale = 1.0f / sqrtf((float)hd);
    const int small = hd == 16 && T <= 64; /* see attention_avx512.c */
#if defined(__x86_64__) && defined(__GNUC__)
    if (small && mvmoe_isa_width() == 512) {
        mvmoe_attention_small_avx512(o, (size_t)D, A, q, k, v, ld, T, nr, scale);
        return;
    }
    if (att_hd64_avx512(hd, T)) {
        mvmoe_attention_hd64_forward_avx512(o, (size_t)D, A, q, k, v, ld, T, nr, scale);
        return;
    }
#endif
    if (hd >= ATT_GEMM_MIN_HD)
        mvmoe_gemm_serial('N', 'T', nr, T, hd, scale, q, (int)ld, k, (int)ld, 0.0f, A, T);
    else
        att_scores(A, q, ld, k, ld, nr, T, hd, scale, tile);
    softmax_rows(A, nr, T);
    if (nq >= ATT_GEMM_MIN_ROWS && !small) { /* O = A·V */
        mvmoe_gemm_serial('N', 'N', nr, hd, T, 1.0f, A, T, v, (int)ld, 0.0f, o, D);
        return;
    }
    /* o_i = Σ_j A_ij v_j, two rows at a time, each summed in key order (the fused AVX-512
     * block's order too). An odd last row is computed as a pair with itself, into the tile
     * (free by now), so a row's bits never depend on which block or pair it fell in. */
    int i = 0;
    for (; i + 2 <= nr; i += 2)
        att_combo(o + (size_t)i * D, o + (size_t)(i + 1) * D, A + (size_t)i * T,
                  A + (size_t)(i + 1) * T, 1, v, ld, T, hd, 0);
    if (i < nr)
        att_combo(o + (size_t)i * D, hd <= ATT_TILE ? tile : NULL, A + (size_t)i * T,
                  A + (size_t)i * T, 1, v, ld, T, hd, 0);
}

/* Backward of att_forward_block for the first nq query rows of a pair (dout [nq rows per
 * image], att and datt [nq, T] per pair); keys and values get the gradient from those rows only. */
static void att_backward_pair(float *dqkv, float *datt, const float *dout, const float *att,
                              const float *qkv, int b, int h, int T, int nq, int D, int NH, int acc) {
    _Alignas(32) float tile[ATT_TILE];
    const int hd = D / NH;
    const size_t ld = (size_t)3 * D, off = (size_t)b * T * ld + (size_t)h * hd;
    const float *q = qkv + off, *k = q + D, *v = q + 2 * D;
    float *dq = dqkv + off, *dk = dq + D, *dv = dq + 2 * D;
    const float *dO = dout + (size_t)b * nq * D + (size_t)h * hd;
    const float *A = att + ((size_t)b * NH + h) * nq * T;
    float *dS = datt + ((size_t)b * NH + h) * nq * T;
    const float scale = 1.0f / sqrtf((float)hd);
    /* acc 0: every product below overwrites (beta 0, or a combo's sum stored as it is: the
     * bits of adding it to zeros); only q rows that no query row reaches need zeros */
    const float beta = acc ? 1.0f : 0.0f;
    if (!acc)
        for (int t = nq; t < T; t++)
            for (int c = 0; c < hd; c++) dq[t * ld + c] = 0.0f;
#if defined(__x86_64__) && defined(__GNUC__)
    if (att_hd64_avx512(hd, T)) {
        mvmoe_attention_hd64_backward_avx512(dq, dk, dv, ld, dS, dO, (size_t)D, A, q, k, v, T, nq, scale, acc);
        return;
    }
#endif

    if (hd >= ATT_GEMM_MIN_HD) /* dA = dO·Vᵀ */
        mvmoe_gemm_serial('N', 'T', nq, T, hd, 1.0f, dO, D, v, (int)ld, 0.0f, dS, T);
    else
        att_scores(dS, dO, (size_t)D, v, ld, nq, T, hd, 1.0f, tile);
    for (int i = 0; i < nq; i++) { /* dS = A ⊙ (dA - rowsum(dA ⊙ A)), times 1/√hd */
        float *ds = dS + (size_t)i * T;
        const float *a = A + (size_t)i * T;
        const float r = mvmoe_simd_dot(ds, a, T);
        for (int j = 0; j < T; j++) ds[j] = a[j] * (ds[j] - r) * scale;
    }
    if (nq >= ATT_GEMM_MIN_ROWS) {
        const int l = (int)ld;
        mvmoe_gemm_serial('N', 'N', nq, hd, T, 1.0f, dS, T, k, l, beta, dq, l);  /* dQ += dS·K */
        mvmoe_gemm_serial('T', 'N', T, hd, nq, 1.0f, dS, T, q, l, beta, dk, l);  /* dK += dSᵀ·Q */
        mvmoe_gemm_serial('T', 'N', T, hd, nq, 1.0f, A, T, dO, D, beta, dv, l);  /* dV += Aᵀ·dO */
        return;
    }
    int i = 0; /* dq_i += Σ_j dS_ij k_j */
    for (; i + 2 <= nq; i += 2)
        att_combo(dq + i * ld, dq + (i + 1) * ld, dS + (size_t)i * T, dS + (size_t)(i + 1) * T, 1,
                  k, ld, T, hd, acc);
    if (i < nq) att_combo(dq + i * ld, NULL, dS + (size_t)i * T, NULL, 1, k, ld, T, hd, acc);
    /* dk_j += Σ_{i<nq} dS_ij q_i ; dv_j += Σ_{i<nq} A_ij dO_i (columns: coefficient stride T) */
    int j = 0;
    for (; j + 2 <= T; j += 2) {
        att_combo(dk + j * ld, dk + (j + 1) * ld, dS + j, dS + j + 1, (size_t)T, q, ld, nq, hd, acc);
        att_combo(dv + j * ld, dv + (j + 1) * ld, A + j, A + j + 1, (size_t)T, dO, (size_t)D, nq,
                  hd, acc);
    }
    if (j < T) {
        att_combo(dk + j * ld, NULL, dS + j, NULL, (size_t)T, q, ld, nq, hd, acc);
        att_combo(dv + j * ld, NULL, A + j, NULL, (size_t)T, dO, (size_t)D, nq, hd, acc);
    }
}

/* The forward's tasks: B·NH pairs, each split into `blocks` blocks of query rows. With few
 * pairs (batch 1: ViT-Tiny has 3 heads for 2 threads) threads would idle: then the query rows
 * are split too, into about 2 tasks per thread (4 were slower on ViT-Tiny's batch 1, twice the
 * sgemm calls of half the rows: docs/PERFORMANCE.md §4). Rows are independent and every block
 * has at least 16 rows (see MIN_SLICE_ROWS in linear_sgemm.c), so the result does not depend
 * on the blocks. */
static int att_blocks(int pairs, int nq, int nt) {
    int blocks = 1;
    if (nt > 1 && pairs < 2 * nt && nq >= 32) {
        blocks = (2 * nt + pairs - 1) / pairs;
        while (blocks < nq / 16 && (pairs * blocks) % nt) blocks++; /* equal shares: 3 x 2 = 6 */
        if (blocks > nq / 16) blocks = nq / 16;
    }
    return blocks;
}

/* The tasks of the forward, shared out by an orphaned `omp for` among the threads of the
 * enclosing parallel region (run alone when there is none). */
static void att_forward_tasks(float *out, float *att, const float *qkv, int B, int T, int D, int NH,
                              int nq, int blocks) {
    const int tasks = B * NH * blocks;
    const unsigned csr = mvmoe_simd_ftz_begin();
#pragma omp for schedule(static) nowait
    for (int t = 0; t < tasks; t++) {
        const int p = t / blocks, blk = t % blocks;
        const int i0 = (int)((long long)nq * blk / blocks), i1 = (int)((long long)nq * (blk + 1) / blocks);
        att_forward_block(out, att + ((size_t)p * nq + i0) * T, qkv, p / NH, p % NH, T, nq, D, NH,
                          i0, i1);
    }
    mvmoe_simd_ftz_end(csr);
#pragma omp barrier
}

void mvmoe_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int NH,
                             int nq, mvmoe_team team) {
    if (team == MVMOE_TEAM_CALLER) {
        att_forward_tasks(out, att, qkv, B, T, D, NH, nq, att_blocks(B * NH, nq, omp_get_num_threads()));
        return;
    }
    const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    const int blocks = att_blocks(B * NH, nq, nt);
#pragma omp parallel if (nt > 1 && B * NH * blocks > 1)
    att_forward_tasks(out, att, qkv, B, T, D, NH, nq, blocks);
}

void mvmoe_attention_backward(float *dqkv, float *datt, const float *dout, const float *att,
                              const float *qkv, int B, int T, int D, int NH, int nq,
                              mvmoe_grad_write dqkv_write) {
    if (!dqkv) return;
    const int pairs = B * NH, acc = dqkv_write != MVMOE_GRAD_OVERWRITE;
#pragma omp parallel if (pairs > 1)
    {
        const unsigned csr = mvmoe_simd_ftz_begin();
#pragma omp for schedule(static)
        for (int p = 0; p < pairs; p++)
            att_backward_pair(dqkv, datt, dout, att, qkv, p / NH, p % NH, T, nq, D, NH, acc);
        mvmoe_simd_ftz_end(csr);
    }
}
