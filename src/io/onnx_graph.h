/* A small builder for one ONNX graph (the protobuf-c structures generated from the vendored
 * third_party/onnx/onnx.proto) and its atomic writer. The builder owns everything it makes
 * (names, nodes, initializers and their data) and frees it all at once.
 *
 * Failures are sticky: after a failed allocation every call is a no-op returning NULL, and
 * mvmoe_onnx_graph_save reports the first failure. This keeps the model code in
 * onnx_export.c a readable list of nodes instead of one error check per line. */
#ifndef MVMOE_IO_ONNX_GRAPH_H
#define MVMOE_IO_ONNX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "mvmoe.h"
#include "onnx.pb-c.h"

typedef struct mvmoe_onnx_graph {
    Onnx__GraphProto graph;
    size_t cap_node, cap_init, cap_in, cap_out;
    void **owned;              /* every allocation, freed by mvmoe_onnx_graph_free */
    size_t n_owned, cap_owned;
    mvmoe_status failed;       /* MVMOE_OK until something fails; the message is set then */
    char scope[96];            /* prefix of generated node and value names, e.g. "blocks.3.attn" */
    long counter;              /* makes generated names unique */
    double data_bytes;         /* bytes of initializer data so far (for the 2 GiB limit) */
} mvmoe_onnx_graph;

void mvmoe_onnx_graph_init(mvmoe_onnx_graph *g, const char *name);
void mvmoe_onnx_graph_free(mvmoe_onnx_graph *g);
/* Sets the prefix of the names made from here on. */
void mvmoe_onnx_scope(mvmoe_onnx_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A float32 initializer `name` of shape dims[ndim]; returns its data (zeroed, row-major) for
 * the caller to fill, or NULL after a failure. */
float *mvmoe_onnx_init_f32(mvmoe_onnx_graph *g, const char *name, int ndim, const int64_t *dims);
/* An int8 initializer of shape dims[ndim], stored as raw bytes (one per value: a quarter of
 * the float32 size); returns its data (zeroed) for the caller to fill, or NULL. */
int8_t *mvmoe_onnx_init_i8(mvmoe_onnx_graph *g, const char *name, int ndim, const int64_t *dims);
/* An int64 initializer (ndim 0: a scalar, one value) holding values; returns its name. */
const char *mvmoe_onnx_init_i64(mvmoe_onnx_graph *g, const char *name, int ndim, const int64_t *dims,
                                const int64_t *values);
/* A float32 scalar initializer (rank 0); returns its name. */
const char *mvmoe_onnx_const_f32(mvmoe_onnx_graph *g, const char *name, float v);

/* Output i of the node added last (NULL after a failure). */
const char *mvmoe_onnx_last_output(const mvmoe_onnx_graph *g, int i);

/* Adds node op(in[0..n_in)) with n_out outputs named out[i] (NULL entries, or out NULL:
 * generated "scope/op_N" names) and returns the first output's name. Attributes added next
 * go on this node. */
const char *mvmoe_onnx_node(mvmoe_onnx_graph *g, const char *op, const char *const *in, int n_in,
                            const char **out, int n_out);
#define MVMOE_ONNX_OP(g, op, ...)                                        \
    mvmoe_onnx_node((g), (op), (const char *const[]){__VA_ARGS__},       \
                    (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)), NULL, 1)
void mvmoe_onnx_attr_int(mvmoe_onnx_graph *g, const char *name, int64_t v);
void mvmoe_onnx_attr_float(mvmoe_onnx_graph *g, const char *name, float v);
void mvmoe_onnx_attr_ints(mvmoe_onnx_graph *g, const char *name, int n, const int64_t *v);

/* Declares a graph input (output = 0) or output (output = 1) `name` of element type elem
 * (ONNX__TENSOR_PROTO__DATA_TYPE__*) and shape dims[ndim]; a dimension < 0 is the symbolic
 * batch dimension "N". */
void mvmoe_onnx_io(mvmoe_onnx_graph *g, int output, const char *name, int elem, int ndim,
                   const int64_t *dims);

/* Writes the model (IR version ir, opset `opset` of the default domain, metadata key/value
 * pairs meta[2i], meta[2i+1]) to path atomically (temporary file, fsync, rename). */
mvmoe_status mvmoe_onnx_graph_save(mvmoe_onnx_graph *g, const char *path, int64_t ir, int64_t opset,
                                   const char *producer, const char *const *meta, int n_meta);

#endif
