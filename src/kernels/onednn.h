/* oneDNN state shared by the kernels that run its matmul primitives (matmul_packed.c,
 * matmul_bf16.c); private to src/kernels. Both live in matmul_packed.c. */
#ifndef MVMOE_KERNELS_ONEDNN_H
#define MVMOE_KERNELS_ONEDNN_H

#include <dnnl.h>
#include <stddef.h>

/* The CPU engine, made on first use; NULL if oneDNN cannot make one. */
dnnl_engine_t mvmoe_onednn_engine(void);
/* The calling thread's stream and a scratchpad of at least `bytes` (*scr), made or grown on
 * first need; only this thread touches its slot. NULL: unavailable (then use another path).
 * Call only after mvmoe_onednn_engine returned an engine. */
dnnl_stream_t mvmoe_onednn_thread_stream(size_t bytes, void **scr);
/* Executes matmul primitive p (descriptor pd) on stream st with h = {src, weights, bias,
 * dst, scratchpad} (bias, scratchpad: NULL for none). cache: the calling thread's 5 memory
 * objects for p, made on first use and only re-pointed after (making them per call cost
 * ~1.5 µs of a small product); per_call_weights: the weights' object is made and destroyed
 * per call instead (a padded layout, whose padding re-pointing would zero). 0; -1 if an
 * object could not be made (nothing ran); -2 if oneDNN failed to execute. */
int mvmoe_onednn_matmul_execute(const_dnnl_primitive_desc_t pd, dnnl_primitive_t p, dnnl_stream_t st,
                                dnnl_memory_t cache[5], void *const h[5], int per_call_weights);

#endif
