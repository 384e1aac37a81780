/* The model config of a checkpoint (docs/CHECKPOINT_FORMAT.md §2), read and checked with the
 * library's rules (src/model/config.c, mvmoe_config_validate). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvmoe_run.h"
#include "runtime/rt_json.h"
#include "runtime/rt_model.h"

static int bad(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int o = snprintf(err, errlen, "invalid model config: ");
    if (o > 0 && (size_t)o < errlen) vsnprintf(err + o, errlen - (size_t)o, fmt, ap);
    va_end(ap);
    return -1;
}

/* Integer member `key` (required, or def when absent and def >= 0) into *v. */
static int get_int(const rt_json *d, const char *key, int def, int *v, char *err, size_t errlen) {
    const int x = rt_json_get(d, 0, key);
    if (x < 0) {
        if (def < 0) return bad(err, errlen, "'%s' is missing", key);
        *v = def;
        return 0;
    }
    const double n = d->nodes[x].num;
    if (d->nodes[x].type != RT_J_NUM || n != floor(n) || fabs(n) > 1e9)
        return bad(err, errlen, "'%s' is not an integer", key);
    *v = (int)n;
    return 0;
}

/* mean/std: a number, or an array of 1..4 numbers whose last value fills the remaining
 * channels; default 0.5. */
static int get_norm(const rt_json *d, const char *key, float *out, char *err, size_t errlen) {
    const int x = rt_json_get(d, 0, key);
    for (int c = 0; c < 4; c++) out[c] = 0.5f;
    if (x < 0) return 0;
    if (d->nodes[x].type == RT_J_NUM) {
        for (int c = 0; c < 4; c++) out[c] = (float)d->nodes[x].num;
        return 0;
    }
    if (d->nodes[x].type != RT_J_ARR || d->nodes[x].count < 1 || d->nodes[x].count > 4)
        return bad(err, errlen, "'%s' must be a number or an array of 1 to 4 numbers", key);
    int c = 0;
    for (int e = d->nodes[x].child; e >= 0; e = d->nodes[e].next, c++) {
        if (d->nodes[e].type != RT_J_NUM) return bad(err, errlen, "'%s'[%d] is not a number", key, c);
        out[c] = (float)d->nodes[e].num;
    }
    for (; c < 4; c++) out[c] = out[c - 1];
    return 0;
}

static int get_names(const rt_json *d, rt_config *c, char *err, size_t errlen) {
    const int x = rt_json_get(d, 0, "class_names");
    if (x < 0 || d->nodes[x].type == RT_J_NULL) return 0;
    if (d->nodes[x].type != RT_J_ARR || d->nodes[x].count != c->num_classes)
        return bad(err, errlen, "'class_names' must be an array of num_classes (%d) strings", c->num_classes);
    if (!(c->class_names = calloc((size_t)c->num_classes, sizeof *c->class_names)))
        return bad(err, errlen, "out of memory for the class names");
    int i = 0;
    for (int e = d->nodes[x].child; e >= 0; e = d->nodes[e].next, i++) {
        if (d->nodes[e].type != RT_J_STR) return bad(err, errlen, "class_names[%d] is not a string", i);
        const size_t cap = d->nodes[e].len + 1;
        if (!(c->class_names[i] = malloc(cap)) || rt_json_str(d, e, c->class_names[i], cap) < 0)
            return bad(err, errlen, "out of memory for the class names");
    }
    return 0;
}

int rt_config_parse(rt_config *c, const char *text, char *err, size_t errlen, int *status) {
    memset(c, 0, sizeof *c);
    *status = MVMOE_RUN_ERR_FORMAT;
    rt_json d;
    char jerr[160];
    if (rt_json_parse(&d, text, strlen(text), jerr, sizeof jerr)) return bad(err, errlen, "not JSON (%s)", jerr);
    int rc = d.nodes[0].type == RT_J_OBJ ? 0 : bad(err, errlen, "not a JSON object");
    rc = rc ? rc : get_int(&d, "img_size", -1, &c->img_size, err, errlen);
    rc = rc ? rc : get_int(&d, "in_chans", -1, &c->in_chans, err, errlen);
    rc = rc ? rc : get_int(&d, "patch", -1, &c->patch, err, errlen);
    rc = rc ? rc : get_int(&d, "dim", -1, &c->dim, err, errlen);
    rc = rc ? rc : get_int(&d, "depth", -1, &c->depth, err, errlen);
    rc = rc ? rc : get_int(&d, "heads", -1, &c->heads, err, errlen);
    rc = rc ? rc : get_int(&d, "mlp_dim", -1, &c->mlp_dim, err, errlen);
    rc = rc ? rc : get_int(&d, "num_classes", -1, &c->num_classes, err, errlen);
    rc = rc ? rc : get_int(&d, "experts", 0, &c->experts, err, errlen);
    rc = rc ? rc : get_int(&d, "top_k", 1, &c->top_k, err, errlen);
    rc = rc ? rc : get_int(&d, "moe_layers", 0, &c->moe_layers, err, errlen);
    rc = rc ? rc : get_norm(&d, "mean", c->mean, err, errlen);
    rc = rc ? rc : get_norm(&d, "std", c->std, err, errlen);
    const int r = rc ? -1 : rt_json_get(&d, 0, "routing");
    if (!rc && r >= 0) {
        if (rt_json_str_is(&d, r, "dense")) c->routing = RT_DENSE;
        else if (rt_json_str_is(&d, r, "image-superclass")) c->routing = RT_IMAGE_SUPERCLASS;
        else if (rt_json_str_is(&d, r, "image-learned")) c->routing = RT_IMAGE_LEARNED;
        else if (rt_json_str_is(&d, r, "token-learned")) {
            *status = MVMOE_RUN_ERR_UNSUPPORTED;
            rc = -1;
            snprintf(err, errlen, "routing token-learned (one router per token) is unsupported by mvmoe-run, which "
                     "runs dense and per-image routing (image-superclass, image-learned); evaluate it with `mvmoe eval`");
        } else rc = bad(err, errlen, "unknown routing (use dense, image-superclass, image-learned or token-learned)");
    }
    rc = rc ? rc : get_names(&d, c, err, errlen);
    rt_json_free(&d);
    if (rc) return rc;
#define REQUIRE(cond, ...) \
    if (!(cond)) return bad(err, errlen, __VA_ARGS__)
    REQUIRE(c->img_size > 0 && c->img_size <= 4096, "img_size %d not in 1..4096", c->img_size);
    REQUIRE(c->in_chans >= 1 && c->in_chans <= 4, "in_chans %d not in 1..4", c->in_chans);
    REQUIRE(c->patch > 0 && c->img_size % c->patch == 0, "patch %d must divide img_size %d", c->patch, c->img_size);
    REQUIRE(c->img_size / c->patch <= 256, "too many patches");
    REQUIRE(c->dim > 0 && c->dim <= 16384, "dim %d not in 1..16384", c->dim);
    REQUIRE(c->depth > 0 && c->depth <= 256, "depth %d not in 1..256", c->depth);
    REQUIRE(c->heads > 0 && c->dim % c->heads == 0, "heads %d must divide dim %d", c->heads, c->dim);
    REQUIRE(c->mlp_dim > 0 && c->mlp_dim <= 65536, "mlp_dim %d not in 1..65536", c->mlp_dim);
    REQUIRE(c->num_classes >= 1 && c->num_classes <= 100000, "num_classes %d not in 1..100000", c->num_classes);
    for (int k = 0; k < c->in_chans; k++) {
        REQUIRE(isfinite(c->mean[k]), "mean[%d] is not finite", k);
        REQUIRE(isfinite(c->std[k]) && c->std[k] > 0, "std[%d] must be > 0", k);
    }
    if (c->routing == RT_DENSE) {
        REQUIRE(c->experts == 0 && c->moe_layers == 0, "routing dense needs experts = 0 and moe_layers = 0");
    } else {
        REQUIRE(c->experts >= 1 && c->experts <= 1024, "experts %d not in 1..1024", c->experts);
        REQUIRE(c->top_k >= 1 && c->top_k <= c->experts && c->top_k <= 64, "top_k %d must be in 1..experts",
                c->top_k);
        REQUIRE(c->moe_layers >= 1 && c->moe_layers < c->depth, "moe_layers %d must be in 1..depth-1",
                c->moe_layers);
    }
#undef REQUIRE
    *status = MVMOE_RUN_OK;
    return 0;
}

void rt_config_free(rt_config *c) {
    if (c->class_names)
        for (int i = 0; i < c->num_classes; i++) free(c->class_names[i]);
    free(c->class_names);
    c->class_names = NULL;
}
