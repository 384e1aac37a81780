/* Readers of the report's inputs: the JSON that `mvmoe eval --json` prints and the super-class
 * map that `mvmoe superclasses` writes. Files from older versions lack fields, so a field that
 * is absent or null just leaves its part of the report out; a field that is present with the
 * wrong type or an impossible value is an error that names the file and the field. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "report/report.h"

/* ---------------------------------------------------------------- files */

/* Reads a whole file, NUL-terminated; more than `max` bytes is refused (read in chunks, so a
 * pipe or a growing file is capped as well). */
static mvmoe_status read_text(const char *path, const char *what, size_t max, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) MVMOE_FAIL(MVMOE_ERR_IO, "cannot open %s '%s': %s; check the path", what, path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            if (cap > max + 1) break;
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > max || got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate memory to read %s '%s'", what, path);
    if (n > max) {
        free(buf);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s '%s' is larger than %zu MiB; is it the right file?", what, path, max >> 20);
    }
    if (err) {
        free(buf);
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot read %s '%s'", what, path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return MVMOE_OK;
}

/* Parses `text` as exactly one JSON value; errors give the byte offset and line. */
static mvmoe_status parse_json(const char *path, const char *what, const char *text, size_t len, cJSON **out) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    if (root) {
        while (at < len && strchr(" \t\r\n", text[at]) && text[at]) at++;
        if (at < len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        int line = 1;
        for (size_t i = 0; i < at && i < len; i++) line += text[i] == '\n';
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s '%s' is not valid JSON (error near byte %zu, line %d)%s", what, path,
                   at, line, len == 0 ? ": the file is empty" : "");
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s '%s' must hold a JSON object ({...})", what, path);
    }
    *out = root;
    return MVMOE_OK;
}

static mvmoe_status load_object(const char *path, const char *what, size_t max, cJSON **out) {
    char *text = NULL;
    size_t len = 0;
    MVMOE_TRY(read_text(path, what, max, &text, &len));
    mvmoe_status s = parse_json(path, what, text, len, out);
    free(text);
    return s;
}

/* ---------------------------------------------------------------- fields */

/* Where messages say a field is: file and dotted field name ("moe.expert_load"). */
typedef struct where {
    const char *path, *what, *prefix;
} where;

static mvmoe_status bad(const where *w, const char *key, const char *must) {
    return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                           "%s '%s': field \"%s%s\" must be %s; regenerate the file or fix it", w->what,
                           w->path, w->prefix, key, must);
}

/* The value of `key`, or NULL when it is absent or null. */
static const cJSON *field(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int is_num_in(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= lo && v->valuedouble <= hi;
}

static int is_int_in(const cJSON *v, double lo, double hi) {
    return is_num_in(v, lo, hi) && v->valuedouble == floor(v->valuedouble);
}

/* Absent/null: NaN. */
static mvmoe_status get_num(const where *w, const cJSON *o, const char *key, double lo, double hi,
                            const char *must, double *out) {
    const cJSON *v = field(o, key);
    *out = NAN;
    if (!v) return MVMOE_OK;
    if (!is_num_in(v, lo, hi)) return bad(w, key, must);
    *out = v->valuedouble;
    return MVMOE_OK;
}

/* Absent/null: -1. */
static mvmoe_status get_int(const where *w, const cJSON *o, const char *key, int lo, int hi, int *out) {
    const cJSON *v = field(o, key);
    *out = -1;
    if (!v) return MVMOE_OK;
    if (!is_int_in(v, lo, hi)) {
        char must[64];
        snprintf(must, sizeof must, "an integer from %d to %d", lo, hi);
        return bad(w, key, must);
    }
    *out = (int)v->valuedouble;
    return MVMOE_OK;
}

/* Absent/null: NULL. */
static mvmoe_status get_str(const where *w, const cJSON *o, const char *key, char **out) {
    const cJSON *v = field(o, key);
    *out = NULL;
    if (!v) return MVMOE_OK;
    if (!cJSON_IsString(v) || !v->valuestring) return bad(w, key, "a string");
    if (!(*out = strdup(v->valuestring)))
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy field \"%s\" of '%s'", key, w->path);
    return MVMOE_OK;
}

/* An array field whose length must be *n (or sets *n when it is 0); NULL when absent. */
static mvmoe_status get_array(const where *w, const cJSON *o, const char *key, int *n, int max,
                              const char *n_source, const cJSON **out) {
    const cJSON *v = field(o, key);
    *out = NULL;
    if (!v) return MVMOE_OK;
    if (!cJSON_IsArray(v)) return bad(w, key, "an array");
    int len = cJSON_GetArraySize(v);
    if (*n == 0) {
        if (len < 1 || len > max) {
            char must[80];
            snprintf(must, sizeof must, "an array of 1 to %d entries", max);
            return bad(w, key, must);
        }
        *n = len;
    } else if (len != *n) {
        return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                               "%s '%s': field \"%s%s\" has %d entries, but %s says %d; regenerate the file",
                               w->what, w->path, w->prefix, key, len, n_source, *n);
    }
    *out = v;
    return MVMOE_OK;
}

/* Numbers in [lo, hi], null entries allowed (NaN) when allow_null. */
static mvmoe_status get_nums(const where *w, const cJSON *o, const char *key, int *n, int max,
                             const char *n_source, double lo, double hi, int allow_null, double **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(get_array(w, o, key, n, max, n_source, &a));
    if (!a) return MVMOE_OK;
    double *v;
    MVMOE_ALLOC(v, *n, "report: number array");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (cJSON_IsNull(e) && allow_null) {
            v[i++] = NAN;
            continue;
        }
        if (!is_num_in(e, lo, hi)) {
            free(v);
            char must[96];
            snprintf(must, sizeof must, "an array of numbers from %g to %g%s", lo, hi, allow_null ? " (or null)" : "");
            return bad(w, key, must);
        }
        v[i++] = e->valuedouble;
    }
    *out = v;
    return MVMOE_OK;
}

/* Non-negative integer counts (2^53: exact in a double). */
static mvmoe_status get_counts(const where *w, const cJSON *a, const char *key, int n, int64_t *out) {
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (i >= n || !is_int_in(e, 0, 9007199254740992.0)) return bad(w, key, "an array of non-negative integers");
        out[i++] = (int64_t)e->valuedouble;
    }
    return i == n ? MVMOE_OK : bad(w, key, "an array of non-negative integers");
}

static mvmoe_status get_count_array(const where *w, const cJSON *o, const char *key, int *n, int max,
                                    const char *n_source, int64_t **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(get_array(w, o, key, n, max, n_source, &a));
    if (!a) return MVMOE_OK;
    int64_t *v;
    MVMOE_ALLOC(v, *n, "report: count array");
    mvmoe_status s = get_counts(w, a, key, *n, v);
    if (s != MVMOE_OK) {
        free(v);
        return s;
    }
    *out = v;
    return MVMOE_OK;
}

static void free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

static mvmoe_status get_strings(const where *w, const cJSON *o, const char *key, int *n, int max,
                                const char *n_source, char ***out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(get_array(w, o, key, n, max, n_source, &a));
    if (!a) return MVMOE_OK;
    char **v;
    MVMOE_ALLOC(v, *n, "report: class names");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsString(e) || !e->valuestring) {
            free_strings(v, *n);
            return bad(w, key, "an array of strings");
        }
        if (!(v[i++] = strdup(e->valuestring))) {
            free_strings(v, *n);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy the class names of '%s'", w->path);
        }
    }
    *out = v;
    return MVMOE_OK;
}

/* superclass_of: K integers in [0, max). */
static mvmoe_status get_map(const where *w, const cJSON *o, const char *key, int *K, const char *K_source,
                            int **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(get_array(w, o, key, K, MVMOE_REPORT_MAX_CLASSES, K_source, &a));
    if (!a) return MVMOE_OK;
    int *v;
    MVMOE_ALLOC(v, *K, "report: super-class map");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!is_int_in(e, 0, MVMOE_REPORT_MAX_EXPERTS - 1)) {
            free(v);
            return bad(w, key, "an array of super-class indices (integers from 0)");
        }
        v[i++] = (int)e->valuedouble;
    }
    *out = v;
    return MVMOE_OK;
}

/* ---------------------------------------------------------------- eval JSON */

void mvmoe_report_eval_free(mvmoe_report_eval *e) {
    free(e->model);
    free(e->data);
    free(e->split);
    free_strings(e->class_names, e->K);
    free(e->per_class);
    free(e->confusion);
    free(e->superclass_of);
    free(e->expert_load);
    free(e->expert_images);
    free(e->expert_acc);
    memset(e, 0, sizeof *e);
}

int mvmoe_report_eval_is_dense(const mvmoe_report_eval *e) { return strcmp(e->routing, "dense") == 0; }

static mvmoe_status parse_confusion(const where *w, const cJSON *o, int *K, const char *K_source,
                                    int64_t **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(get_array(w, o, "confusion", K, MVMOE_REPORT_MAX_CLASSES, K_source, &a));
    if (!a) return MVMOE_OK;
    int64_t *c;
    MVMOE_ALLOC(c, (size_t)*K * (size_t)*K, "report: confusion matrix");
    int i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != *K ||
            get_counts(w, row, "confusion", *K, c + (size_t)i * (size_t)*K) != MVMOE_OK) {
            free(c);
            char must[96];
            snprintf(must, sizeof must, "%d rows of %d non-negative integers", *K, *K);
            return bad(w, "confusion", must);
        }
        i++;
    }
    *out = c;
    return MVMOE_OK;
}

static const char *const ROUTINGS[] = {"dense", "image-superclass", "image-learned", "token-learned"};

static mvmoe_status parse_config(mvmoe_report_eval *e, const cJSON *cfg, const char *K_source) {
    where w = {e->path, "eval JSON", "config."};
    const cJSON *r = field(cfg, "routing");
    if (r) {
        int ok = 0;
        for (size_t i = 0; cJSON_IsString(r) && i < sizeof ROUTINGS / sizeof ROUTINGS[0]; i++)
            ok |= strcmp(r->valuestring, ROUTINGS[i]) == 0;
        if (!ok) return bad(&w, "routing", "one of dense, image-superclass, image-learned, token-learned");
        snprintf(e->routing, sizeof e->routing, "%s", r->valuestring);
    }
    const int big = 1 << 30;
    MVMOE_TRY(get_int(&w, cfg, "img_size", 1, big, &e->img_size));
    MVMOE_TRY(get_int(&w, cfg, "in_chans", 1, big, &e->in_chans));
    MVMOE_TRY(get_int(&w, cfg, "patch", 1, big, &e->patch));
    MVMOE_TRY(get_int(&w, cfg, "dim", 1, big, &e->dim));
    MVMOE_TRY(get_int(&w, cfg, "depth", 0, big, &e->depth));
    MVMOE_TRY(get_int(&w, cfg, "heads", 1, big, &e->heads));
    MVMOE_TRY(get_int(&w, cfg, "mlp_dim", 1, big, &e->mlp_dim));
    MVMOE_TRY(get_int(&w, cfg, "experts", 0, MVMOE_REPORT_MAX_EXPERTS, &e->experts));
    MVMOE_TRY(get_int(&w, cfg, "top_k", 0, MVMOE_REPORT_MAX_EXPERTS, &e->top_k));
    MVMOE_TRY(get_int(&w, cfg, "moe_layers", 0, big, &e->moe_layers));
    int nc;
    MVMOE_TRY(get_int(&w, cfg, "num_classes", 1, MVMOE_REPORT_MAX_CLASSES, &nc));
    if (nc > 0 && e->K > 0 && nc != e->K)
        return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                               "eval JSON '%s': field \"config.num_classes\" is %d, but %s says %d; regenerate the file",
                               e->path, nc, K_source, e->K);
    if (nc > 0) e->K = nc;
    if (!e->class_names) MVMOE_TRY(get_strings(&w, cfg, "class_names", &e->K, MVMOE_REPORT_MAX_CLASSES, K_source, &e->class_names));
    MVMOE_TRY(get_map(&w, cfg, "superclass_of", &e->K, K_source, &e->superclass_of));
    e->has_config = 1;
    return MVMOE_OK;
}

static mvmoe_status parse_moe(mvmoe_report_eval *e, const cJSON *moe) {
    where w = {e->path, "eval JSON", "moe."};
    int E;
    MVMOE_TRY(get_int(&w, moe, "experts", 0, MVMOE_REPORT_MAX_EXPERTS, &E));
    if (E < 0) E = e->experts > 0 ? e->experts : 0; /* else the arrays' length tells */
    const char *src = "\"moe.experts\"";
    MVMOE_TRY(get_num(&w, moe, "router_acc", 0, 1, "a number from 0 to 1 (or null)", &e->router_acc));
    MVMOE_TRY(get_count_array(&w, moe, "expert_load", &E, MVMOE_REPORT_MAX_EXPERTS, src, &e->expert_load));
    MVMOE_TRY(get_count_array(&w, moe, "expert_images", &E, MVMOE_REPORT_MAX_EXPERTS, src, &e->expert_images));
    MVMOE_TRY(get_nums(&w, moe, "expert_acc", &E, MVMOE_REPORT_MAX_EXPERTS, src, 0, 1, 1, &e->expert_acc));
    e->moe_experts = E;
    return MVMOE_OK;
}

static mvmoe_status parse_eval(mvmoe_report_eval *e, const cJSON *o) {
    where w = {e->path, "eval JSON", ""};
    const char *K_source = "\"num_classes\"";
    if (!field(o, "top1"))
        return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                               "eval JSON '%s' has no field \"top1\"; give files written by mvmoe eval --json",
                               e->path);
    MVMOE_TRY(get_num(&w, o, "top1", 0, 1, "a number from 0 to 1", &e->top1));
    MVMOE_TRY(get_num(&w, o, "top5", 0, 1, "a number from 0 to 1", &e->top5));
    MVMOE_TRY(get_num(&w, o, "loss", 0, INFINITY, "a non-negative number", &e->loss));
    MVMOE_TRY(get_num(&w, o, "n", 0, 9007199254740992.0, "a non-negative number", &e->n));
    if (isnan(e->n)) e->n = -1;
    MVMOE_TRY(get_str(&w, o, "model", &e->model));
    MVMOE_TRY(get_str(&w, o, "data", &e->data));
    MVMOE_TRY(get_str(&w, o, "split", &e->split));
    MVMOE_TRY(get_int(&w, o, "num_classes", 1, MVMOE_REPORT_MAX_CLASSES, &e->K));
    if (e->K < 0) {
        e->K = 0;
        K_source = "another field"; /* the first array sets K */
    }
    MVMOE_TRY(get_strings(&w, o, "class_names", &e->K, MVMOE_REPORT_MAX_CLASSES, K_source, &e->class_names));
    MVMOE_TRY(get_nums(&w, o, "per_class", &e->K, MVMOE_REPORT_MAX_CLASSES, K_source, 0, 1, 1, &e->per_class));
    MVMOE_TRY(parse_confusion(&w, o, &e->K, K_source, &e->confusion));
    MVMOE_TRY(get_num(&w, o, "params", 0, INFINITY, "a non-negative number", &e->params));
    MVMOE_TRY(get_num(&w, o, "active_params", 0, INFINITY, "a non-negative number", &e->active_params));
    MVMOE_TRY(get_num(&w, o, "flops", 0, INFINITY, "a non-negative number", &e->flops));
    const cJSON *cfg = field(o, "config");
    if (cfg) {
        if (!cJSON_IsObject(cfg)) return bad(&w, "config", "an object (the checkpoint's config)");
        MVMOE_TRY(parse_config(e, cfg, K_source));
    }
    const cJSON *moe = field(o, "moe");
    if (moe) {
        if (!cJSON_IsObject(moe)) return bad(&w, "moe", "an object");
        MVMOE_TRY(parse_moe(e, moe));
    }
    return MVMOE_OK;
}

mvmoe_status mvmoe_report_eval_load(mvmoe_report_eval *e, const char *name, const char *path) {
    memset(e, 0, sizeof *e);
    e->name = name;
    e->path = path;
    e->n = -1;
    e->top1 = e->top5 = e->loss = e->router_acc = NAN;
    e->params = e->active_params = e->flops = NAN;
    e->img_size = e->in_chans = e->patch = e->dim = e->depth = e->heads = e->mlp_dim = -1;
    e->experts = e->top_k = e->moe_layers = -1;
    cJSON *o;
    MVMOE_TRY(load_object(path, "eval JSON", MVMOE_REPORT_EVAL_MAX_BYTES, &o));
    mvmoe_status s = parse_eval(e, o);
    cJSON_Delete(o);
    if (s != MVMOE_OK) mvmoe_report_eval_free(e);
    e->name = name;
    e->path = path;
    return s;
}

/* ---------------------------------------------------------------- super-class map */

void mvmoe_report_map_free(mvmoe_report_map *m) {
    free(m->superclass_of);
    if (m->groups)
        for (int e = 0; e < m->E; e++) free_strings(m->groups[e], m->sizes ? m->sizes[e] : 0);
    free(m->groups);
    free(m->sizes);
    free(m->method);
    free(m->source);
    memset(m, 0, sizeof *m);
}

/* "groups": one array of class names per super-class, as long as its size. */
static mvmoe_status parse_groups(mvmoe_report_map *m, const where *w, const cJSON *o) {
    const cJSON *g;
    int E = m->E;
    MVMOE_TRY(get_array(w, o, "groups", &E, MVMOE_REPORT_MAX_EXPERTS, "\"experts\"", &g));
    if (!g) return MVMOE_OK;
    MVMOE_ALLOC(m->groups, m->E, "report: super-class groups");
    int e = 0;
    const cJSON *grp;
    cJSON_ArrayForEach(grp, g) {
        if (!cJSON_IsArray(grp) || cJSON_GetArraySize(grp) != m->sizes[e])
            return bad(w, "groups", "one array of class names per super-class, as many as its size");
        MVMOE_ALLOC(m->groups[e], m->sizes[e], "report: super-class group");
        int i = 0;
        const cJSON *nm;
        cJSON_ArrayForEach(nm, grp) {
            if (!cJSON_IsString(nm) || !nm->valuestring) return bad(w, "groups", "arrays of class names (strings)");
            if (!(m->groups[e][i++] = strdup(nm->valuestring)))
                MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy the class names of '%s'", w->path);
        }
        e++;
    }
    return MVMOE_OK;
}

static mvmoe_status parse_map(mvmoe_report_map *m, const cJSON *o) {
    where w = {m->path, "super-class map", ""};
    if (!field(o, "superclass_of"))
        return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                               "super-class map '%s' has no field \"superclass_of\"; give the file mvmoe superclasses writes",
                               m->path);
    MVMOE_TRY(get_map(&w, o, "superclass_of", &m->K, "", &m->superclass_of));
    int E, top = 0;
    MVMOE_TRY(get_int(&w, o, "experts", 1, MVMOE_REPORT_MAX_EXPERTS, &E));
    for (int k = 0; k < m->K; k++)
        if (m->superclass_of[k] >= top) top = m->superclass_of[k] + 1;
    if (E < 0) E = top;
    if (top > E)
        return bad(&w, "superclass_of", "an array of super-class indices below \"experts\"");
    m->E = E;
    MVMOE_ALLOC(m->sizes, E, "report: super-class sizes");
    for (int k = 0; k < m->K; k++) m->sizes[m->superclass_of[k]]++;
    for (int e = 0; e < E; e++)
        if (m->sizes[e] == 0)
            return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                   "super-class map '%s': super-class %d has no class; every one of the %d needs at least one",
                                   m->path, e, E);
    double *sizes;
    int n = E;
    MVMOE_TRY(get_nums(&w, o, "sizes", &n, MVMOE_REPORT_MAX_EXPERTS, "\"experts\"", 1, MVMOE_REPORT_MAX_CLASSES, 0, &sizes));
    for (int e = 0; sizes && e < E; e++)
        if (sizes[e] != m->sizes[e]) {
            free(sizes);
            return bad(&w, "sizes", "the number of classes of each super-class in \"superclass_of\"");
        }
    free(sizes);
    MVMOE_TRY(parse_groups(m, &w, o));
    MVMOE_TRY(get_str(&w, o, "method", &m->method));
    MVMOE_TRY(get_str(&w, o, "source", &m->source));
    return MVMOE_OK;
}

mvmoe_status mvmoe_report_map_load(mvmoe_report_map *m, const char *path) {
    memset(m, 0, sizeof *m);
    m->path = path;
    cJSON *o;
    MVMOE_TRY(load_object(path, "super-class map", MVMOE_REPORT_MAP_MAX_BYTES, &o));
    mvmoe_status s = parse_map(m, o);
    cJSON_Delete(o);
    if (s != MVMOE_OK) mvmoe_report_map_free(m);
    m->path = path;
    return s;
}
