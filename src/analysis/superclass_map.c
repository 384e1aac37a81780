/* Class -> super-class map files (what `mvmoe superclasses` writes, image-superclass routing
 * and `mvmoe report` read; paper Sec. 3.2). JSON with "superclass_of": [K ints] plus readable
 * extras, or a plain text file of K integers. Reading trusts nothing: size cap, exact count,
 * integer values in range, every super-class used, extras consistent with the indices.
 * Writing is atomic (temp file, fsync, rename). */
#include "analysis/superclass_map.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/superclass.h"
#include "core/file.h"
#include "core/status.h"
#include "io/atomic.h"
#include "io/json_fields.h"

/* ---------------------------------------------------------------- reading */

void mvmoe_superclass_map_free(mvmoe_superclass_map *m) {
    if (!m) return;
    free(m->superclass_of);
    if (m->groups)
        for (int e = 0; e < m->E; e++) mvmoe_json_free_strings(m->groups[e], m->sizes ? m->sizes[e] : 0);
    free(m->groups);
    free(m->sizes);
    free(m->method);
    free(m->source);
    memset(m, 0, sizeof *m);
}

/* "superclass_of": K integers in 0..K-1 (K > 0: exactly that many; 0: the array says). */
static mvmoe_status json_indices(mvmoe_superclass_map *m, const mvmoe_json_where *w, const cJSON *o, int K) {
    const cJSON *arr = mvmoe_json_field(o, "superclass_of");
    if (!arr)
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "super-class map '%s' has no field \"superclass_of\" (the class -> super-class "
                   "indices); give the file mvmoe superclasses writes",
                   m->path);
    if (!cJSON_IsArray(arr)) return mvmoe_json_bad(w, "superclass_of", "an array of class -> super-class indices");
    int n = cJSON_GetArraySize(arr);
    if (K > 0 && n != K)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "the super-class map '%s' maps %d classes, but there are %d classes",
                   m->path, n, K);
    if (n < 1 || n > MVMOE_SUPERCLASS_MAX_K) {
        char must[96];
        snprintf(must, sizeof must, "an array of 1 to %d super-class indices, one per class", MVMOE_SUPERCLASS_MAX_K);
        return mvmoe_json_bad(w, "superclass_of", must);
    }
    MVMOE_ALLOC(m->superclass_of, n, "super-class map");
    m->K = n;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!mvmoe_json_is_int_in(it, 0, n - 1)) {
            char *t = cJSON_PrintUnformatted(it);
            mvmoe_status s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                             "the super-class map '%s': superclass_of[%d] is %s; each "
                                             "entry must be an integer from 0 to %d",
                                             m->path, i, t ? t : "?", n - 1);
            cJSON_free(t);
            return s;
        }
        m->superclass_of[i++] = (int)it->valuedouble;
    }
    return MVMOE_OK;
}

/* "sizes", if present: the class count of each super-class, as superclass_of says. */
static mvmoe_status json_sizes(mvmoe_superclass_map *m, const mvmoe_json_where *w, const cJSON *o,
                               const char *E_source) {
    double *sizes;
    int n = m->E;
    MVMOE_TRY(mvmoe_json_get_nums(w, o, "sizes", &n, m->E, E_source, 1, m->K, 0, &sizes));
    for (int e = 0; sizes && e < m->E; e++)
        if (sizes[e] != m->sizes[e]) {
            free(sizes);
            return mvmoe_json_bad(w, "sizes", "the number of classes of each super-class in \"superclass_of\"");
        }
    free(sizes);
    return MVMOE_OK;
}

/* "groups", if present: one array of class names per super-class, as long as its size. */
static mvmoe_status json_groups(mvmoe_superclass_map *m, const mvmoe_json_where *w, const cJSON *o,
                                const char *E_source) {
    const cJSON *g;
    int E = m->E;
    MVMOE_TRY(mvmoe_json_get_array(w, o, "groups", &E, m->E, E_source, &g));
    if (!g) return MVMOE_OK;
    MVMOE_ALLOC(m->groups, m->E, "super-class groups");
    int e = 0;
    const cJSON *grp;
    cJSON_ArrayForEach(grp, g) {
        if (!cJSON_IsArray(grp) || cJSON_GetArraySize(grp) != m->sizes[e])
            return mvmoe_json_bad(w, "groups", "one array of class names per super-class, as many as its size");
        MVMOE_ALLOC(m->groups[e], m->sizes[e], "super-class group");
        int i = 0;
        const cJSON *nm;
        cJSON_ArrayForEach(nm, grp) {
            if (!cJSON_IsString(nm) || !nm->valuestring) return mvmoe_json_bad(w, "groups", "arrays of class names (strings)");
            if (!(m->groups[e][i++] = strdup(nm->valuestring)))
                MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy the class names of '%s'", m->path);
        }
        e++;
    }
    return MVMOE_OK;
}

/* E = max + 1, and 0..E-1 all used: an unused super-class would be an expert that no class
 * is routed to. Fills m->E and m->sizes. */
static mvmoe_status count_used(mvmoe_superclass_map *m) {
    int E = 0;
    for (int i = 0; i < m->K; i++)
        if (m->superclass_of[i] + 1 > E) E = m->superclass_of[i] + 1;
    MVMOE_ALLOC(m->sizes, E, "super-class counts");
    for (int i = 0; i < m->K; i++) m->sizes[m->superclass_of[i]]++;
    for (int g = 0; g < E; g++)
        if (m->sizes[g] == 0)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "the super-class map '%s' uses super-classes up to %d but none of the %d "
                       "classes is in super-class %d; number them 0..E-1 without gaps",
                       m->path, E - 1, m->K, g);
    m->E = E;
    return MVMOE_OK;
}

static mvmoe_status parse_json(mvmoe_superclass_map *m, const cJSON *o, int K) {
    mvmoe_json_where w = {m->path, "super-class map", ""};
    MVMOE_TRY(json_indices(m, &w, o, K));
    int experts;
    MVMOE_TRY(mvmoe_json_get_int(&w, o, "experts", 1, m->K, &experts));
    MVMOE_TRY(count_used(m));
    if (experts >= 0 && experts != m->E)
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "the super-class map '%s' says \"experts\": %d, but its superclass_of uses %d "
                   "super-classes",
                   m->path, experts, m->E);
    const char *E_source = experts >= 0 ? "\"experts\"" : "\"superclass_of\"";
    MVMOE_TRY(json_sizes(m, &w, o, E_source));
    MVMOE_TRY(json_groups(m, &w, o, E_source));
    MVMOE_TRY(mvmoe_json_get_str(&w, o, "method", &m->method));
    return mvmoe_json_get_str(&w, o, "source", &m->source);
}

/* Whitespace-separated integers, K of them (K == 0: 1 .. MVMOE_SUPERCLASS_MAX_K). */
static mvmoe_status parse_text(mvmoe_superclass_map *m, const char *buf, size_t len, int K) {
    const char *path = m->path;
    char expect[48] = "";
    if (K > 0) snprintf(expect, sizeof expect, "%d ", K);
    if (memchr(buf, '\0', len))
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "the super-class map '%s' is binary; expected JSON or %swhitespace-separated "
                   "integers",
                   path, expect);
    int cap = K > 0 ? K : MVMOE_SUPERCLASS_MAX_K;
    /* a bound on the indices while the count is still unknown; checked against it below */
    int top = K > 0 ? K - 1 : MVMOE_SUPERCLASS_MAX_K - 1;
    MVMOE_ALLOC(m->superclass_of, cap, "super-class map");
    const char *p = buf;
    int n = 0;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && !isspace((unsigned char)*end))) {
            const char *e = end > p ? end : p;
            int tl = 0;
            while (p[tl] && !isspace((unsigned char)p[tl]) && tl < 24) tl++;
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "the super-class map '%s': '%.*s' (byte %ld) is not an integer; expected "
                       "JSON or %swhitespace-separated integers",
                       path, tl, p, (long)(e - buf), expect);
        }
        if (n >= cap) {
            if (K > 0)
                MVMOE_FAIL(MVMOE_ERR_FORMAT, "the super-class map '%s' has more than %d entries, one per class",
                           path, K);
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "the super-class map '%s' has more than %d entries; at most %d classes are supported",
                       path, cap, cap);
        }
        if (errno == ERANGE || v < 0 || v > top)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "the super-class map '%s': entry %d is %.*s; each entry must be an integer "
                       "from 0 to %d",
                       path, n, (int)(end - p), p, top);
        m->superclass_of[n++] = (int)v;
        p = end;
    }
    if (K > 0 && n != K)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "the super-class map '%s' has %d entries, but there are %d classes",
                   path, n, K);
    if (n == 0)
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "the super-class map '%s' has no entries; expected JSON or whitespace-separated "
                   "integers, one per class",
                   path);
    for (int i = 0; K == 0 && i < n; i++)
        if (m->superclass_of[i] >= n)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "the super-class map '%s': entry %d is %d; each entry must be an integer "
                       "from 0 to %d",
                       path, i, m->superclass_of[i], n - 1);
    m->K = n;
    return count_used(m);
}

/* JSON if the first non-blank character, after an optional UTF-8 byte-order mark, is '{'. */
static mvmoe_status parse_file(mvmoe_superclass_map *m, const char *buf, size_t len, int K) {
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB && (unsigned char)buf[2] == 0xBF) {
        buf += 3;
        len -= 3;
    }
    const char *p = buf;
    while (isspace((unsigned char)*p)) p++;
    if (*p != '{') return parse_text(m, p, len - (size_t)(p - buf), K);
    cJSON *o;
    MVMOE_TRY(mvmoe_json_parse_object(m->path, "super-class map", buf, len, &o));
    mvmoe_status s = parse_json(m, o, K);
    cJSON_Delete(o);
    return s;
}

mvmoe_status mvmoe_superclass_map_read(const char *path, int K, mvmoe_superclass_map *m) {
    if (!m) MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map read: output is NULL");
    memset(m, 0, sizeof *m);
    if (!path) MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map read: path is NULL");
    if (K < 0 || K > MVMOE_SUPERCLASS_MAX_K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s': %d classes; 1 to %d are supported", path,
                   K, MVMOE_SUPERCLASS_MAX_K);
    char *buf = NULL;
    size_t len = 0;
    MVMOE_TRY(mvmoe_file_read(path, "super-class map", MVMOE_SUPERCLASS_MAP_MAX_BYTES, &buf, &len));
    m->path = path;
    mvmoe_status s = parse_file(m, buf, len, K);
    free(buf);
    if (s != MVMOE_OK) mvmoe_superclass_map_free(m);
    return s;
}

mvmoe_status mvmoe_superclass_map_load(const char *path, int K, int *superclass_of, int *E_out) {
    if (!path || !superclass_of || !E_out)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map load: path or output is NULL");
    if (K < 1 || K > MVMOE_SUPERCLASS_MAX_K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s': %d classes; 1 to %d are supported", path,
                   K, MVMOE_SUPERCLASS_MAX_K);
    mvmoe_superclass_map m;
    MVMOE_TRY(mvmoe_superclass_map_read(path, K, &m));
    memcpy(superclass_of, m.superclass_of, sizeof *superclass_of * (size_t)K);
    *E_out = m.E;
    mvmoe_superclass_map_free(&m);
    return MVMOE_OK;
}

/* ---------------------------------------------------------------- writing */

static char *build_json(const int *map, int K, int E, const char *const *names, const char *method,
                        const char *source) {
    int ok = 1;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    ok &= cJSON_AddNumberToObject(o, "experts", E) != NULL;
    ok &= (method ? cJSON_AddStringToObject(o, "method", method) : cJSON_AddNullToObject(o, "method")) != NULL;
    ok &= (source ? cJSON_AddStringToObject(o, "source", source) : cJSON_AddNullToObject(o, "source")) != NULL;
    cJSON *sc = cJSON_AddArrayToObject(o, "superclass_of");
    cJSON *sizes = cJSON_AddArrayToObject(o, "sizes");
    cJSON *groups = cJSON_AddArrayToObject(o, "groups");
    ok &= sc && sizes && groups;
    for (int i = 0; ok && i < K; i++) ok &= cJSON_AddItemToArray(sc, cJSON_CreateNumber(map[i]));
    for (int g = 0; ok && g < E; g++) {
        cJSON *members = cJSON_CreateArray();
        ok &= cJSON_AddItemToArray(groups, members);
        int n = 0;
        for (int i = 0; ok && i < K; i++) {
            if (map[i] != g) continue;
            char idx[16];
            snprintf(idx, sizeof idx, "%d", i);
            ok &= cJSON_AddItemToArray(members, cJSON_CreateString(names && names[i] ? names[i] : idx));
            n++;
        }
        ok &= cJSON_AddItemToArray(sizes, cJSON_CreateNumber(n));
    }
    char *text = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return text;
}

/* The map's JSON text and a final newline, for mvmoe_atomic_write. */
static int map_body(FILE *fp, void *ctx) {
    const char *text = ctx;
    size_t len = strlen(text);
    return fwrite(text, 1, len, fp) != len || fputc('\n', fp) == EOF ? (errno ? errno : EIO) : 0;
}

mvmoe_status mvmoe_superclass_map_save(const char *path, const int *superclass_of, int K, int E,
                                       const char *const *class_names, const char *method,
                                       const char *source) {
    if (!path || !superclass_of)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map save: path or map is NULL");
    if (K < 1 || E < 1 || E > K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s': %d super-classes of %d classes", path, E, K);
    int *count;
    MVMOE_ALLOC(count, E, "super-class counts");
    for (int i = 0; i < K; i++) {
        if (superclass_of[i] < 0 || superclass_of[i] >= E) {
            int v = superclass_of[i];
            free(count);
            MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s': class %d is in super-class %d, not in 0..%d",
                       path, i, v, E - 1);
        }
        count[superclass_of[i]]++;
    }
    for (int g = 0; g < E; g++)
        if (!count[g]) {
            free(count);
            MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s': super-class %d has no class", path, g);
        }
    free(count);
    char *text = build_json(superclass_of, K, E, class_names, method, source);
    if (!text) MVMOE_FAIL(MVMOE_ERR_NOMEM, "super-class map '%s': out of memory building the JSON", path);
    mvmoe_status s = mvmoe_atomic_write(path, map_body, text);
    cJSON_free(text);
    return s;
}
