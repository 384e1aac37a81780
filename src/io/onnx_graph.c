/* ONNX graph builder and writer (onnx_graph.h). */
#include "io/onnx_graph.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/atomic.h"

/* Protobuf messages are limited to 2 GiB (ONNX Runtime and onnx refuse larger single files;
 * bigger models need ONNX's external-data form, which this writer does not produce). */
#define PROTOBUF_LIMIT 2147483647.0

/* ---------------------------------------------------------------- ownership */
static void *own(mvmoe_onnx_graph *g, size_t count, size_t size) {
    if (g->failed) return NULL;
    if (g->n_owned == g->cap_owned) {
        size_t cap = g->cap_owned ? 2 * g->cap_owned : 256;
        void **p = realloc(g->owned, cap * sizeof *p);
        if (!p) {
            g->failed = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                        "ONNX export: out of memory building the graph");
            return NULL;
        }
        g->owned = p, g->cap_owned = cap;
    }
    void *p = mvmoe_calloc_checked(count ? count : 1, size, "ONNX graph", __FILE__, __LINE__);
    if (!p) {
        g->failed = MVMOE_ERR_NOMEM;
        return NULL;
    }
    g->owned[g->n_owned++] = p;
    return p;
}

static char *own_str(mvmoe_onnx_graph *g, const char *s) {
    char *d = own(g, strlen(s) + 1, 1);
    if (d) memcpy(d, s, strlen(s) + 1);
    return d;
}

/* The graph's arrays of pointers grow by doubling; on failure the old array stays (freed
 * with the graph) and the failure is recorded. */
static void *grow(mvmoe_onnx_graph *g, void *arr, size_t n, size_t *cap, size_t elem) {
    if (n < *cap) return arr;
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(arr, c * elem);
    if (!p) {
        g->failed = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                    "ONNX export: out of memory building the graph");
        return arr;
    }
    *cap = c;
    return p;
}
/* Appends item to g->graph.arr (count g->graph.n, capacity g->cap); 0 or -1. */
#define PUSH(g, arr, n, cap, item)                                                              \
    ((g)->failed || !(item) ? -1                                                                 \
     : ((g)->graph.arr = grow((g), (g)->graph.arr, (g)->graph.n, &(g)->cap, sizeof *(g)->graph.arr), \
        (g)->failed ? -1 : ((g)->graph.arr[(g)->graph.n++] = (item), 0)))

void mvmoe_onnx_graph_init(mvmoe_onnx_graph *g, const char *name) {
    memset(g, 0, sizeof *g);
    onnx__graph_proto__init(&g->graph);
    g->graph.name = own_str(g, name);
}

void mvmoe_onnx_graph_free(mvmoe_onnx_graph *g) {
    for (size_t i = 0; i < g->n_owned; i++) free(g->owned[i]);
    free(g->owned);
    free(g->graph.node);
    free(g->graph.initializer);
    free(g->graph.input);
    free(g->graph.output);
    memset(g, 0, sizeof *g);
}

void mvmoe_onnx_scope(mvmoe_onnx_graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->scope, sizeof g->scope, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- initializers */
static Onnx__TensorProto *tensor(mvmoe_onnx_graph *g, const char *name, int elem, int ndim,
                                 const int64_t *dims, size_t *count) {
    Onnx__TensorProto *t = own(g, 1, sizeof *t);
    int64_t *d = own(g, (size_t)ndim, sizeof *d);
    char *nm = own_str(g, name);
    if (!t || !d || !nm) return NULL;
    onnx__tensor_proto__init(t);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) d[i] = dims[i], n *= (size_t)dims[i];
    t->n_dims = (size_t)ndim, t->dims = d, t->name = nm;
    t->has_data_type = 1, t->data_type = elem;
    *count = n;
    return PUSH(g, initializer, n_initializer, cap_init, t) ? NULL : t;
}

float *mvmoe_onnx_init_f32(mvmoe_onnx_graph *g, const char *name, int ndim, const int64_t *dims) {
    size_t n;
    Onnx__TensorProto *t = tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims, &n);
    float *data = t ? own(g, n, sizeof *data) : NULL;
    if (!data) return NULL;
    /* float_data (packed fixed32) rather than raw_data: protobuf-c writes it little-endian on
     * any host, as the format requires, with no byte swapping here */
    t->n_float_data = n, t->float_data = data;
    g->data_bytes += 4.0 * (double)n;
    return data;
}

int8_t *mvmoe_onnx_init_i8(mvmoe_onnx_graph *g, const char *name, int ndim, const int64_t *dims) {
    size_t n;
    Onnx__TensorProto *t = tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, ndim, dims, &n);
    int8_t *data = t ? own(g, n, sizeof *data) : NULL;
    if (!data) return NULL;
    /* raw_data: one byte a value (int32_data, the typed field, would spend a varint on each) */
    t->has_raw_data = 1, t->raw_data.len = n, t->raw_data.data = (uint8_t *)data;
    g->data_bytes += (double)n;
    return data;
}

const char *mvmoe_onnx_init_i64(mvmoe_onnx_graph *g, const char *name, int ndim, const int64_t *dims,
                                const int64_t *values) {
    size_t n;
    Onnx__TensorProto *t = tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, ndim, dims, &n);
    int64_t *data = t ? own(g, n, sizeof *data) : NULL;
    if (!data) return NULL;
    memcpy(data, values, n * sizeof *data);
    t->n_int64_data = n, t->int64_data = data;
    return t->name;
}

const char *mvmoe_onnx_const_f32(mvmoe_onnx_graph *g, const char *name, float v) {
    float *d = mvmoe_onnx_init_f32(g, name, 0, NULL);
    if (!d) return NULL;
    *d = v;
    return g->graph.initializer[g->graph.n_initializer - 1]->name;
}

/* ---------------------------------------------------------------- nodes */
const char *mvmoe_onnx_node(mvmoe_onnx_graph *g, const char *op, const char *const *in, int n_in,
                            const char **out, int n_out) {
    Onnx__NodeProto *nd = own(g, 1, sizeof *nd);
    char **ins = own(g, (size_t)n_in, sizeof *ins), **outs = own(g, (size_t)n_out, sizeof *outs);
    char name[160];
    snprintf(name, sizeof name, "%s/%s_%ld", g->scope, op, g->counter++);
    if (!nd || !ins || !outs) return NULL;
    onnx__node_proto__init(nd);
    for (int i = 0; i < n_in; i++)
        if (!in[i] || !(ins[i] = own_str(g, in[i]))) { /* a NULL input: an earlier step failed */
            if (!g->failed)
                g->failed = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                                            "ONNX export: node %s lacks input %d", name, i);
            return NULL;
        }
    for (int i = 0; i < n_out; i++) {
        char oname[176];
        if (out && out[i]) snprintf(oname, sizeof oname, "%s", out[i]);
        else if (n_out == 1) snprintf(oname, sizeof oname, "%s", name);
        else snprintf(oname, sizeof oname, "%s:%d", name, i);
        if (!(outs[i] = own_str(g, oname))) return NULL;
    }
    nd->n_input = (size_t)n_in, nd->input = ins, nd->n_output = (size_t)n_out, nd->output = outs;
    nd->op_type = own_str(g, op);
    nd->name = own_str(g, name);
    if (!nd->op_type || !nd->name || PUSH(g, node, n_node, cap_node, nd)) return NULL;
    return outs[0];
}

const char *mvmoe_onnx_last_output(const mvmoe_onnx_graph *g, int i) {
    if (g->failed || !g->graph.n_node) return NULL;
    const Onnx__NodeProto *nd = g->graph.node[g->graph.n_node - 1];
    return i >= 0 && (size_t)i < nd->n_output ? nd->output[i] : NULL;
}

static Onnx__AttributeProto *attr(mvmoe_onnx_graph *g, const char *name, Onnx__AttributeProto__AttributeType type) {
    if (g->failed || !g->graph.n_node) return NULL;
    Onnx__NodeProto *nd = g->graph.node[g->graph.n_node - 1];
    Onnx__AttributeProto *a = own(g, 1, sizeof *a);
    Onnx__AttributeProto **list = own(g, nd->n_attribute + 1, sizeof *list);
    if (!a || !list) return NULL;
    onnx__attribute_proto__init(a);
    if (!(a->name = own_str(g, name))) return NULL;
    a->has_type = 1, a->type = type;
    /* nodes carry a handful of attributes: copying the list each time is simplest */
    if (nd->n_attribute) memcpy(list, nd->attribute, nd->n_attribute * sizeof *list);
    list[nd->n_attribute] = a;
    nd->attribute = list, nd->n_attribute++;
    return a;
}

void mvmoe_onnx_attr_int(mvmoe_onnx_graph *g, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
}

void mvmoe_onnx_attr_float(mvmoe_onnx_graph *g, const char *name, float v) {
    Onnx__AttributeProto *a = attr(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
}

void mvmoe_onnx_attr_ints(mvmoe_onnx_graph *g, const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = attr(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *d = a ? own(g, (size_t)n, sizeof *d) : NULL;
    if (!d) return;
    memcpy(d, v, (size_t)n * sizeof *d);
    a->n_ints = (size_t)n, a->ints = d;
}

/* ---------------------------------------------------------------- inputs and outputs */
void mvmoe_onnx_io(mvmoe_onnx_graph *g, int output, const char *name, int elem, int ndim,
                   const int64_t *dims) {
    Onnx__ValueInfoProto *v = own(g, 1, sizeof *v);
    Onnx__TypeProto *tp = own(g, 1, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = own(g, 1, sizeof *tt);
    Onnx__TensorShapeProto *sh = own(g, 1, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dl = own(g, (size_t)ndim, sizeof *dl);
    if (!v || !tp || !tt || !sh || !dl) return;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = own(g, 1, sizeof *d);
        if (!d) return;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            if (!(d->dim_param = own_str(g, "N"))) return;
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dl[i] = d;
    }
    sh->n_dim = (size_t)ndim, sh->dim = dl;
    tt->has_elem_type = 1, tt->elem_type = elem, tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    v->type = tp;
    if (!(v->name = own_str(g, name))) return;
    if (output) PUSH(g, output, n_output, cap_out, v);
    else PUSH(g, input, n_input, cap_in, v);
}

/* ---------------------------------------------------------------- writing */
/* protobuf-c streams the message through this buffer straight into the file: no second copy
 * of the weights in memory. */
typedef struct file_buffer {
    ProtobufCBuffer base;
    FILE *fp;
    int err;
} file_buffer;

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
    file_buffer *fb = (file_buffer *)b;
    if (fb->err || !len) return;
    if (fwrite(data, 1, len, fb->fp) != len) fb->err = errno ? errno : EIO;
}

static int write_body(FILE *fp, void *ctx) {
    file_buffer fb = {{file_append}, fp, 0};
    errno = 0;
    protobuf_c_message_pack_to_buffer((const ProtobufCMessage *)ctx, &fb.base);
    return fb.err;
}

mvmoe_status mvmoe_onnx_graph_save(mvmoe_onnx_graph *g, const char *path, int64_t ir, int64_t opset,
                                   const char *producer, const char *const *meta, int n_meta) {
    if (g->failed) return g->failed;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto set = ONNX__OPERATOR_SET_ID_PROTO__INIT, *sets[1] = {&set};
    set.domain = "", set.has_version = 1, set.version = opset;
    Onnx__StringStringEntryProto *props[8], entries[8];
    if (n_meta > 8) MVMOE_FAIL(MVMOE_ERR_INVALID, "ONNX export: %d metadata entries, at most 8", n_meta);
    for (int i = 0; i < n_meta; i++) {
        onnx__string_string_entry_proto__init(&entries[i]);
        entries[i].key = (char *)meta[2 * i], entries[i].value = (char *)meta[2 * i + 1];
        props[i] = &entries[i];
    }
    model.has_ir_version = 1, model.ir_version = ir;
    model.n_opset_import = 1, model.opset_import = sets;
    model.producer_name = (char *)producer;
    model.graph = &g->graph;
    model.n_metadata_props = (size_t)n_meta, model.metadata_props = props;
    const size_t size = onnx__model_proto__get_packed_size(&model);
    if ((double)size > PROTOBUF_LIMIT)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED,
                   "%s: the ONNX model would take %.2f GiB, beyond protobuf's 2 GiB limit for one "
                   "file (ONNX's external-data form is not written); export a smaller model",
                   path, (double)size / 1073741824.0);
    return mvmoe_atomic_write(path, write_body, &model);
}
