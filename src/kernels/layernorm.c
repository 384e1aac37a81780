/* LayerNorm over the last dimension (Ba, Kiros & Hinton 2016), as torch.nn.LayerNorm:
 * y = (x - mean)·rstd·w + b, biased variance, rstd = 1/sqrt(var + eps).
 *
 * Backward, with x̂ = (x - mean)·rstd and g = dy·w (per row of D elements):
 *   dx = rstd·(g - mean(g) - x̂·mean(g·x̂)),  dw = Σ_rows dy·x̂,  db = Σ_rows dy.
 * The fast backward sums dw/db over fixed row ranges in the same pass as dx (rows up to
 * LN_FUSED_MAX_D wide), or else in a separate pass parallel over column blocks; either way
 * every sum runs in an order fixed by M and D alone: results do not depend on the thread count
 * (bit-identical resume) and need no heap scratch. */
#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

/* dw/db of rows up to LN_FUSED_MAX_D wide are summed in the dx pass, over LN_PARTS fixed row
 * ranges (double partials on the stack: 16 x 2 x 384 x 8 = 96 KiB), added in order afterwards.
 * Measured against the separate column-block pass below: see the commit. */
#define LN_PARTS 16
#define LN_FUSED_MAX_D 384
/* Columns per dw/db block of the separate pass: 16 floats = one 64-byte cache line per row. */
#define LN_COL_BLOCK 16
/* Below this many elements a parallel region costs more than the work. */
#define LN_PAR_MIN 16384

/* ---------------------------------------------------------------- reference (double) */

void mvmoe_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *in,
                                 const float *w, const float *b, int M, int D, float eps) {
    for (int r = 0; r < M; r++) {
        const float *x = in + (size_t)r * D; /* x[D] */
        float *y = out + (size_t)r * D;      /* y[D] */
        double m = 0.0, v = 0.0;
        for (int c = 0; c < D; c++) m += x[c];
        m /= D;
        for (int c = 0; c < D; c++) v += (x[c] - m) * (x[c] - m);
        v /= D;
        double rs = 1.0 / sqrt(v + (double)eps);
        for (int c = 0; c < D; c++) y[c] = (float)((x[c] - m) * rs * w[c] + b[c]);
        mean[r] = (float)m;
        rstd[r] = (float)rs;
    }
}

void mvmoe_layernorm_backward_ref(float *din, float *dw, float *db, const float *dout,
                                  const float *mean, const float *rstd, const float *in,
                                  const float *w, int M, int D) {
    for (int r = 0; r < M; r++) {
        const float *x = in + (size_t)r * D, *dy = dout + (size_t)r * D; /* [D] each */
        double m = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0; /* Σ g, Σ g·x̂ */
        for (int c = 0; c < D; c++) {
            double xh = (x[c] - m) * rs, g = (double)dy[c] * w[c];
            sg += g;
            sgx += g * xh;
        }
        if (din) {
            float *dx = din + (size_t)r * D;
            for (int c = 0; c < D; c++) {
                double xh = (x[c] - m) * rs, g = (double)dy[c] * w[c];
                dx[c] = (float)(dx[c] + rs * (g - sg / D - xh * sgx / D));
            }
        }
    }
    for (int c = 0; c < D; c++) { /* dw[D], db[D]: sums over the M rows, in double */
        double aw = 0.0, ab = 0.0;
        for (int r = 0; r < M; r++) {
            size_t i = (size_t)r * D + c;
            aw += (double)dout[i] * ((in[i] - (double)mean[r]) * rstd[r]);
            ab += dout[i];
        }
        if (dw) dw[c] = (float)(dw[c] + aw);
        if (db) db[c] = (float)(db[c] + ab);
    }
}

/* ---------------------------------------------------------------- fast */

/* One row: y[D] = LayerNorm(x[D]); its mean and rstd to *mean, *rstd. */
static inline void ln_row_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                                  const float *b, int D, float eps) {
    float m = mvmoe_simd_sum(x, D) / (float)D;
    float var = mvmoe_simd_sqdev(x, m, D) / (float)D; /* two-pass: no cancellation */
    float rs = 1.0f / sqrtf(var + eps);
    for (int c = 0; c < D; c++) y[c] = (x[c] - m) * rs * w[c] + b[c];
    *mean = m;
    *rstd = rs;
}

void mvmoe_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                             const float *b, int M, int D, float eps) {
    const int par = (size_t)M * D >= LN_PAR_MIN && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < M; r++)
        ln_row_forward(out + (size_t)r * D, mean + r, rstd + r, in + (size_t)r * D, w, b, D, eps);
}

/* The residual add and the LayerNorm that reads its result, in one pass over the rows: each
 * row is normalized while it is still in L1, and the block saves a fork-join. */
void mvmoe_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                      const float *x, const float *br, const float *bias,
                                      const float *keep, int T, int r0, const float *w,
                                      const float *b, int M, int D, float eps) {
    const int par = (size_t)M * D >= LN_PAR_MIN && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < M; r++) {
        const size_t base = (size_t)r * D;
        mvmoe_residual_row(res + base, x + base, br + base, bias, keep[(r0 + r) / T], D);
        ln_row_forward(out + base, mean + r, rstd + r, res + base, w, b, D, eps);
    }
}

/* Σ g and Σ g·x̂ of one row with 8 independent partial sums (vectorizable without
 * reassociation flags). */
static void ln_row_sums(const float *x, const float *dy, const float *w, float m, float rs, int D,
                        float *sg_out, float *sgx_out) {
    float sg[8], sgx[8];
    int c = mvmoe_simd_ln_row_sums8(sg, sgx, x, dy, w, m, rs, D);
    float a = ((sg[0] + sg[1]) + (sg[2] + sg[3])) + ((sg[4] + sg[5]) + (sg[6] + sg[7]));
    float bb = ((sgx[0] + sgx[1]) + (sgx[2] + sgx[3])) + ((sgx[4] + sgx[5]) + (sgx[6] + sgx[7]));
    for (; c < D; c++) {
        float g = dy[c] * w[c], xh = (x[c] - m) * rs;
        a += g;
        bb += g * xh;
    }
    *sg_out = a;
    *sgx_out = bb;
}

/* dx row r (+= the LayerNorm backward of dy). */
static inline void ln_row_backward(float *dx, const float *x, const float *dy, const float *w, float m,
                                   float rs, int D) {
    float sg, sgx;
    ln_row_sums(x, dy, w, m, rs, D, &sg, &sgx);
    const float mg = sg / (float)D, mgx = sgx / (float)D;
    for (int c = 0; c < D; c++) {
        float xh = (x[c] - m) * rs;
        dx[c] += rs * (dy[c] * w[c] - mg - xh * mgx);
    }
}

void mvmoe_layernorm_backward(float *din, float *dw, float *db, const float *dout,
                              const float *mean, const float *rstd, const float *in,
                              const float *w, int M, int D) {
    const int par = (size_t)M * D >= LN_PAR_MIN;
    if ((dw || db) && D <= LN_FUSED_MAX_D) {
        /* one pass: each of LN_PARTS fixed row ranges sums its rows' dw/db terms (in double)
         * while the row is in L1 for dx; the partials are then added in order */
        double part[LN_PARTS][2][LN_FUSED_MAX_D];
#pragma omp parallel for schedule(static) if (par)
        for (int s = 0; s < LN_PARTS; s++) {
            const int r0 = (int)((long long)M * s / LN_PARTS), r1 = (int)((long long)M * (s + 1) / LN_PARTS);
            double *aw = part[s][0], *ab = part[s][1];
            for (int c = 0; c < D; c++) aw[c] = ab[c] = 0.0;
            for (int r = r0; r < r1; r++) {
                const float *x = in + (size_t)r * D, *dy = dout + (size_t)r * D;
                const float m = mean[r], rs = rstd[r];
                if (din) ln_row_backward(din + (size_t)r * D, x, dy, w, m, rs, D);
                for (int c = 0; c < D; c++) {
                    aw[c] += (double)(dy[c] * ((x[c] - m) * rs));
                    ab[c] += (double)dy[c];
                }
            }
        }
        for (int c = 0; c < D; c++) {
            double aw = part[0][0][c], ab = part[0][1][c];
            for (int s = 1; s < LN_PARTS; s++) aw += part[s][0][c], ab += part[s][1][c];
            if (dw) dw[c] += (float)aw;
            if (db) db[c] += (float)ab;
        }
        return;
    }
    if (din) {
#pragma omp parallel for schedule(static) if (par)
        for (int r = 0; r < M; r++)
            ln_row_backward(din + (size_t)r * D, in + (size_t)r * D, dout + (size_t)r * D, w, mean[r],
                            rstd[r], D);
    }
    if (dw || db) { /* wide rows: dw/db in a pass of their own, by column blocks */
        const int nblk = (D + LN_COL_BLOCK - 1) / LN_COL_BLOCK;
#pragma omp parallel for schedule(static) if (par)
        for (int k = 0; k < nblk; k++) {
            const int c0 = k * LN_COL_BLOCK;
            const int nc = D - c0 < LN_COL_BLOCK ? D - c0 : LN_COL_BLOCK;
            /* double accumulators: M (= batch·tokens) can be tens of thousands of rows */
            double aw[LN_COL_BLOCK] = {0}, ab[LN_COL_BLOCK] = {0};
            if (nc == 16) {
                mvmoe_simd_ln_col16_sums(aw, ab, in + c0, dout + c0, mean, rstd, M, D);
            } else
            for (int r = 0; r < M; r++) {
                const float *x = in + (size_t)r * D + c0, *dy = dout + (size_t)r * D + c0;
                const float m = mean[r], rs = rstd[r];
                for (int l = 0; l < nc; l++) {
                    aw[l] += (double)(dy[l] * ((x[l] - m) * rs));
                    ab[l] += (double)dy[l];
                }
            }
            for (int l = 0; l < nc; l++) {
                if (dw) dw[c0 + l] += (float)aw[l];
                if (db) db[c0 + l] += (float)ab[l];
            }
        }
    }
}
