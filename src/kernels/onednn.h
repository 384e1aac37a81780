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

#endif
