/* ONNX export (mvmoe_export_onnx, mvmoe.h): the forward pass of docs/CHECKPOINT_FORMAT.md,
 * section 4, as one static ONNX graph (opset 17), node for node what src/model/vit_ref.c
 * computes. docs/EXPORT.md shows the graph and its tensor names.
 *
 * Per-image MoE without control flow: the router (MatMul -> Softmax -> TopK) gives each image
 * its k experts; each MoE block Gathers those experts' weights from initializers stacked
 * [E, ...] into [N, k, ...] and runs them as batched MatMuls, so a batch of one reads and
 * computes only its k experts, as mvmoe does. Gates are the top-k probabilities, not
 * renormalized. Per-token routing has no such form and is refused.
 *
 * int8 (o->int8): the products mvmoe's int8 path runs in int8 (patch embedding, qkv, proj,
 * fc1, fc2, experts; docs/EDGE.md) in ONNX's dynamic-quantization form, which ONNX Runtime
 * runs with its integer kernels: DynamicQuantizeLinear on the activations (uint8, one scale
 * and zero point per tensor) -> MatMulInteger with int8 weights (zero point 0) -> Cast ->
 * Mul by a_scale·w_scale[column] -> Add bias. The weights and scales come from
 * mvmoe_int8_quantize_rows, the function behind --precision int8 and `mvmoe quantize`, so
 * the int8 values are ours; the activations are quantized differently (docs/EXPORT.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/onnx_graph.h"
#include "kernels/linear.h"
#include "kernels/linear_backend.h" /* mvmoe_linear_int8_bytes: which products run in int8 */
#include "model/model.h"

#define ONNX_OPSET 17 /* LayerNormalization needs 17; onnx 1.12 (Debian 12) checks up to 17 */
#define ONNX_IR 8     /* the IR version of opset 17 */
#define LN_EPS 1e-6f  /* LayerNorm eps (timm's ViT), as src/model/vit_ref.c */
#define F32 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define I64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64
#define INT8_META                                                                           \
    "weights: " MVMOE_INT8_QUANTIZATION " (mvmoe quantize's values and scales); activations: "  \
    "DynamicQuantizeLinear, uint8, one scale per tensor (mvmoe: int8 per token)"
#define CAST_TO_FLOAT 1 /* Cast's `to` for float32 (TensorProto.FLOAT) */
#define OP MVMOE_ONNX_OP

typedef struct ex {
    mvmoe_onnx_graph *g;
    const mvmoe_config *c;
    const mvmoe_params *p;
    int D, H, NH, hd, E, k, T;
    int int8;                         /* the products of docs/EDGE.md in int8 */
    /* shared constants */
    const char *idx0, *idx1, *idx2;   /* int64 scalars 0, 1, 2 (Gather indices) */
    const char *sqrt2, *one, *half;   /* float scalars for GELU */
    const char *att_scale;            /* 1/sqrt(head dim) */
    const char *shape_heads, *shape_merge; /* Reshape targets [0,0,3,NH,hd], [0,0,D] */
    const char *axes1, *axes23;       /* Unsqueeze / ReduceSum axes [1], [2,3] */
} ex;

static const char *last_init(const mvmoe_onnx_graph *g) {
    return g->graph.n_initializer ? g->graph.initializer[g->graph.n_initializer - 1]->name : NULL;
}

/* An initializer holding a copy of src (count = product of dims). */
static const char *copy(ex *x, const char *name, int ndim, const int64_t *dims, const float *src) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    float *d = mvmoe_onnx_init_f32(x->g, name, ndim, dims);
    if (!d) return NULL;
    memcpy(d, src, n * sizeof *d);
    return last_init(x->g);
}

/* E matrices [rows, cols] (consecutive in src) as one initializer [E, cols, rows], or [cols,
 * rows] when E = 0: the checkpoint's [out, in] weights turned into MatMul's [in, out]. */
static const char *transposed(ex *x, const char *name, const float *src, int rows, int cols, int E) {
    const int64_t d3[3] = {E, cols, rows}, d2[2] = {cols, rows};
    float *d = mvmoe_onnx_init_f32(x->g, name, E ? 3 : 2, E ? d3 : d2);
    if (!d) return NULL;
    const size_t m = (size_t)rows * cols;
    for (int e = 0; e < (E ? E : 1); e++)
        for (int r = 0; r < rows; r++)
            for (int q = 0; q < cols; q++) d[e * m + (size_t)q * rows + r] = src[e * m + (size_t)r * cols + q];
    return last_init(x->g);
}

static const char *i64(ex *x, const char *name, int n, const int64_t *v) {
    const int64_t dims[1] = {n};
    return mvmoe_onnx_init_i64(x->g, name, 1, dims, v);
}

static const char *i64_scalar(ex *x, const char *name, int64_t v) {
    return mvmoe_onnx_init_i64(x->g, name, 0, NULL, &v);
}

/* ---------------------------------------------------------------- int8 */
/* E matrices [rows, cols] (the checkpoint's [out, in], consecutive in src; E = 0: one)
 * quantized per row by mvmoe_int8_quantize_rows -- the values and scales `--precision int8`
 * runs and `mvmoe quantize` stores -- as the int8 initializer `wname` [E, cols, rows] (E = 0:
 * [cols, rows], MatMulInteger's [in, out]) and their float scales `sname` [E, 1, rows] (E = 0:
 * [rows]; the 1 lets the scales of gathered experts broadcast over tokens). */
static void quantized(ex *x, const char *wname, const char *sname, const float *src, int rows, int cols,
                      int E, const char **w, const char **sc) {
    *w = *sc = NULL;
    const int64_t dw3[3] = {E, cols, rows}, dw2[2] = {cols, rows}, ds3[3] = {E, 1, rows}, ds1[1] = {rows};
    int8_t *d = mvmoe_onnx_init_i8(x->g, wname, E ? 3 : 2, E ? dw3 : dw2);
    const char *wn = last_init(x->g);
    float *scale = d ? mvmoe_onnx_init_f32(x->g, sname, E ? 3 : 1, E ? ds3 : ds1) : NULL;
    const size_t m = (size_t)rows * cols;
    int8_t *q = scale ? malloc(m) : NULL;
    if (!q) {
        if (!x->g->failed)
            x->g->failed = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                           "ONNX export: out of memory quantizing '%s' (%zu bytes)", wname, m);
        return;
    }
    for (int e = 0; e < (E ? E : 1); e++) {
        mvmoe_int8_quantize_rows(q, scale + (size_t)e * rows, src + e * m, rows, cols);
        for (int r = 0; r < rows; r++) {
            if (!isfinite(scale[(size_t)e * rows + r])) {
                x->g->failed = mvmoe_error_set(MVMOE_ERR_NUMERIC, __FILE__, __LINE__,
                                               "ONNX export: '%s' (expert %d) row %d is not finite: cannot "
                                               "quantize it (the model diverged; use an earlier checkpoint)",
                                               wname, e, r);
                free(q);
                return;
            }
            for (int c = 0; c < cols; c++) d[e * m + (size_t)c * rows + r] = q[(size_t)r * cols + c];
        }
    }
    free(q);
    *w = wn, *sc = last_init(x->g);
}

/* The int8 product in, as float [..., K], times the int8 weights w [..., K, out] (zero point
 * 0) with scales wscale (broadcasting to [..., 1, out]), as float: the pattern ONNX Runtime's
 * quantize_dynamic writes, DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by
 * Mul(a_scale, w_scale). The activations get one uint8 scale and zero point for the whole
 * tensor (the whole batch): DynamicQuantizeLinear has no per-row form. */
static const char *qmatmul(ex *x, const char *in, const char *w, const char *wscale) {
    const char *const din[1] = {in};
    const char *aq = mvmoe_onnx_node(x->g, "DynamicQuantizeLinear", din, 1, NULL, 3);
    const char *as = mvmoe_onnx_last_output(x->g, 1), *az = mvmoe_onnx_last_output(x->g, 2);
    const char *y = OP(x->g, "Cast", OP(x->g, "MatMulInteger", aq, w, az));
    mvmoe_onnx_attr_int(x->g, "to", CAST_TO_FLOAT);
    return OP(x->g, "Mul", y, OP(x->g, "Mul", as, wscale));
}

/* ---------------------------------------------------------------- layers */
/* LayerNormalization over the last axis, eps 1e-6; weights `name`.weight / .bias [D]. */
static const char *layernorm(ex *x, const char *in, const char *name, const float *w, const float *b) {
    char nw[96], nb[96];
    const int64_t dims[1] = {x->D};
    snprintf(nw, sizeof nw, "%s.weight", name);
    snprintf(nb, sizeof nb, "%s.bias", name);
    const char *y = OP(x->g, "LayerNormalization", in, copy(x, nw, 1, dims, w), copy(x, nb, 1, dims, b));
    mvmoe_onnx_attr_int(x->g, "axis", -1);
    mvmoe_onnx_attr_float(x->g, "epsilon", LN_EPS);
    return y;
}

/* y = in · Wᵀ + b for the checkpoint's W [out, in_dim], b [out] under `name`; the weight is
 * stored transposed as `name`.weight_t [in_dim, out]: float32, or, with q, int8 with scales
 * `name`.weight_scale [out] (qmatmul). out_name: the result's name or NULL. */
static const char *linear_as(ex *x, int q, const char *in, const char *name, const float *W, const float *b,
                             int in_dim, int out, const char *out_name) {
    char nw[96], nb[96], ns[96];
    const int64_t dims[1] = {out};
    snprintf(nw, sizeof nw, "%s.weight_t", name);
    snprintf(nb, sizeof nb, "%s.bias", name);
    snprintf(ns, sizeof ns, "%s.weight_scale", name);
    const char *mm;
    if (q) {
        const char *w, *sc;
        quantized(x, nw, ns, W, out, in_dim, 0, &w, &sc);
        mm = w ? qmatmul(x, in, w, sc) : NULL;
    } else {
        mm = OP(x->g, "MatMul", in, transposed(x, nw, W, out, in_dim, 0));
    }
    const char *bias = copy(x, nb, 1, dims, b);
    const char *const ins[2] = {mm, bias};
    const char *outs[1] = {out_name};
    return mvmoe_onnx_node(x->g, "Add", ins, 2, outs, 1);
}

/* Whether mvmoe's int8 path runs a product of W [out, in_dim] in int8: rows longer than its
 * int8 backend takes run in fp32 there, and so here. */
static int runs_int8(const ex *x, int out, int in_dim) {
    return x->int8 && mvmoe_linear_int8_bytes(out, in_dim) > 0;
}

/* A product that the int8 export runs in int8 (docs/EDGE.md, "What runs in int8"). */
static const char *linear(ex *x, const char *in, const char *name, const float *W, const float *b,
                          int in_dim, int out) {
    return linear_as(x, runs_int8(x, out, in_dim), in, name, W, b, in_dim, out, NULL);
}

/* Exact GELU, x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (mvmoe's, and timm's nn.GELU): opset 17 has no
 * Gelu operator; ONNX Runtime fuses this pattern into one. */
static const char *gelu(ex *x, const char *in) {
    const char *e = OP(x->g, "Erf", OP(x->g, "Div", in, x->sqrt2));
    return OP(x->g, "Mul", OP(x->g, "Mul", in, OP(x->g, "Add", e, x->one)), x->half);
}

/* Multi-head self-attention of block l on in [N, T, D] (its LayerNorm'ed input). */
static const char *attention(ex *x, int l, const char *in) {
    const size_t D = (size_t)x->D;
    const mvmoe_params *p = x->p;
    char name[96];
    snprintf(name, sizeof name, "blocks.%d.attn.qkv", l);
    const char *qkv = linear(x, in, name, p->qkv_w + l * 3 * D * D, p->qkv_b + l * 3 * D, x->D, 3 * x->D);
    /* [N, T, 3D] -> [N, T, 3, NH, hd] -> [3, N, NH, T, hd]: rows q, k, v, each split in heads */
    const char *t = OP(x->g, "Transpose", OP(x->g, "Reshape", qkv, x->shape_heads));
    mvmoe_onnx_attr_ints(x->g, "perm", 5, (const int64_t[]){2, 0, 3, 1, 4});
    const char *q = OP(x->g, "Gather", t, x->idx0), *k = OP(x->g, "Gather", t, x->idx1);
    const char *v = OP(x->g, "Gather", t, x->idx2);
    const char *kt = OP(x->g, "Transpose", k);                        /* [N, NH, hd, T] */
    mvmoe_onnx_attr_ints(x->g, "perm", 4, (const int64_t[]){0, 1, 3, 2});
    const char *s = OP(x->g, "Mul", OP(x->g, "MatMul", q, kt), x->att_scale); /* [N, NH, T, T] */
    const char *a = OP(x->g, "Softmax", s);
    mvmoe_onnx_attr_int(x->g, "axis", -1);
    const char *o = OP(x->g, "Transpose", OP(x->g, "MatMul", a, v));  /* [N, T, NH, hd] */
    mvmoe_onnx_attr_ints(x->g, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    o = OP(x->g, "Reshape", o, x->shape_merge);                       /* [N, T, D] */
    snprintf(name, sizeof name, "blocks.%d.attn.proj", l);
    return linear(x, o, name, p->proj_w + l * D * D, p->proj_b + l * D, x->D, x->D);
}

/* Dense block l's MLP: fc1 -> GELU -> fc2. */
static const char *mlp(ex *x, int l, const char *in) {
    const size_t s = (size_t)mvmoe_mlp_slot(x->c, l, 0), D = (size_t)x->D, H = (size_t)x->H;
    char n1[96], n2[96];
    snprintf(n1, sizeof n1, "blocks.%d.mlp.fc1", l);
    snprintf(n2, sizeof n2, "blocks.%d.mlp.fc2", l);
    const char *h = gelu(x, linear(x, in, n1, x->p->fc1_w + s * H * D, x->p->fc1_b + s * H, x->D, x->H));
    return linear(x, h, n2, x->p->fc2_w + s * D * H, x->p->fc2_b + s * D, x->H, x->D);
}

/* in [N, 1, T, K] (or [N, k, T, K]) times each image's k experts of the stacked weights w
 * ([E, K, out]): float32 (sc NULL) or int8 with scales sc [E, 1, out]; [N, k, T, out]. */
static const char *experts(ex *x, const char *in, const char *w, const char *sc, const char *routes) {
    const char *wk = OP(x->g, "Gather", w, routes);                               /* [N, k, K, out] */
    return sc ? qmatmul(x, in, wk, OP(x->g, "Gather", sc, routes)) : OP(x->g, "MatMul", in, wk);
}

/* MoE block l's MLP on in [N, T, D]: each image's k experts (routes [N, k]) with their
 * weights gathered from the stacked initializers, combined with gates4 [N, k, 1, 1]. */
static const char *moe(ex *x, int l, const char *in, const char *routes, const char *gates4) {
    const size_t s = (size_t)mvmoe_mlp_slot(x->c, l, 0), D = (size_t)x->D, H = (size_t)x->H;
    const mvmoe_params *p = x->p;
    char nw1[96], nb1[96], nw2[96], nb2[96], ns1[96], ns2[96];
    snprintf(nw1, sizeof nw1, "blocks.%d.mlp.experts.fc1.weight_t", l);
    snprintf(nb1, sizeof nb1, "blocks.%d.mlp.experts.fc1.bias", l);
    snprintf(nw2, sizeof nw2, "blocks.%d.mlp.experts.fc2.weight_t", l);
    snprintf(nb2, sizeof nb2, "blocks.%d.mlp.experts.fc2.bias", l);
    snprintf(ns1, sizeof ns1, "blocks.%d.mlp.experts.fc1.weight_scale", l);
    snprintf(ns2, sizeof ns2, "blocks.%d.mlp.experts.fc2.weight_scale", l);
    /* biases stored [E, 1, out] so that the gathered [N, k, 1, out] broadcasts over tokens */
    const int64_t db1[3] = {x->E, 1, x->H}, db2[3] = {x->E, 1, x->D};
    const char *w1 = NULL, *s1 = NULL, *w2 = NULL, *s2 = NULL;
    if (runs_int8(x, x->H, x->D)) quantized(x, nw1, ns1, p->fc1_w + s * H * D, x->H, x->D, x->E, &w1, &s1);
    else w1 = transposed(x, nw1, p->fc1_w + s * H * D, x->H, x->D, x->E);         /* [E, D, H] */
    if (runs_int8(x, x->D, x->H)) quantized(x, nw2, ns2, p->fc2_w + s * D * H, x->D, x->H, x->E, &w2, &s2);
    else w2 = transposed(x, nw2, p->fc2_w + s * D * H, x->D, x->H, x->E);         /* [E, H, D] */
    const char *b1 = copy(x, nb1, 3, db1, p->fc1_b + s * H);
    const char *b2 = copy(x, nb2, 3, db2, p->fc2_b + s * D);
    const char *u = OP(x->g, "Unsqueeze", in, x->axes1);                           /* [N, 1, T, D] */
    const char *h = experts(x, u, w1, s1, routes);                                 /* [N, k, T, H] */
    h = gelu(x, OP(x->g, "Add", h, OP(x->g, "Gather", b1, routes)));
    const char *y = experts(x, h, w2, s2, routes);                                 /* [N, k, T, D] */
    y = OP(x->g, "Mul", OP(x->g, "Add", y, OP(x->g, "Gather", b2, routes)), gates4);
    const char *out = OP(x->g, "ReduceSum", y, x->axes1);                          /* [N, T, D] */
    mvmoe_onnx_attr_int(x->g, "keepdims", 0);
    return out;
}

/* The patch embedding, [N, C, S, S] -> [N, g², D] (g = S/P, patches row-major). float32: a
 * stride-P Conv. int8: the patches as rows (in the weight's (c, y, x) order) through the same
 * int8 product as every other layer, as mvmoe's int8 path does (it quantizes each patch as a
 * row): one pattern for ONNX Runtime to fuse, and rows that a per-row quantization (the
 * test's onnx_int8_per_row.py) can address. ConvInteger would do for the per-tensor form. */
static const char *patches(ex *x, const char *img) {
    mvmoe_onnx_graph *g = x->g;
    const mvmoe_params *p = x->p;
    const int C = x->c->in_chans, P = x->c->patch, D = x->D, gs = x->c->img_size / P;
    if (x->int8) {
        const char *r = OP(g, "Reshape", img, i64(x, "const.shape_patch_grid", 6,
                                                  (const int64_t[]){0, C, gs, P, gs, P}));
        r = OP(g, "Transpose", r);                                                  /* [N, g, g, C, P, P] */
        mvmoe_onnx_attr_ints(g, "perm", 6, (const int64_t[]){0, 2, 4, 1, 3, 5});
        r = OP(g, "Reshape", r, i64(x, "const.shape_patch_rows", 3, (const int64_t[]){0, gs * gs, C * P * P}));
        return linear(x, r, "patch_embed.proj", p->patch_w, p->patch_b, C * P * P, D);
    }
    const int64_t dpw[4] = {D, C, P, P}, dd[1] = {D};
    const char *pe = OP(g, "Conv", img, copy(x, "patch_embed.proj.weight", 4, dpw, p->patch_w),
                        copy(x, "patch_embed.proj.bias", 1, dd, p->patch_b));      /* [N, D, g, g] */
    mvmoe_onnx_attr_ints(g, "kernel_shape", 2, (const int64_t[]){P, P});
    mvmoe_onnx_attr_ints(g, "strides", 2, (const int64_t[]){P, P});
    pe = OP(g, "Reshape", pe, i64(x, "const.shape_flatten_patches", 3, (const int64_t[]){0, 0, -1}));
    pe = OP(g, "Transpose", pe);                                                    /* [N, g², D] */
    mvmoe_onnx_attr_ints(g, "perm", 3, (const int64_t[]){0, 2, 1});
    return pe;
}

/* ---------------------------------------------------------------- the model */
static void build(ex *x) {
    mvmoe_onnx_graph *g = x->g;
    const mvmoe_config *c = x->c;
    const mvmoe_params *p = x->p;
    const int C = c->in_chans, S = c->img_size, D = x->D, K = c->num_classes;
    const int L = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers, first_moe = c->depth - L;

    mvmoe_onnx_scope(g, "const");
    x->idx0 = i64_scalar(x, "const.0", 0), x->idx1 = i64_scalar(x, "const.1", 1);
    x->idx2 = i64_scalar(x, "const.2", 2);
    x->sqrt2 = mvmoe_onnx_const_f32(g, "const.sqrt2", (float)sqrt(2.0));
    x->one = mvmoe_onnx_const_f32(g, "const.one", 1.0f);
    x->half = mvmoe_onnx_const_f32(g, "const.half", 0.5f);
    x->att_scale = mvmoe_onnx_const_f32(g, "const.attention_scale", (float)(1.0 / sqrt((double)x->hd)));
    x->shape_heads = i64(x, "const.shape_qkv_heads", 5, (const int64_t[]){0, 0, 3, x->NH, x->hd});
    x->shape_merge = i64(x, "const.shape_merge_heads", 3, (const int64_t[]){0, 0, D});
    if (L) { /* MoE only: ONNX Runtime warns about unused initializers */
        x->axes1 = i64(x, "const.axes_1", 1, (const int64_t[]){1});
        x->axes23 = i64(x, "const.axes_2_3", 2, (const int64_t[]){2, 3});
    }

    /* input: pixels in [0, 1] (uint8/255), normalized per channel: (v/255 − mean) / std */
    mvmoe_onnx_io(g, 0, "pixels", F32, 4, (const int64_t[]){-1, C, S, S});
    float mean[MVMOE_MAX_CHANNELS], std[MVMOE_MAX_CHANNELS];
    for (int ch = 0; ch < C; ch++) mean[ch] = c->mean[ch], std[ch] = c->std[ch];
    const int64_t dc[4] = {1, C, 1, 1};
    mvmoe_onnx_scope(g, "embed");
    const char *img = OP(g, "Div", OP(g, "Sub", "pixels", copy(x, "input.mean", 4, dc, mean)),
                         copy(x, "input.std", 4, dc, std));

    /* tokens: stride-P convolution, patches row-major, class token first, + pos_embed */
    const int64_t dcls[3] = {1, 1, D}, dpos[3] = {1, x->T, D};
    const char *pe = patches(x, img);                                              /* [N, g², D] */
    const char *n = OP(g, "Shape", "pixels");                                       /* [1]: N */
    mvmoe_onnx_attr_int(g, "start", 0);
    mvmoe_onnx_attr_int(g, "end", 1);
    const char *cls_shape = OP(g, "Concat", n, i64(x, "const.shape_cls_tail", 2, (const int64_t[]){1, D}));
    mvmoe_onnx_attr_int(g, "axis", 0);
    const char *cls = OP(g, "Expand", copy(x, "cls_token", 3, dcls, p->cls), cls_shape); /* [N, 1, D] */
    const char *h = OP(g, "Concat", cls, pe);                                       /* [N, T, D] */
    mvmoe_onnx_attr_int(g, "axis", 1);
    h = OP(g, "Add", h, copy(x, "pos_embed", 3, dpos, p->pos));

    const char *routes = NULL, *gates4 = NULL;
    for (int l = 0; l < c->depth; l++) {
        char nm[64];
        const size_t Dz = (size_t)D;
        if (l == first_moe) {
            /* the per-image router reads the class-token row of the residual stream after the
             * last dense block (unnormalized), no bias: p = softmax(W r), its top-k */
            mvmoe_onnx_scope(g, "router");
            const char *r = OP(g, "Gather", h, x->idx0);                            /* [N, D] */
            mvmoe_onnx_attr_int(g, "axis", 1);
            const char *z = OP(g, "MatMul", r, transposed(x, "router.weight_t", p->router_w, x->E, D, 0));
            const char *prob = OP(g, "Softmax", z);                                 /* [N, E] */
            mvmoe_onnx_attr_int(g, "axis", -1);
            const char *const in[2] = {prob, i64(x, "const.top_k", 1, (const int64_t[]){x->k})};
            const char *outs[2] = {"router.gates", "routes"};
            const char *gates = mvmoe_onnx_node(g, "TopK", in, 2, outs, 2);  /* [N, k] each */
            mvmoe_onnx_attr_int(g, "axis", -1);
            mvmoe_onnx_attr_int(g, "largest", 1);
            mvmoe_onnx_attr_int(g, "sorted", 1); /* most probable first; ties: lower index */
            routes = "routes";
            gates4 = OP(g, "Unsqueeze", gates, x->axes23);                          /* [N, k, 1, 1] */
        }
        mvmoe_onnx_scope(g, "blocks.%d", l);
        snprintf(nm, sizeof nm, "blocks.%d.norm1", l);
        const char *a = attention(x, l, layernorm(x, h, nm, p->ln1_w + l * Dz, p->ln1_b + l * Dz));
        h = OP(g, "Add", h, a);
        snprintf(nm, sizeof nm, "blocks.%d.norm2", l);
        const char *u = layernorm(x, h, nm, p->ln2_w + l * Dz, p->ln2_b + l * Dz);
        h = OP(g, "Add", h, l < first_moe ? mlp(x, l, u) : moe(x, l, u, routes, gates4));
    }

    /* head on the final LayerNorm of the class token */
    mvmoe_onnx_scope(g, "head");
    const char *t0 = OP(g, "Gather", h, x->idx0);                                  /* [N, D] */
    mvmoe_onnx_attr_int(g, "axis", 1);
    /* the head stays fp32, as in mvmoe's int8 path: its outputs are the logits */
    linear_as(x, 0, layernorm(x, t0, "norm", p->norm_w, p->norm_b), "head", p->head_w, p->head_b, D, K, "logits");
    mvmoe_onnx_io(g, 1, "logits", F32, 2, (const int64_t[]){-1, K});
    if (L) mvmoe_onnx_io(g, 1, "routes", I64, 2, (const int64_t[]){-1, x->k});
}

mvmoe_status mvmoe_export_onnx(const mvmoe_model *m, const char *path, const mvmoe_export_options *o) {
    if (!m || !path) MVMOE_FAIL(MVMOE_ERR_INVALID, "ONNX export: no model or no output path given");
    const mvmoe_config *c = &m->cfg;
    if (c->routing == MVMOE_ROUTING_TOKEN_LEARNED)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "%s: ONNX export of token-learned routing is unsupported: each "
                   "token picks its own experts in every MoE block, which a static graph can only "
                   "express by running every expert on every token (or with Loop/If nodes); only "
                   "per-image routing (image-superclass, image-learned) and dense models export", path);
    if (m->adaptive_k > 0)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "%s: ONNX export with adaptive k is unsupported: the graph "
                   "always runs the top-%d experts; load the model without --adaptive-k", path, c->top_k);
    ex x = {0};
    mvmoe_onnx_graph g;
    mvmoe_onnx_graph_init(&g, "mvmoe");
    x.g = &g, x.c = c, x.p = &m->p;
    x.D = c->dim, x.H = c->mlp_dim, x.NH = c->heads, x.hd = c->dim / c->heads, x.T = mvmoe_config_tokens(c);
    x.E = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->experts, x.k = c->top_k;
    x.int8 = o && o->int8;
    build(&x);
    char *config = NULL;
    mvmoe_status s = g.failed;
    if (s == MVMOE_OK) s = mvmoe_config_to_json(c, &config);
    if (s == MVMOE_OK) {
        const char *meta[] = {"mvmoe.config", config, "mvmoe.input",
                              "pixels: float32 [N, C, H, W], uint8 values / 255; normalized inside",
                              "mvmoe.quantization", INT8_META};
        s = mvmoe_onnx_graph_save(&g, path, ONNX_IR, ONNX_OPSET, "mvmoe", meta, x.int8 ? 3 : 2);
    }
    free(config);
    mvmoe_onnx_graph_free(&g);
    return s;
}
