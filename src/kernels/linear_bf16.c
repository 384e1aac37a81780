/* The bf16 backend of the linear layers (linear.c chooses it while the mode is on): opt-in bf16
 * products, the layers' linear products with both operands rounded to bfloat16
 * (round to nearest even) and the sums kept in fp32, on oneDNN's AMX / AVX-512 BF16 matmul
 * kernels. Switched on for the whole process by mvmoe_set_precision(MVMOE_PRECISION_BF16)
 * (`--precision bf16`); off by default.
 *
 * Why: on cores with AMX-BF16, oneDNN's bf16 kernels run the model's products several times
 * faster than its fp32 AVX-512 brgemm (measured on 12x192's fc1, fc2, qkv and weight-gradient
 * products, one thread's rows: docs/PERFORMANCE.md §2.8), and these products are most of a
 * 12x192 training step in fp32 (§2.8, §2.10), so they are where bf16 pays; the rest of the
 * step stays fp32.
 *
 * What changes: an operand keeps 8 significant bits, so results are not fp32's and parity
 * with PyTorch (fp32) no longer holds to float tolerance. That is why the mode is opt-in,
 * never the default, and why its accuracy on real data is measured (docs/PERFORMANCE.md).
 *
 * Which products: the forward products that have a packed copy of their weights (patch
 * embedding, qkv, proj, fc1, fc2, experts; the packed copy is then the bf16 weights), and the
 * input- and weight-gradient products of mvmoe_linear_backward. Attention's
 * products, the last block's class-row forwards and the head's forward stay fp32, as do bias
 * gradients and everything that is not a product. Products whose weight has fewer than
 * BF16_MIN_WEIGHTS elements (linear.c) stay fp32 (their packed copy then stays fp32's): the rounding passes
 * would cost more than they save. The choice depends on the weight's shape only, never on the
 * rows of a call, so a product's precision does not change with how its rows are cut.
 *
 * Layouts: every operand is used in its row-major form, no transposes: the forward reads w[N,K]
 * as [K,N] (oneDNN tag ba), the input gradient reads it as [N,K] (ab), and the weight
 * gradient dw[N,K] = doutᵀ·in reads dout[M,N] as [N,M] through strides {1, N}. The rounded
 * copies live in buffers made on first use and grown, never freed (like oneDNN's scratchpads):
 * per thread for the forward's input rows, shared for the backward's operands. */
#include <dnnl.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/linear_backend.h"
#include "kernels/onednn.h"

#define MAX_THREADS 64
/* The rows of dw are cut into this many fixed parts, one product each, shared by the threads:
 * oneDNN's sums over the M rows depend on the part's shape (measured: the halves of 2 threads
 * gave other bits than 1 thread's whole), so the parts may not follow the thread count. Two
 * suit a 2-core machine; more parts ran slower on 12x192's shapes (docs/PERFORMANCE.md §4). */
#define DW_PARTS 2
/* Rows per product: a primitive is made per row count (the fast kernels fix M), so the rows
 * of a call are cut into blocks of BLOCK_ROWS and one last block, which runs padded to a
 * multiple of 16 rows (rows_product). Whatever M the calls bring (an expert's rows change
 * every step), at most 32 row counts per shape get a primitive (~100 KB each; 48 for the
 * weight gradient's sums, sum_rows), well within MVMOE_ONEDNN_OWNER_PRIMS. BLOCK_ROWS input
 * rows rounded to bf16 also stay in L2. */
#define BLOCK_ROWS 512

enum { FWD, DIN, DW };

/* The size of the next block of `left` rows (see BLOCK_ROWS). */
static int block_rows(int left) { return left >= BLOCK_ROWS ? BLOCK_ROWS : left; }

/* The same for the weight gradient's sum over rows, which needs no padding (its blocks do
 * not follow the threads): BLOCK_ROWS, then a multiple of 16, then fewer than 16. */
static int sum_rows(int left) { return left >= BLOCK_ROWS ? BLOCK_ROWS : left >= 16 ? left / 16 * 16 : left; }

static int rows_product(int kind, int mc, int N, int K, int flag, const uint16_t *src, int src_padded,
                        const uint16_t *wei, const float *bias, float *dst);

/* per-thread buffers: rounded input rows (forward), a padded block's source and destination */
static void *thread_buf[MAX_THREADS][3];
static size_t thread_buf_n[MAX_THREADS][3];
/* the backward's rounded operands: dout [M,N], in [M,K], w [N,K] */
static uint16_t *bwd_buf;
static size_t bwd_buf_n;

/* Makes the primitive of r's key (kind, M, N, K, ld, flag): dst[M,N] = src[M,K]·wei[K,N],
 * src bf16 at row stride ld, FWD: flag = with bias; DIN, DW: flag = accumulate into dst.
 * 0 if oneDNN has only its reference code for it. */
static int make_bf16(mvmoe_onednn_prim *r, dnnl_engine_t eng, const void *ctx) {
    (void)ctx;
    const int kind = r->kind, M = r->M, N = r->N, K = r->K, ld = r->ld, flag = r->flag;
    dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N}, bd = {1, N};
    dnnl_dims_t sstr = {ld, 1};
    if (kind == DW) sstr[0] = 1, sstr[1] = ld; /* src[i,j] = dout[j·ld + i] */
    dnnl_memory_desc_t smd, wmd, dmd, bmd;
    dnnl_matmul_desc_t mm;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    const char *impl = "";
    int ok = dnnl_memory_desc_init_by_strides(&smd, 2, sd, dnnl_bf16, sstr) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_bf16, kind == FWD ? dnnl_ba : dnnl_ab) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab) == dnnl_success &&
             dnnl_matmul_desc_init(&mm, &smd, &wmd, kind == FWD && flag ? &bmd : NULL, &dmd) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && kind != FWD && flag)
        ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&r->pd, &mm, attr, eng, NULL) == dnnl_success &&
         dnnl_primitive_desc_query(r->pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
         !strstr(impl, "ref") && dnnl_primitive_create(&r->p, r->pd) == dnnl_success;
    if (ok) {
        const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(r->pd, dnnl_query_scratchpad_md, 0);
        r->scratch = s ? dnnl_memory_desc_get_size(s) : 0;
    }
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

/* The primitive of (kind, M, N, K, ld, flag) (see make_bf16), NULL if unavailable. */
static const mvmoe_onednn_prim *prim_of(int kind, int M, int N, int K, int ld, int flag) {
    const mvmoe_onednn_prim key = {.owner = MVMOE_ONEDNN_BF16, .kind = kind, .M = M, .N = N, .K = K,
                                   .ld = ld, .flag = flag};
    return mvmoe_onednn_prim_get(&key, make_bf16, NULL);
}

/* Runs r on this thread: src, weights (bf16), bias (may be NULL), dst (f32). 0 or -1. */
static int run(const mvmoe_onednn_prim *r, const void *src, const void *wei, const float *bias, float *dst) {
    const void *h[4] = {src, wei, bias, dst};
    const int rc = mvmoe_onednn_run(r, h);
    if (rc == -2) {
        fprintf(stderr, "mvmoe: internal error: oneDNN bf16 matmul (M=%d N=%d K=%d) failed (%s:%d); "
                "please report this\n", r->M, r->N, r->K, __FILE__, __LINE__);
        abort();
    }
    return rc;
}

/* Grows *p to at least `bytes` (64-byte aligned); NULL if it cannot be had. */
static void *grow(void **p, size_t *have, size_t bytes) {
    if (*have < bytes) {
        free(*p);
        *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
        *have = *p ? bytes : 0;
    }
    return *p;
}

/* The calling thread's buffer `which` (0: rounded input rows, 1 and 2: a padded block's
 * source and destination) of at least `bytes`, NULL if it cannot be had. */
static void *thread_buffer(int which, size_t bytes) {
    const int t = omp_get_thread_num();
    return t < MAX_THREADS ? grow(&thread_buf[t][which], &thread_buf_n[t][which], bytes) : NULL;
}

/* dst[mc, N] (+)= src[mc, K]·wei (+ bias) on this thread, for FWD or DIN (src bf16, rows at
 * stride K; src_padded: src already holds zeros up to the next multiple of 16 rows). A block
 * whose rows are not a multiple of 16 runs padded to one, through copies: oneDNN's kernels
 * sum a tail of fewer than 16 rows in another order (measured: din rows came out otherwise
 * on 2 threads, whose slices end in other tails), so every row gets the same arithmetic
 * whatever block it falls in, and the bits do not depend on the thread count. 0, or -1
 * (nothing written). */
static int rows_product(int kind, int mc, int N, int K, int flag, const uint16_t *src, int src_padded,
                        const uint16_t *wei, const float *bias, float *dst) {
    const int mp = (mc + 15) / 16 * 16;
    const mvmoe_onednn_prim *r = prim_of(kind, mp, N, K, K, flag);
    if (!r) return -1;
    if (mp == mc) return run(r, src, wei, bias, dst);
    float *pd = thread_buffer(2, (size_t)mp * N * sizeof *pd);
    if (!pd) return -1;
    if (!src_padded) {
        uint16_t *ps = thread_buffer(1, (size_t)mp * K * sizeof *ps);
        if (!ps) return -1;
        memcpy(ps, src, (size_t)mc * K * sizeof *ps);
        memset(ps + (size_t)mc * K, 0, (size_t)(mp - mc) * K * sizeof *ps);
        src = ps;
    }
    if (kind == DIN && flag) memcpy(pd, dst, (size_t)mc * N * sizeof *pd); /* accumulates */
    if (run(r, src, wei, bias, pd)) return -1;
    memcpy(dst, pd, (size_t)mc * N * sizeof *pd);
    return 0;
}

int mvmoe_linear_bf16_probe(void) { return prim_of(FWD, 256, 256, 256, 256, 1) ? 0 : -1; }

/* M rows on this thread: round them, one product. */
static int forward_rows(float *out, const float *in, const uint16_t *wb, const float *b, int M,
                        int K, int N) {
    if (M <= 0) return 0;
    uint16_t *x = thread_buffer(0, (size_t)(block_rows(M) + 15) / 16 * 16 * K * sizeof *x);
    if (!x) return -1;
    for (int m0 = 0, mc; m0 < M; m0 += mc) {
        mc = block_rows(M - m0);
        const int mp = (mc + 15) / 16 * 16;
        mvmoe_bf16_round(x, in + (size_t)m0 * K, (size_t)mc * K);
        memset(x + (size_t)mc * K, 0, (size_t)(mp - mc) * K * sizeof *x);
        if (rows_product(FWD, mc, N, K, b != NULL, x, 1, wb, b, out + (size_t)m0 * N)) return -1;
    }
    return 0;
}

int mvmoe_linear_bf16_forward(float *out, const float *in, const uint16_t *wb, const float *b,
                              int M, int K, int N) {
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > M) nt = M;
    if (nt <= 1) return forward_rows(out, in, wb, b, M, K, N);
    int bad = 0;
#pragma omp parallel num_threads(nt) reduction(| : bad)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int m0 = (int)((long long)M * t / n), m1 = (int)((long long)M * (t + 1) / n);
        bad |= forward_rows(out + (size_t)m0 * N, in + (size_t)m0 * K, wb, b, m1 - m0, K, N) != 0;
    }
    /* a thread that could not (no buffer) leaves its rows to the fp32 path: redo them all */
    return bad ? -1 : 0;
}

int mvmoe_linear_bf16_backward(float *din, float din_beta, float *dw, float *db, const float *dout,
                               const float *in, const float *w, int M, int K, int N) {
    if (omp_in_parallel() || M <= 0) return -1;
    const size_t need = (size_t)M * N + (size_t)M * K + (size_t)N * K;
    if (bwd_buf_n < need) {
        free(bwd_buf);
        bwd_buf = aligned_alloc(64, (need * sizeof(uint16_t) + 63) / 64 * 64);
        bwd_buf_n = bwd_buf ? need : 0;
        if (!bwd_buf) return -1;
    }
    uint16_t *gb = bwd_buf, *xb = gb + (size_t)M * N, *wb = xb + (size_t)M * K;
    /* dout rounded in the pass that sums the bias gradient (one read of dout for both) */
    mvmoe_bias_grad_round(db, gb, dout, M, N);
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int m0 = (int)((long long)M * t / n), m1 = (int)((long long)M * (t + 1) / n);
        const int n0 = (int)((long long)N * t / n), n1 = (int)((long long)N * (t + 1) / n);
        if (dw) mvmoe_bf16_round(xb + (size_t)m0 * K, in + (size_t)m0 * K, (size_t)(m1 - m0) * K);
        if (din) mvmoe_bf16_round(wb + (size_t)n0 * K, w + (size_t)n0 * K, (size_t)(n1 - n0) * K);
#pragma omp barrier
        /* din[m0:m1] (+)= dout[m0:m1]·w ; dw[c0:c0+cn] += dout[:, c0:c0+cn]ᵀ·in. A part oneDNN has
         * no bf16 kernel for (never seen) runs in fp32 instead. */
        for (int i0 = m0, ic; din && i0 < m1; i0 += ic) {
            ic = block_rows(m1 - i0);
            if (rows_product(DIN, ic, K, N, din_beta != 0.0f, gb + (size_t)i0 * N, 0, wb, NULL, din + (size_t)i0 * K))
                mvmoe_gemm_serial('N', 'N', ic, K, N, 1.0f, dout + (size_t)i0 * N, N, w, K, din_beta,
                                  din + (size_t)i0 * K, K);
        }
        if (dw) {
            /* DW_PARTS fixed parts of dw's rows, whatever the thread count */
#pragma omp for schedule(static)
            for (int c = 0; c < DW_PARTS; c++) {
                const int c0 = (int)((long long)N * c / DW_PARTS), cn = (int)((long long)N * (c + 1) / DW_PARTS) - c0;
                if (cn <= 0) continue;
                /* the sum over the M rows in blocks too, each added to dw in turn */
                for (int i0 = 0, ic; i0 < M; i0 += ic) {
                    ic = sum_rows(M - i0);
                    const mvmoe_onednn_prim *r = prim_of(DW, cn, K, ic, N, 1);
                    if (!r || run(r, gb + (size_t)i0 * N + c0, xb + (size_t)i0 * K, NULL, dw + (size_t)c0 * K))
                        mvmoe_gemm_serial('T', 'N', cn, K, ic, 1.0f, dout + (size_t)i0 * N + c0, N,
                                          in + (size_t)i0 * K, K, 1.0f, dw + (size_t)c0 * K, K);
                }
            }
        }
    }
    return 0;
}
