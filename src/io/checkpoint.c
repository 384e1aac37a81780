/* Checkpoint <-> parameter arena, per docs/CHECKPOINT_FORMAT.md: tensors under timm names,
 * the config as JSON text in __metadata__["config"]. Plain timm files (no config) are
 * accepted: sizes come from shapes, heads/mean/std from the load options. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/posembed.h"

mvmoe_status mvmoe_model_save(const mvmoe_model *m, const char *path) {
    const mvmoe_layout *L = &m->layout;
    mvmoe_st_out *t;
    MVMOE_ALLOC(t, L->n, "checkpoint tensor list");
    for (int i = 0; i < L->n; i++) {
        t[i].name = L->t[i].name;
        t[i].ndim = L->t[i].ndim;
        for (int d = 0; d < L->t[i].ndim; d++) t[i].shape[d] = L->t[i].shape[d];
        t[i].data = m->param_mem + L->t[i].offset;
    }
    char *json = NULL;
    mvmoe_status s = mvmoe_config_to_json(&m->cfg, &json);
    if (s == MVMOE_OK) {
        /* the optimizer step these weights are at: --resume checks it against the state file,
         * so a crash between writing the two files cannot silently mix them */
        char step[32];
        snprintf(step, sizeof step, "%lld", (long long)m->step);
        const char *keys[] = {"config", "format", "step"};
        const char *vals[] = {json, "mvmoe-0.1", step};
        s = mvmoe_st_write(path, t, L->n, keys, vals, 3);
    }
    free(json);
    free(t);
    return s;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* An int8 weight [N, ...] as N output channels of count/N inputs. */
static void int8_rows(const mvmoe_tensor_info *ti, int *N, int *K) {
    *N = (int)ti->shape[0];
    *K = (int)(ti->count / (size_t)ti->shape[0]);
}

mvmoe_status mvmoe_model_save_int8(const mvmoe_model *m, const char *path) {
    const mvmoe_layout *L = &m->layout;
    int n_q = 0;
    size_t q_bytes = 0, n_scales = 0;
    for (int i = 0; i < L->n; i++)
        if (mvmoe_layout_is_int8(L->t[i].name)) n_q++, q_bytes += L->t[i].count, n_scales += (size_t)L->t[i].shape[0];
    mvmoe_st_out *t = NULL;
    int8_t *q = NULL;
    float *scales = NULL;
    char (*names)[sizeof L->t[0].name + 8] = NULL;
    char *json = NULL;
    mvmoe_status s = MVMOE_OK;
    t = calloc((size_t)(unsigned)L->n + (unsigned)n_q, sizeof *t); /* both counts are >= 0 */
    q = malloc(q_bytes ? q_bytes : 1);
    scales = malloc(sizeof *scales * (n_scales ? n_scales : 1));
    names = calloc((size_t)(n_q ? n_q : 1), sizeof *names);
    if (!t || !q || !scales || !names)
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                            "%s: out of memory for the int8 copy of the weights (%zu bytes)", path, q_bytes);
    int n = 0, k = 0;
    size_t qo = 0, so = 0;
    for (int i = 0; s == MVMOE_OK && i < L->n; i++) {
        const mvmoe_tensor_info *ti = &L->t[i];
        mvmoe_st_out *o = &t[n++];
        o->name = ti->name;
        o->ndim = ti->ndim;
        for (int d = 0; d < ti->ndim; d++) o->shape[d] = ti->shape[d];
        o->data = m->param_mem + ti->offset;
        if (!mvmoe_layout_is_int8(ti->name)) continue;
        int N, K;
        int8_rows(ti, &N, &K);
        mvmoe_int8_quantize_rows(q + qo, scales + so, o->data, N, K);
        for (int j = 0; j < N; j++)
            if (!isfinite(scales[so + j])) {
                s = mvmoe_error_set(MVMOE_ERR_NUMERIC, __FILE__, __LINE__,
                                    "tensor '%s' row %d is not finite: cannot quantize it (the "
                                    "model diverged; use an earlier checkpoint)", ti->name, j);
                break;
            }
        o->data_i8 = q + qo;
        snprintf(names[k], sizeof names[k], "%s_scale", ti->name);
        t[L->n + k] = (mvmoe_st_out){.name = names[k], .ndim = 1, .shape = {N}, .data = scales + so};
        k++, qo += ti->count, so += (size_t)N;
    }
    if (s == MVMOE_OK) s = mvmoe_config_to_json(&m->cfg, &json);
    if (s == MVMOE_OK) {
        char step[32];
        snprintf(step, sizeof step, "%lld", (long long)m->step);
        const char *keys[] = {"config", "format", "step", "quantization"};
        const char *vals[] = {json, "mvmoe-0.1", step, MVMOE_INT8_QUANTIZATION};
        s = mvmoe_st_write(path, t, L->n + n_q, keys, vals, 4);
    }
    free(json), free(t), free(q), free(scales), free(names);
    return s;
}

/* An int8 checkpoint's weight: the I8 tensor t and its scale tensor, checked, dequantized
 * into dst (w = q·scale per output channel). */
static mvmoe_status load_int8(float *dst, const mvmoe_st_file *f, const mvmoe_tensor_info *ti,
                              const mvmoe_st_tensor *t) {
    if (t->dtype != MVMOE_ST_I8)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%s' must be I8 in an int8 checkpoint (metadata "
                   "quantization = %s); the file is corrupt or was edited: quantize the fp32 "
                   "checkpoint again", f->path, ti->name, MVMOE_INT8_QUANTIZATION);
    int N, K;
    int8_rows(ti, &N, &K);
    char sname[sizeof ti->name + 8];
    snprintf(sname, sizeof sname, "%s_scale", ti->name);
    const mvmoe_st_tensor *st = mvmoe_st_find(f, sname);
    if (!st || st->ndim != 1 || st->shape[0] != N) {
        char a[96] = "absent";
        if (st) shape_str(a, sizeof a, st->ndim, st->shape);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: the int8 weight '%s' needs its per-output-channel scale "
                   "tensor '%s' of shape [%d] (F32); it is %s. The file is corrupt or was edited: "
                   "quantize the fp32 checkpoint again", f->path, ti->name, sname, N, a);
    }
    float *scale;
    int8_t *q;
    MVMOE_ALLOC(scale, (size_t)N, "int8 scales");
    q = malloc(ti->count);
    mvmoe_status s = q ? MVMOE_OK : mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                                    "out of memory reading '%s' (%zu bytes)", ti->name, ti->count);
    if (s == MVMOE_OK) s = mvmoe_st_read_f32(f, st, scale, (size_t)N);
    for (int j = 0; s == MVMOE_OK && j < N; j++)
        if (!(isfinite(scale[j]) && scale[j] >= 0)) /* NaN fails both */
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s: scale tensor '%s' holds %g at element %d; scales must be finite "
                                "and >= 0. The file is corrupt or was edited: quantize the fp32 "
                                "checkpoint again", f->path, sname, (double)scale[j], j);
    if (s == MVMOE_OK) s = mvmoe_st_read_i8(f, t, q, ti->count);
    for (size_t i = 0; s == MVMOE_OK && i < ti->count; i++) {
        if (q[i] == -128) /* symmetric: -127..127 */
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s: int8 weight '%s' holds -128 at element %zu; symmetric "
                                "quantization uses -127..127 only: the file is corrupt", f->path, ti->name, i);
        dst[i] = (float)q[i] * scale[i / (size_t)K];
    }
    free(scale), free(q);
    return s;
}

static const mvmoe_st_tensor *need(const mvmoe_st_file *f, const char *name, int ndim) {
    const mvmoe_st_tensor *t = mvmoe_st_find(f, name);
    return t && t->ndim == ndim ? t : NULL;
}

/* A plain timm ViT checkpoint: every size but heads/mean/std follows from the shapes. */
static mvmoe_status infer_config(mvmoe_config *c, const mvmoe_st_file *f,
                                 const mvmoe_load_options *o) {
    const mvmoe_st_tensor *pw = need(f, "patch_embed.proj.weight", 4),
                          *pos = need(f, "pos_embed", 3), *fc1 = need(f, "blocks.0.mlp.fc1.weight", 2),
                          *head = need(f, "head.weight", 2);
    if (!pw || !pos || !fc1 || !head)
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: no config metadata, and it does not look like a timm ViT (needs "
                   "patch_embed.proj.weight [D,C,P,P], pos_embed [1,T,D], blocks.0.mlp.fc1.weight, "
                   "head.weight)",
                   f->path);
    memset(c, 0, sizeof *c);
    c->dim = (int)pw->shape[0];
    c->in_chans = (int)pw->shape[1];
    c->patch = (int)pw->shape[2];
    int64_t N = pos->shape[1] - 1;
    int g = (int)llround(sqrt((double)(N > 0 ? N : 0)));
    if (N < 1 || (int64_t)g * g != N || pw->shape[2] != pw->shape[3])
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: pos_embed has %lld tokens, not 1 + a square grid", f->path,
                   (long long)pos->shape[1]);
    c->img_size = g * c->patch;
    c->mlp_dim = (int)fc1->shape[0];
    c->num_classes = (int)head->shape[0];
    char name[64];
    while (snprintf(name, sizeof name, "blocks.%d.norm1.weight", c->depth), mvmoe_st_find(f, name))
        c->depth++;
    c->routing = MVMOE_ROUTING_DENSE;
    c->top_k = 1;
    if (!o || o->heads <= 0)
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "%s has no config metadata (a plain timm checkpoint): give the number of "
                   "attention heads (--heads N; e.g. 3 for ViT-Tiny)",
                   f->path);
    c->heads = o->heads;
    for (int k = 0; k < MVMOE_MAX_CHANNELS; k++) c->mean[k] = c->std[k] = 0.5f; /* timm's default */
    return MVMOE_OK;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

/* The file's tensor for layout entry ti, if its shape is the one the model needs (pos_embed:
 * at the checkpoint's own grid, resampled when read). */
static mvmoe_status find_matching(const mvmoe_st_file *f, const mvmoe_tensor_info *ti, int src_grid,
                                  const mvmoe_st_tensor **out) {
    const mvmoe_st_tensor *t = mvmoe_st_find(f, ti->name);
    if (!t)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%s' is missing (the config needs it)", f->path,
                   ti->name);
    int64_t want[4];
    for (int d = 0; d < ti->ndim; d++) want[d] = ti->shape[d];
    if (strcmp(ti->name, "pos_embed") == 0) want[1] = 1 + (int64_t)src_grid * src_grid;
    int same = t->ndim == ti->ndim;
    for (int d = 0; same && d < ti->ndim; d++) same = t->shape[d] == want[d];
    if (!same) {
        char a[96], b[96];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, ti->ndim, want);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model needs %s", f->path,
                   ti->name, a, b);
    }
    *out = t;
    return MVMOE_OK;
}

/* Every tensor the config needs is in the file with its shape, and nothing else is. Checked
 * on the layout alone, before the weights are allocated: a small file whose config claims a
 * huge model must fail here, not after allocating and zeroing the gigabytes it claims. */
/* int8 checkpoints: "<weight>_scale" belongs to an int8 weight of the layout. */
static int is_scale_of_int8(const mvmoe_layout *L, const char *name) {
    const size_t n = strlen(name), m = strlen("_scale");
    char base[160];
    if (n <= m || n - m >= sizeof base || strcmp(name + n - m, "_scale") != 0) return 0;
    memcpy(base, name, n - m);
    base[n - m] = 0;
    return mvmoe_layout_find(L, base) && mvmoe_layout_is_int8(base);
}

static mvmoe_status check_tensors(const mvmoe_layout *L, const mvmoe_st_file *f, int src_grid, int int8) {
    const mvmoe_st_tensor *t;
    for (int i = 0; i < L->n; i++) MVMOE_TRY(find_matching(f, &L->t[i], src_grid, &t));
    for (int i = 0; i < f->n_tensors; i++)
        if (!mvmoe_layout_find(L, f->tensors[i].name) && !(int8 && is_scale_of_int8(L, f->tensors[i].name)))
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s: unexpected tensor '%s' (not part of the model its config describes)",
                       f->path, f->tensors[i].name);
    return MVMOE_OK;
}

static mvmoe_status load_tensors(mvmoe_model *m, const mvmoe_st_file *f, int src_grid, int int8) {
    const mvmoe_layout *L = &m->layout;
    for (int i = 0; i < L->n; i++) {
        const mvmoe_tensor_info *ti = &L->t[i];
        const mvmoe_st_tensor *t;
        MVMOE_TRY(find_matching(f, ti, src_grid, &t));
        float *dst = m->param_mem + ti->offset;
        if (strcmp(ti->name, "pos_embed") == 0 && t->shape[1] != ti->shape[1]) {
            size_t cnt = (size_t)t->shape[1] * (size_t)ti->shape[2];
            float *tmp;
            MVMOE_ALLOC(tmp, cnt, "pos_embed resampling");
            mvmoe_status s = mvmoe_st_read_f32(f, t, tmp, cnt);
            if (s == MVMOE_OK) {
                int g2 = (int)llround(sqrt((double)(ti->shape[1] - 1)));
                mvmoe_posembed_resample(dst, tmp, src_grid, g2, (int)ti->shape[2]);
            }
            free(tmp);
            MVMOE_TRY(s);
        } else if (int8 && mvmoe_layout_is_int8(ti->name)) {
            MVMOE_TRY(load_int8(dst, f, ti, t));
        } else {
            MVMOE_TRY(mvmoe_st_read_f32(f, t, dst, ti->count));
        }
        /* a NaN or Inf weight makes every logit NaN, which evaluation would report as an
         * accuracy: refuse the file, naming the tensor */
        for (size_t j = 0; j < ti->count; j++)
            if (!isfinite(dst[j]))
                MVMOE_FAIL(MVMOE_ERR_NUMERIC,
                           "%s: tensor '%s' holds %s at element %zu; the checkpoint is corrupt or "
                           "from a training that diverged; use an earlier checkpoint",
                           f->path, ti->name, isnan(dst[j]) ? "NaN" : "an infinity", j);
    }
    mvmoe_model_params_changed(m);
    return MVMOE_OK;
}

mvmoe_status mvmoe_model_load(mvmoe_model **out, const char *path, const mvmoe_load_options *o) {
    *out = NULL;
    mvmoe_st_file f;
    MVMOE_TRY(mvmoe_st_open(&f, path));
    mvmoe_config c;
    memset(&c, 0, sizeof c);
    c.top_k = 1;
    const char *quant = mvmoe_st_meta(&f, "quantization");
    const int int8 = quant != NULL;
    if (quant && strcmp(quant, MVMOE_INT8_QUANTIZATION) != 0) {
        mvmoe_error_set(MVMOE_ERR_UNSUPPORTED, __FILE__, __LINE__,
                        "%s: quantization '%.80s' is not one mvmoe reads (only %s, written by "
                        "'mvmoe quantize')", path, quant, MVMOE_INT8_QUANTIZATION);
        mvmoe_st_close(&f);
        return MVMOE_ERR_UNSUPPORTED;
    }
    for (int k = 0; k < MVMOE_MAX_CHANNELS; k++) c.mean[k] = c.std[k] = 0.5f;
    const char *json = mvmoe_st_meta(&f, "config");
    mvmoe_status s = json ? mvmoe_config_from_json(&c, json, strlen(json)) : infer_config(&c, &f, o);
    if (s != MVMOE_OK && json) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mvmoe_last_error());
        mvmoe_error_set(s, __FILE__, __LINE__, "%s: %s", path, msg);
    }
    if (s == MVMOE_OK && o && o->adaptive_k != 0) {
        if (!(o->adaptive_k > 0 && o->adaptive_k <= 1))
            s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                                "adaptive-k threshold %g is not in (0, 1]: it is a router probability",
                                (double)o->adaptive_k);
        else if (c.routing == MVMOE_ROUTING_DENSE || c.top_k < 2)
            s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                                "%s: adaptive k needs a MoE model with top_k >= 2; this one is %s with top_k %d "
                                "(train one with --top-k 2)",
                                path, mvmoe_routing_name(c.routing), c.routing == MVMOE_ROUTING_DENSE ? 0 : c.top_k);
    }
    if (s == MVMOE_OK && o) {
        for (int k = 0; k < o->in_chans_mean_std && k < MVMOE_MAX_CHANNELS; k++) {
            c.mean[k] = o->mean[k];
            c.std[k] = o->std[k];
        }
    }
    int src_grid = c.patch > 0 ? c.img_size / c.patch : 0;
    if (s == MVMOE_OK && o && o->img_size > 0 && o->img_size != c.img_size) {
        if (o->img_size % c.patch != 0)
            s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                                "image size %d is not a multiple of the checkpoint's patch %d",
                                o->img_size, c.patch);
        c.img_size = o->img_size; /* pos_embed is resampled (bicubic) in load_tensors */
    }
    if (s == MVMOE_OK) {
        mvmoe_layout layout;
        s = mvmoe_layout_build(&layout, &c);
        if (s == MVMOE_OK) s = check_tensors(&layout, &f, src_grid, int8);
        mvmoe_layout_free(&layout);
    }
    mvmoe_model *m = NULL;
    if (s == MVMOE_OK) s = mvmoe_model_alloc(&m, &c);
    if (s == MVMOE_OK) s = load_tensors(m, &f, src_grid, int8);
    if (s == MVMOE_OK) {
        const char *step = mvmoe_st_meta(&f, "step");
        char *end = NULL;
        long long v = step ? strtoll(step, &end, 10) : -1;
        m->ckpt_step = step && end && !*end && v >= 0 ? v : -1;
        if (o) m->adaptive_k = o->adaptive_k;
    }
    mvmoe_config_free(&c);
    mvmoe_st_close(&f);
    if (s != MVMOE_OK) {
        mvmoe_model_free(m);
        return s;
    }
    *out = m;
    return MVMOE_OK;
}
