/* Typed fields of JSON files other runs wrote (json_fields.h). */
#include "io/json_fields.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status.h"

/* Parses `text` as exactly one JSON object; errors give the byte offset and line. */
mvmoe_status mvmoe_json_parse_object(const char *path, const char *what, const char *text, size_t len, cJSON **out) {
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

mvmoe_status mvmoe_json_load_object(const char *path, const char *what, size_t max, cJSON **out) {
    char *text = NULL;
    size_t len = 0;
    MVMOE_TRY(mvmoe_file_read(path, what, max, &text, &len));
    mvmoe_status s = mvmoe_json_parse_object(path, what, text, len, out);
    free(text);
    return s;
}

/* ---------------------------------------------------------------- fields */

mvmoe_status mvmoe_json_bad(const mvmoe_json_where *w, const char *key, const char *must) {
    return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                           "%s '%s': field \"%s%s\" must be %s; regenerate the file or fix it", w->what,
                           w->path, w->prefix, key, must);
}

/* The value of `key`, or NULL when it is absent or null. */
const cJSON *mvmoe_json_field(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int is_num_in(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= lo && v->valuedouble <= hi;
}

int mvmoe_json_is_int_in(const cJSON *v, double lo, double hi) {
    return is_num_in(v, lo, hi) && v->valuedouble == floor(v->valuedouble);
}

/* Absent/null: NaN. */
mvmoe_status mvmoe_json_get_num(const mvmoe_json_where *w, const cJSON *o, const char *key, double lo, double hi,
                                const char *must, double *out) {
    const cJSON *v = mvmoe_json_field(o, key);
    *out = NAN;
    if (!v) return MVMOE_OK;
    if (!is_num_in(v, lo, hi)) return mvmoe_json_bad(w, key, must);
    *out = v->valuedouble;
    return MVMOE_OK;
}

/* Absent/null: -1. */
mvmoe_status mvmoe_json_get_int(const mvmoe_json_where *w, const cJSON *o, const char *key, int lo, int hi, int *out) {
    const cJSON *v = mvmoe_json_field(o, key);
    *out = -1;
    if (!v) return MVMOE_OK;
    if (!mvmoe_json_is_int_in(v, lo, hi)) {
        char must[64];
        snprintf(must, sizeof must, "an integer from %d to %d", lo, hi);
        return mvmoe_json_bad(w, key, must);
    }
    *out = (int)v->valuedouble;
    return MVMOE_OK;
}

/* Absent/null: NULL. */
mvmoe_status mvmoe_json_get_str(const mvmoe_json_where *w, const cJSON *o, const char *key, char **out) {
    const cJSON *v = mvmoe_json_field(o, key);
    *out = NULL;
    if (!v) return MVMOE_OK;
    if (!cJSON_IsString(v) || !v->valuestring) return mvmoe_json_bad(w, key, "a string");
    if (!(*out = strdup(v->valuestring)))
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy field \"%s\" of '%s'", key, w->path);
    return MVMOE_OK;
}

/* An array field whose length must be *n (or sets *n when it is 0); NULL when absent. */
mvmoe_status mvmoe_json_get_array(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n, int max,
                                  const char *n_source, const cJSON **out) {
    const cJSON *v = mvmoe_json_field(o, key);
    *out = NULL;
    if (!v) return MVMOE_OK;
    if (!cJSON_IsArray(v)) return mvmoe_json_bad(w, key, "an array");
    int len = cJSON_GetArraySize(v);
    if (*n == 0) {
        if (len < 1 || len > max) {
            char must[80];
            snprintf(must, sizeof must, "an array of 1 to %d entries", max);
            return mvmoe_json_bad(w, key, must);
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
mvmoe_status mvmoe_json_get_nums(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n, int max,
                                 const char *n_source, double lo, double hi, int allow_null, double **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(mvmoe_json_get_array(w, o, key, n, max, n_source, &a));
    if (!a) return MVMOE_OK;
    double *v;
    MVMOE_ALLOC(v, *n, "number array");
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
            return mvmoe_json_bad(w, key, must);
        }
        v[i++] = e->valuedouble;
    }
    *out = v;
    return MVMOE_OK;
}

/* Non-negative integer counts (2^53: exact in a double). */
mvmoe_status mvmoe_json_get_counts(const mvmoe_json_where *w, const cJSON *a, const char *key, int n, int64_t *out) {
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (i >= n || !mvmoe_json_is_int_in(e, 0, 9007199254740992.0)) return mvmoe_json_bad(w, key, "an array of non-negative integers");
        out[i++] = (int64_t)e->valuedouble;
    }
    return i == n ? MVMOE_OK : mvmoe_json_bad(w, key, "an array of non-negative integers");
}

mvmoe_status mvmoe_json_get_count_array(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n, int max,
                                        const char *n_source, int64_t **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(mvmoe_json_get_array(w, o, key, n, max, n_source, &a));
    if (!a) return MVMOE_OK;
    int64_t *v;
    MVMOE_ALLOC(v, *n, "count array");
    mvmoe_status s = mvmoe_json_get_counts(w, a, key, *n, v);
    if (s != MVMOE_OK) {
        free(v);
        return s;
    }
    *out = v;
    return MVMOE_OK;
}

void mvmoe_json_free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

mvmoe_status mvmoe_json_get_strings(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n, int max,
                                    const char *n_source, char ***out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(mvmoe_json_get_array(w, o, key, n, max, n_source, &a));
    if (!a) return MVMOE_OK;
    char **v;
    MVMOE_ALLOC(v, *n, "class names");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsString(e) || !e->valuestring) {
            mvmoe_json_free_strings(v, *n);
            return mvmoe_json_bad(w, key, "an array of strings");
        }
        if (!(v[i++] = strdup(e->valuestring))) {
            mvmoe_json_free_strings(v, *n);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy the class names of '%s'", w->path);
        }
    }
    *out = v;
    return MVMOE_OK;
}

/* superclass_of: K integers in [0, max_index]. */
mvmoe_status mvmoe_json_get_map(const mvmoe_json_where *w, const cJSON *o, const char *key, int *K, int max_classes,
                                int max_index, const char *K_source, int **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(mvmoe_json_get_array(w, o, key, K, max_classes, K_source, &a));
    if (!a) return MVMOE_OK;
    int *v;
    MVMOE_ALLOC(v, *K, "super-class map");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!mvmoe_json_is_int_in(e, 0, max_index)) {
            free(v);
            return mvmoe_json_bad(w, key, "an array of super-class indices (integers from 0)");
        }
        v[i++] = (int)e->valuedouble;
    }
    *out = v;
    return MVMOE_OK;
}
