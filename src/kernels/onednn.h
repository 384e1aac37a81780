/* All oneDNN state of the kernels, in one place (onednn.c); private to src/kernels.
 *
 * The linear backends that run oneDNN matmul primitives (linear_packed.c, linear_bf16.c) keep
 * no oneDNN objects of their own: the engine, the per-thread streams and scratchpads, the
 * packed weight layouts and the one primitive cache live here. A backend describes the
 * primitive it wants (a key and a function that makes it); this file makes it once, keeps it
 * for the process and runs it. The sgemm backend (linear_sgemm.c) calls dnnl_sgemm, which has
 * no state. */
#ifndef MVMOE_KERNELS_ONEDNN_H
#define MVMOE_KERNELS_ONEDNN_H

#include <dnnl.h>
#include <stddef.h>

/* The CPU engine, made on first use; NULL if oneDNN cannot make one. */
dnnl_engine_t mvmoe_onednn_engine(void);

/* Who a cached primitive belongs to: each owner has its own capacity (MVMOE_ONEDNN_OWNER_PRIMS
 * entries), so one backend's shapes never crowd out another's. */
enum { MVMOE_ONEDNN_PACKED, MVMOE_ONEDNN_BF16, MVMOE_ONEDNN_OWNERS };
#define MVMOE_ONEDNN_OWNER_PRIMS 256

/* A cached matmul primitive. The key (owner, kind, M, N, K, ld, flag) means what its owner
 * says; the rest is filled by the owner's make function. */
typedef struct mvmoe_onednn_prim {
    int owner, kind, M, N, K, ld, flag; /* key */
    int w_padded; /* the weights' layout is padded: their memory object is made per call */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    size_t scratch; /* bytes of user scratchpad it needs */
    int ok;
} mvmoe_onednn_prim;

/* Makes r's primitive (r holds the key) on engine eng: 1 made, 0 oneDNN cannot (the failure
 * is cached too), -1 not now (nothing is cached). Called with the cache locked. */
typedef int (*mvmoe_onednn_make_fn)(mvmoe_onednn_prim *r, dnnl_engine_t eng, const void *ctx);

/* The cached primitive of key (its owner, kind, M, N, K, ld, flag), made by make(ctx) on first
 * request; NULL if it cannot be had (no engine, oneDNN has only reference code, the owner's
 * capacity is spent). A hit takes no lock. */
const mvmoe_onednn_prim *mvmoe_onednn_prim_get(const mvmoe_onednn_prim *key, mvmoe_onednn_make_fn make,
                                               const void *ctx);

/* Runs r on the calling thread's stream with h = {src, weights, bias, dst} (bias NULL: none).
 * The thread's memory objects for r are made on first use and only re-pointed after (making
 * them per call took about half the time of a small product: docs/PERFORMANCE.md §2.3); the
 * scratchpad is the thread's. 0; -1 if something could not be had (nothing ran); -2 if oneDNN
 * failed to execute. */
int mvmoe_onednn_run(const mvmoe_onednn_prim *r, const void *const h[4]);

/* The blocked layout oneDNN's matmul prefers for weights w[N,K] (logical [K,N]), the one every
 * packed product of that (N, K) uses, whatever its rows. */
typedef struct mvmoe_onednn_layout {
    int N, K, ok;            /* ok: packing available for this shape */
    dnnl_memory_desc_t md;   /* packed weights, logical [K, N] */
    dnnl_memory_desc_t user; /* plain weights w[N, K] row-major = logical [K, N], tag ba */
    dnnl_primitive_t reorder;
    size_t bytes;
} mvmoe_onednn_layout;

/* The layout of (N, K), made on first request; NULL if unavailable (check ok too). */
const mvmoe_onednn_layout *mvmoe_onednn_layout_of(int N, int K);
/* dst = w[N,K] reordered into L's layout: 0, or -1 if oneDNN failed. */
int mvmoe_onednn_reorder(void *dst, const float *w, const mvmoe_onednn_layout *L);

#endif
