/* oneDNN's engine, streams, scratchpads, packed weight layouts and the primitive cache (see
 * onednn.h). Everything is made on first use and kept for the process: a few objects per
 * shape in use, never freed (like oneDNN's own caches).
 *
 * Locks: the primitive cache is read without a lock (entries are filled before the count that
 * publishes them, release/acquire); making an entry, a layout or the engine takes a named
 * critical section, always in the order prims -> layouts -> engine. */
#include "kernels/onednn.h"

#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvmoe.h"

/* Rows of the primitive whose weight layout fixes the packed layout of an (N, K): each row
 * count of the packed products then uses this one layout (checked by test_linear). */
#define PACK_REF_ROWS 256
#define MAX_LAYOUTS 64
#define MAX_PRIMS (MVMOE_ONEDNN_OWNERS * MVMOE_ONEDNN_OWNER_PRIMS)
#define MAX_THREADS 64

static dnnl_engine_t engine;
static int engine_state; /* 0 untried, 1 ok, -1 failed */
static mvmoe_onednn_layout layouts[MAX_LAYOUTS];
static int n_layouts;
static mvmoe_onednn_prim prims[MAX_PRIMS];
static int n_prims, n_owned[MVMOE_ONEDNN_OWNERS];
static dnnl_stream_t streams[MAX_THREADS];
static void *scratch[MAX_THREADS];
static size_t scratch_size[MAX_THREADS];
/* Memory objects per thread and primitive (src, weights, bias, dst, scratchpad). Only the
 * owning thread touches its row. */
static dnnl_memory_t mems[MAX_THREADS][MAX_PRIMS][5];

const char *mvmoe_gemm_library(void) {
    static char name[48];
    if (!name[0]) { /* racing first calls write the same bytes */
        const dnnl_version_t *v = dnnl_version();
        snprintf(name, sizeof name, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    }
    return name;
}

dnnl_engine_t mvmoe_onednn_engine(void) {
    int ok;
#pragma omp critical(mvmoe_onednn_engine)
    {
        if (!engine_state) engine_state = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success ? 1 : -1;
        ok = engine_state > 0;
    }
    return ok ? engine : NULL;
}

/* ---------------------------------------------------------------- packed weight layouts */

/* A new layout entry for (N, K) in L: the weight layout a PACK_REF_ROWS-row matmul chooses
 * (format_tag_any), and the reorder into it. L->ok stays 0 if oneDNN offers none. */
static void layout_make(mvmoe_onednn_layout *L, int N, int K, dnnl_engine_t eng) {
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
        dnnl_primitive_desc_create(&pd, &mm, NULL, eng, NULL) != dnnl_success)
        return;
    L->md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    L->bytes = dnnl_memory_desc_get_size(&L->md);
    if (dnnl_reorder_primitive_desc_create(&rpd, &L->user, eng, &L->md, eng, NULL) != dnnl_success)
        return;
    L->ok = dnnl_primitive_create(&L->reorder, rpd) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
}

const mvmoe_onednn_layout *mvmoe_onednn_layout_of(int N, int K) {
    mvmoe_onednn_layout *L = NULL;
    dnnl_engine_t eng = mvmoe_onednn_engine();
    if (!eng) return NULL;
#pragma omp critical(mvmoe_onednn_layouts)
    {
        for (int i = 0; i < n_layouts && !L; i++)
            if (layouts[i].N == N && layouts[i].K == K) L = &layouts[i];
        if (!L && n_layouts < MAX_LAYOUTS) {
            L = &layouts[n_layouts++];
            layout_make(L, N, K, eng);
        }
    }
    return L;
}

int mvmoe_onednn_reorder(void *dst, const float *w, const mvmoe_onednn_layout *L) {
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t st = NULL;
    int ok = L && L->ok && dnnl_stream_create(&st, engine, dnnl_stream_default_flags) == dnnl_success &&
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

/* ---------------------------------------------------------------- the primitive cache */

static int same_key(const mvmoe_onednn_prim *a, const mvmoe_onednn_prim *b) {
    return a->owner == b->owner && a->kind == b->kind && a->M == b->M && a->N == b->N && a->K == b->K &&
           a->ld == b->ld && a->flag == b->flag;
}

/* The published entry of key, or NULL. */
static const mvmoe_onednn_prim *prim_find(const mvmoe_onednn_prim *key) {
    const int n = __atomic_load_n(&n_prims, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (same_key(&prims[i], key)) return &prims[i];
    return NULL;
}

const mvmoe_onednn_prim *mvmoe_onednn_prim_get(const mvmoe_onednn_prim *key, mvmoe_onednn_make_fn make,
                                               const void *ctx) {
    const mvmoe_onednn_prim *r = prim_find(key);
    if (r) return r->ok ? r : NULL;
    dnnl_engine_t eng = mvmoe_onednn_engine();
    if (!eng || key->owner < 0 || key->owner >= MVMOE_ONEDNN_OWNERS) return NULL;
#pragma omp critical(mvmoe_onednn_prims)
    {
        r = prim_find(key);
        if (!r && n_owned[key->owner] < MVMOE_ONEDNN_OWNER_PRIMS && n_prims < MAX_PRIMS) {
            mvmoe_onednn_prim *e = &prims[n_prims];
            memset(e, 0, sizeof *e);
            e->owner = key->owner, e->kind = key->kind, e->M = key->M, e->N = key->N, e->K = key->K;
            e->ld = key->ld, e->flag = key->flag;
            const int made = make(e, eng, ctx);
            if (made >= 0) {
                e->ok = made;
                n_owned[e->owner]++;
                __atomic_store_n(&n_prims, n_prims + 1, __ATOMIC_RELEASE); /* publish, filled */
                r = e;
            }
        }
    }
    return r && r->ok ? r : NULL;
}

/* The calling thread's stream and a scratchpad of at least `bytes` (*scr), made or grown on
 * first need; NULL if unavailable. */
static dnnl_stream_t thread_stream(size_t bytes, void **scr) {
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

int mvmoe_onednn_run(const mvmoe_onednn_prim *r, const void *const h4[4]) {
    void *scr = NULL;
    dnnl_stream_t st = thread_stream(r->scratch, &scr);
    if (!st) return -1; /* the thread number was checked there */
    dnnl_memory_t *cache = mems[omp_get_thread_num()][r - prims];
    void *const h[5] = {(void *)h4[0], (void *)h4[1], (void *)h4[2], (void *)h4[3], r->scratch ? scr : NULL};
    const dnnl_query_t q[5] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md,
                               dnnl_query_dst_md, dnnl_query_scratchpad_md};
    const int idx[5] = {0, 0, 1, 0, 0}, arg[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS,
                                                  DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD};
    dnnl_exec_arg_t args[5];
    int n = 0, ok = 1, fresh = -1; /* fresh: the index in args of a per-call object, if any */
    for (int i = 0; i < 5 && ok; i++) {
        if ((i == 2 || i == 4) && !h[i]) continue;
        /* a padded weight layout: re-pointing would zero the padding, so a new object per call */
        const int per_call = i == 1 && r->w_padded;
        if (!per_call && cache[i]) {
            ok = dnnl_memory_set_data_handle(cache[i], h[i]) == dnnl_success;
            args[n].memory = cache[i];
        } else {
            const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(r->pd, q[i], idx[i]);
            ok = md && dnnl_memory_create(&args[n].memory, md, engine, h[i]) == dnnl_success;
            if (ok && per_call) fresh = n;
            else if (ok) cache[i] = args[n].memory;
        }
        if (ok) args[n++].arg = arg[i];
    }
    const int ran = ok;
    if (ok) ok = dnnl_primitive_execute(r->p, st, n, args) == dnnl_success;
    if (fresh >= 0) dnnl_memory_destroy(args[fresh].memory);
    return ok ? 0 : ran ? -2 : -1;
}
