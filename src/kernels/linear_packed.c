/* The packed backend of the linear layers (linear.c chooses it when a packed copy exists and
 * the bf16 products are off for the shape): forward products with the weights packed ahead of
 * time, through oneDNN's matmul primitive (its brgemm kernels on AVX-512).
 *
 * Why: an sgemm call packs its weight operand into oneDNN's blocked layout on every call, and
 * its kernels run below the primitive's: measured on one core (docs/PERFORMANCE.md §2.3), the
 * primitive on packed weights was faster than sgemm on every product we timed (ViT-Tiny's and
 * 12x64's, one thread's rows) and came close to the core's FMA peak. The model packs its
 * weights once per change (model.c, mvmoe_model_pack_weights): for inference once, in training
 * once per step, a pass over the weights that costs far less than it saves (training is faster
 * with it, §2.3).
 *
 * Threads and bits: like gemm_rows in linear_sgemm.c, the rows of out are split between our threads,
 * each running one single-threaded primitive on its slice (oneDNN runs single-threaded inside
 * an active parallel region). A primitive is made per row count (the fastest kernels need M
 * fixed), all with the one weight layout of their (N, K), and each row of out is computed
 * the same way whatever the slice: checked bit by bit for slices of 1..120 rows, and by
 * test_linear for 1 and 2 threads. Primitives, layouts, streams and scratchpads live in
 * onednn.c. A slice oneDNN cannot run here is computed by one serial sgemm on the plain weights,
 * which the caller always passes too; a whole call it cannot run is left to the dispatcher. */
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/linear_backend.h"
#include "kernels/onednn.h"

/* Products smaller than this many multiply-adds run on one thread (as in linear_sgemm.c). */
#define SPLIT_MIN_MACS (64 * 64 * 64)

/* Makes the primitive of r's key: M rows of (N, K) on the packed layout, with a bias if
 * r->flag. -1 (not cached) if (N, K) has no packed layout; 0 if oneDNN offers nothing but its
 * reference code for it. */
static int make_packed(mvmoe_onednn_prim *r, dnnl_engine_t eng, const void *ctx) {
    (void)ctx;
    const mvmoe_onednn_layout *L = mvmoe_onednn_layout_of(r->N, r->K);
    if (!L || !L->ok) return -1;
    const int M = r->M, N = r->N, K = r->K;
    dnnl_dims_t sd = {M, K}, dd = {M, N}, bd = {1, N};
    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_matmul_desc_t mm;
    dnnl_primitive_attr_t attr = NULL;
    const char *impl = "";
    int ok = 0;
    if (dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_matmul_desc_init(&mm, &smd, &L->md, r->flag ? &bmd : NULL, &dmd) == dnnl_success &&
        dnnl_primitive_attr_create(&attr) == dnnl_success &&
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
        dnnl_primitive_desc_create(&r->pd, &mm, attr, eng, NULL) == dnnl_success &&
        dnnl_primitive_desc_query(r->pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
        !strstr(impl, "ref") && dnnl_primitive_create(&r->p, r->pd) == dnnl_success) {
        const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(r->pd, dnnl_query_scratchpad_md, 0);
        r->scratch = s ? dnnl_memory_desc_get_size(s) : 0;
        r->w_padded = dnnl_memory_desc_get_size(&L->md) != (size_t)N * K * sizeof(float);
        ok = 1;
    }
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

/* out[M,N] = in[M,K]·wᵀ (+ b) on the calling thread from the packed weights: 0, or -1 having
 * written nothing (no primitive or stream for it). */
static int packed_rows(float *out, const float *in, const void *wp, const float *b, int M, int K, int N) {
    if (M <= 0 || N <= 0) return 0;
    const mvmoe_onednn_prim key = {.owner = MVMOE_ONEDNN_PACKED, .M = M, .N = N, .K = K, .flag = b != NULL};
    const mvmoe_onednn_prim *r = mvmoe_onednn_prim_get(&key, make_packed, NULL);
    if (!r) return -1;
    const void *h[4] = {in, wp, b, out};
    const int rc = mvmoe_onednn_run(r, h);
    if (rc == -2) {
        fprintf(stderr, "mvmoe: internal error: oneDNN matmul (M=%d N=%d K=%d) failed (%s:%d); "
                "please report this\n", M, N, K, __FILE__, __LINE__);
        abort();
    }
    return rc;
}

size_t mvmoe_linear_packed_bytes(int N, int K) {
    const mvmoe_onednn_layout *L = mvmoe_onednn_layout_of(N, K);
    return L && L->ok ? L->bytes : 0;
}

int mvmoe_linear_packed_pack(void *dst, const float *w, int N, int K) {
    const mvmoe_onednn_layout *L = mvmoe_onednn_layout_of(N, K);
    return L && L->ok ? mvmoe_onednn_reorder(dst, w, L) : -1;
}

int mvmoe_linear_packed_forward(float *out, const float *in, const void *wp, const float *w,
                                const float *b, int M, int K, int N) {
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > M) nt = M;
    if ((double)M * N * K < SPLIT_MIN_MACS || nt < 1) nt = 1;
    if (nt == 1) return packed_rows(out, in, wp, b, M, K, N);
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int m0 = (int)((long long)M * t / n), m1 = (int)((long long)M * (t + 1) / n);
        float *o = out + (size_t)m0 * N;
        const float *x = in + (size_t)m0 * K;
        if (packed_rows(o, x, wp, b, m1 - m0, K, N)) /* this slice on the plain weights */
            mvmoe_sgemm_forward_serial(o, N, x, K, w, b, m1 - m0, K, N);
    }
    return 0;
}
