/* Forward linear products with the weights packed ahead of time, through oneDNN's matmul
 * primitive (its brgemm kernels on AVX-512).
 *
 * Why: an sgemm call packs its weight operand into oneDNN's blocked layout on every call, and
 * its kernels run below the primitive's: measured on one core (docs/PERFORMANCE.md, "Packed
 * weights"), 98 x 576 x 192 (ViT-Tiny's qkv at batch 1, one thread's rows) 199 -> 235
 * GFLOP/s, 3200 x 256 x 64 (12x64's fc1 at batch 128) 172 -> 224 GFLOP/s, 97 % of the core's
 * FMA peak at best. The model packs its weights once per change (model.c,
 * mvmoe_model_pack_weights): for inference once, in training once per step, a pass over the
 * weights that costs far less than it saves (12x192 training +4 %).
 *
 * Threads and bits: like gemm_rows in matmul.c, the rows of out are split between our threads,
 * each running one single-threaded primitive on its slice (oneDNN runs single-threaded inside
 * an active parallel region). A primitive is made per row count (the fastest kernels need M
 * fixed), all with the one weight layout of their (N, K), and each row of out is computed
 * the same way whatever the slice: checked bit by bit for slices of 1..120 rows, and by
 * test_linear for 1 and 2 threads. Primitives, per-thread streams and scratchpads are made on
 * first use and kept for the process (a few per shape in use); anything oneDNN cannot do here
 * falls back to the sgemm path on the plain weights, which the caller always passes too. */
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/onednn.h"

/* Rows of the primitive whose weight layout fixes the packed layout of an (N, K). */
#define PACK_REF_ROWS 256
#define MAX_LAYOUTS 64
#define MAX_PRIMS 256
#define MAX_THREADS 64
/* Products smaller than this many multiply-adds run on one thread (as in matmul.c). */
#define SPLIT_MIN_MACS (64 * 64 * 64)

typedef struct layout {
    int N, K, ok;            /* ok: packing available for this shape */
    dnnl_memory_desc_t md;   /* packed weights, logical [K, N] */
    dnnl_memory_desc_t user; /* plain weights w[N, K] row-major = logical [K, N], tag ba */
    dnnl_primitive_t reorder;
    size_t bytes;
} layout;

typedef struct prim {
    int M, N, K, bias, ok;
    int w_padded; /* the packed layout pads the weights: their memory object is made per call */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    size_t scratch;
} prim;

static dnnl_engine_t engine;
static int engine_state; /* 0 untried, 1 ok, -1 failed */
static layout layouts[MAX_LAYOUTS];
static int n_layouts;
static prim prims[MAX_PRIMS];
static int n_prims;
static dnnl_stream_t streams[MAX_THREADS];
/* Memory objects per thread and primitive (src, weights, bias, dst, scratchpad) for
 * mvmoe_onednn_matmul_execute. Only the owning thread touches its row. */
static dnnl_memory_t mems[MAX_THREADS][MAX_PRIMS][5];
static void *scratch[MAX_THREADS];
static size_t scratch_size[MAX_THREADS];

static int engine_ready(void) {
    if (!engine_state) engine_state = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success ? 1 : -1;
    return engine_state > 0;
}

dnnl_engine_t mvmoe_onednn_engine(void) {
    int ok;
#pragma omp critical(mvmoe_packed_cache)
    ok = engine_ready();
    return ok ? engine : NULL;
}

/* The layout entry of (N, K), made if new. Caller holds the cache lock. */
static layout *layout_of(int N, int K) {
    for (int i = 0; i < n_layouts; i++)
        if (layouts[i].N == N && layouts[i].K == K) return &layouts[i];
    if (n_layouts == MAX_LAYOUTS || !engine_ready()) return NULL;
    layout *L = &layouts[n_layouts++];
    memset(L, 0, sizeof *L);
    L->N = N, L->K = K;
    dnnl_dims_t sd = {PACK_REF_ROWS, K}, wd = {K, N}, dd = {PACK_REF_ROWS, N};
    dnnl_memory_desc_t smd, wany, dmd;
    dnnl_matmul_desc_t mm;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    if (dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_f32, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&L->user, 2, wd, dnnl_f32, dnnl_ba) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success ||
        dnnl_matmul_desc_init(&mm, &smd, &wany, NULL, &dmd) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &mm, NULL, engine, NULL) != dnnl_success)
        return L;
    L->md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    L->bytes = dnnl_memory_desc_get_size(&L->md);
    if (dnnl_reorder_primitive_desc_create(&rpd, &L->user, engine, &L->md, engine, NULL) != dnnl_success)
        return L;
    L->ok = dnnl_primitive_create(&L->reorder, rpd) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
    return L;
}

/* The primitive for M rows of (N, K), with or without bias, made if new (ok = 0 if oneDNN
 * offers nothing but its reference code for it). */
/* The published entry for (M, N, K, bias), or NULL. Entries are filled before n_prims counts
 * them (release/acquire), so a hit needs no lock: the lock is for making entries only. */
static prim *prim_find(int M, int N, int K, int bias) {
    const int n = __atomic_load_n(&n_prims, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (prims[i].M == M && prims[i].N == N && prims[i].K == K && prims[i].bias == bias) return &prims[i];
    return NULL;
}

static prim *prim_of(int M, int N, int K, int bias) {
    prim *r = prim_find(M, N, K, bias);
    if (r) return r->ok ? r : NULL;
#pragma omp critical(mvmoe_packed_cache)
    {
        r = prim_find(M, N, K, bias);
        layout *L = r ? NULL : layout_of(N, K);
        if (!r && L && L->ok && n_prims < MAX_PRIMS) {
            r = &prims[n_prims];
            memset(r, 0, sizeof *r);
            r->M = M, r->N = N, r->K = K, r->bias = bias;
            dnnl_dims_t sd = {M, K}, dd = {M, N}, bd = {1, N};
            dnnl_memory_desc_t smd, dmd, bmd;
            dnnl_matmul_desc_t mm;
            dnnl_primitive_attr_t attr = NULL;
            const char *impl = "";
            if (dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_f32, dnnl_ab) == dnnl_success &&
                dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab) == dnnl_success &&
                dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab) == dnnl_success &&
                dnnl_matmul_desc_init(&mm, &smd, &L->md, bias ? &bmd : NULL, &dmd) == dnnl_success &&
                dnnl_primitive_attr_create(&attr) == dnnl_success &&
                dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
                dnnl_primitive_desc_create(&r->pd, &mm, attr, engine, NULL) == dnnl_success &&
                dnnl_primitive_desc_query(r->pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
                !strstr(impl, "ref") && dnnl_primitive_create(&r->p, r->pd) == dnnl_success) {
                const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(r->pd, dnnl_query_scratchpad_md, 0);
                r->scratch = s ? dnnl_memory_desc_get_size(s) : 0;
                r->w_padded = dnnl_memory_desc_get_size(&L->md) != (size_t)N * K * sizeof(float);
                r->ok = 1;
            }
            if (attr) dnnl_primitive_attr_destroy(attr);
            __atomic_store_n(&n_prims, n_prims + 1, __ATOMIC_RELEASE); /* publish, filled */
        }
    }
    return r && r->ok ? r : NULL;
}

dnnl_stream_t mvmoe_onednn_thread_stream(size_t bytes, void **scr) {
    const int t = omp_get_thread_num();
    if (t >= MAX_THREADS) return NULL;
    if (!streams[t] && dnnl_stream_create(&streams[t], engine, dnnl_stream_default_flags) != dnnl_success) {
        streams[t] = NULL;
        return NULL;
    }
    if (scratch_size[t] < bytes) {
        free(scratch[t]);
        scratch[t] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        scratch_size[t] = scratch[t] ? bytes : 0;
        if (!scratch[t]) return NULL;
    }
    *scr = scratch[t];
    return streams[t];
}

/* out[M,N] = in[M,K]·wᵀ (+ b) on the calling thread: the primitive on the packed weights,
 * else the plain path on the plain ones (on this thread too inside a parallel region). */
static void packed_rows(float *out, const float *in, const float *wp, const float *w, const float *b,
                        int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    prim *r = wp ? prim_of(M, N, K, b != NULL) : NULL;
    void *scr = NULL;
    dnnl_stream_t st = r ? mvmoe_onednn_thread_stream(r->scratch, &scr) : NULL;
    if (!st) {
        mvmoe_linear_forward(out, in, w, b, M, K, N);
        return;
    }
    void *h[5] = {(void *)in, (void *)wp, (void *)b, out, r->scratch ? scr : NULL};
    /* the stream call checked the thread number */
    if (mvmoe_onednn_matmul_execute(r->pd, r->p, st, mems[omp_get_thread_num()][r - prims], h, r->w_padded)) {
        fprintf(stderr, "mvmoe: internal error: oneDNN matmul (M=%d N=%d K=%d) failed (%s:%d); "
                "please report this\n", M, N, K, __FILE__, __LINE__);
        abort();
    }
}

int mvmoe_onednn_matmul_execute(const_dnnl_primitive_desc_t pd, dnnl_primitive_t p, dnnl_stream_t st,
                                dnnl_memory_t cache[5], void *const h[5], int per_call_weights) {
    const dnnl_query_t q[5] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md,
                               dnnl_query_dst_md, dnnl_query_scratchpad_md};
    const int idx[5] = {0, 0, 1, 0, 0}, arg[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS,
                                                  DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD};
    dnnl_exec_arg_t args[5];
    int n = 0, ok = 1, fresh = -1; /* fresh: the index in args of a per-call object, if any */
    for (int i = 0; i < 5 && ok; i++) {
        if ((i == 2 || i == 4) && !h[i]) continue;
        const int per_call = i == 1 && per_call_weights;
        if (!per_call && cache[i]) {
            ok = dnnl_memory_set_data_handle(cache[i], h[i]) == dnnl_success;
            args[n].memory = cache[i];
        } else {
            const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q[i], idx[i]);
            ok = md && dnnl_memory_create(&args[n].memory, md, engine, h[i]) == dnnl_success;
            if (ok && per_call) fresh = n;
            else if (ok) cache[i] = args[n].memory;
        }
        if (ok) args[n++].arg = arg[i];
    }
    const int ran = ok;
    if (ok) ok = dnnl_primitive_execute(p, st, n, args) == dnnl_success;
    if (fresh >= 0) dnnl_memory_destroy(args[fresh].memory);
    return ok ? 0 : ran ? -2 : -1;
}

size_t mvmoe_linear_packed_size(int N, int K) {
    if (mvmoe_matmul_bf16_shape(N, K)) /* the bf16 copy, row-major */
        return ((size_t)N * K * sizeof(uint16_t) + sizeof(float) - 1) / sizeof(float);
    size_t bytes = 0;
#pragma omp critical(mvmoe_packed_cache)
    {
        layout *L = layout_of(N, K);
        if (L && L->ok) bytes = L->bytes;
    }
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

int mvmoe_linear_pack(float *dst, const float *w, int N, int K) {
    if (mvmoe_matmul_bf16_shape(N, K)) {
        mvmoe_bf16_round((uint16_t *)dst, w, (size_t)N * K);
        return 0;
    }
    layout *L = NULL;
#pragma omp critical(mvmoe_packed_cache)
    L = layout_of(N, K);
    if (!L || !L->ok) return -1;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t st = NULL;
    int ok = dnnl_stream_create(&st, engine, dnnl_stream_default_flags) == dnnl_success &&
             dnnl_memory_create(&from, &L->user, engine, (void *)w) == dnnl_success &&
             dnnl_memory_create(&to, &L->md, engine, dst) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        ok = dnnl_primitive_execute(L->reorder, st, 2, a) == dnnl_success && dnnl_stream_wait(st) == dnnl_success;
    }
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    if (st) dnnl_stream_destroy(st);
    return ok ? 0 : -1;
}

void mvmoe_linear_forward_packed(float *out, const float *in, const float *wp, const float *w,
                                 const float *b, int M, int K, int N) {
    if (wp && mvmoe_matmul_bf16_shape(N, K)) { /* wp holds bf16 weights: the bf16 product, else plain fp32 */
        if (mvmoe_linear_forward_bf16(out, in, (const uint16_t *)wp, b, M, K, N))
            mvmoe_linear_forward(out, in, w, b, M, K, N);
        return;
    }
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > M) nt = M;
    if ((double)M * N * K < SPLIT_MIN_MACS || nt < 1) nt = 1;
    if (nt == 1) {
        packed_rows(out, in, wp, w, b, M, K, N);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int m0 = (int)((long long)M * t / n), m1 = (int)((long long)M * (t + 1) / n);
        packed_rows(out + (size_t)m0 * N, in + (size_t)m0 * K, wp, w, b, m1 - m0, K, N);
    }
}
