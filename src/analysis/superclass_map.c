/* Class -> super-class map files (what `mvmoe superclasses` writes and image-superclass
 * routing reads, paper Sec. 3.2). JSON with "superclass_of": [K ints] plus readable extras,
 * or a plain text file of K integers. Reading trusts nothing: size cap, exact count, integer
 * values in range, every super-class used. Writing is atomic (temp file, fsync, rename). */
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/superclass.h"
#include "core/file.h"
#include "core/status.h"
#include "io/atomic.h"

/* Far above any real map (K ints plus K names), far below anything that hurts to read. */
#define MAP_MAX_BYTES (16L * 1024 * 1024)

/* ---------------------------------------------------------------- reading */

static mvmoe_status parse_json(const char *path, const char *buf, size_t len, int K, int *map,
                               int *experts) {
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= buf && at <= buf + len ? (long)(at - buf) : -1;
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "the super-class map '%s' starts like JSON but is not valid JSON (error near "
                   "byte %ld)",
                   path, off);
    }
    mvmoe_status s = MVMOE_OK;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "superclass_of");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "experts");
    *experts = -1;
    if (!cJSON_IsObject(root) || !cJSON_IsArray(arr)) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "the super-class map '%s' has no \"superclass_of\" array of class -> "
                            "super-class indices",
                            path);
        goto done;
    }
    int n = cJSON_GetArraySize(arr);
    if (n != K) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "the super-class map '%s' maps %d classes, but there are %d classes", path,
                            n, K);
        goto done;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        if (!(v >= 0 && v < K && v == floor(v))) {
            char *t = cJSON_PrintUnformatted(it);
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "the super-class map '%s': superclass_of[%d] is %s; each entry must "
                                "be an integer from 0 to %d",
                                path, i, t ? t : "?", K - 1);
            cJSON_free(t);
            goto done;
        }
        map[i++] = (int)v;
    }
    if (ex) {
        double v = cJSON_IsNumber(ex) ? ex->valuedouble : NAN;
        if (!(v >= 1 && v <= K && v == floor(v))) {
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "the super-class map '%s': \"experts\" must be an integer from 1 to %d",
                                path, K);
            goto done;
        }
        *experts = (int)v;
    }
done:
    cJSON_Delete(root);
    return s;
}

static mvmoe_status parse_text(const char *path, const char *buf, size_t len, int K, int *map) {
    if (memchr(buf, '\0', len))
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "the super-class map '%s' is binary; expected JSON or %d whitespace-separated "
                   "integers",
                   path, K);
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
                       "JSON or %d whitespace-separated integers",
                       path, tl, p, (long)(e - buf), K);
        }
        if (n >= K)
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "the super-class map '%s' has more than %d entries, one per class",
                       path, K);
        if (errno == ERANGE || v < 0 || v >= K)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "the super-class map '%s': entry %d is %.*s; each entry must be an integer "
                       "from 0 to %d",
                       path, n, (int)(end - p), p, K - 1);
        map[n++] = (int)v;
        p = end;
    }
    if (n != K)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "the super-class map '%s' has %d entries, but there are %d classes",
                   path, n, K);
    return MVMOE_OK;
}

/* E = max + 1, and 0..E-1 all used: an unused super-class would be an expert that no class
 * is routed to. */
static mvmoe_status check_used(const char *path, const int *map, int K, int *E_out) {
    int E = 0;
    for (int i = 0; i < K; i++)
        if (map[i] + 1 > E) E = map[i] + 1;
    int *count;
    MVMOE_ALLOC(count, E, "super-class counts");
    for (int i = 0; i < K; i++) count[map[i]]++;
    for (int g = 0; g < E; g++)
        if (count[g] == 0) {
            free(count);
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "the super-class map '%s' uses super-classes up to %d but none of the %d "
                       "classes is in super-class %d; number them 0..E-1 without gaps",
                       path, E - 1, K, g);
        }
    free(count);
    *E_out = E;
    return MVMOE_OK;
}

mvmoe_status mvmoe_superclass_map_load(const char *path, int K, int *superclass_of, int *E_out) {
    if (!path || !superclass_of || !E_out)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map load: path or output is NULL");
    if (K < 1 || K > MVMOE_SUPERCLASS_MAX_K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s': %d classes; 1 to %d are supported", path,
                   K, MVMOE_SUPERCLASS_MAX_K);
    char *buf = NULL;
    size_t len = 0;
    MVMOE_TRY(mvmoe_file_read(path, "super-class map", MAP_MAX_BYTES, &buf, &len));
    int *map = calloc((size_t)K, sizeof *map);
    if (!map) {
        free(buf);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "super-class map '%s': out of memory for %d classes", path, K);
    }
    const char *p = buf;
    if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF) p += 3;
    while (isspace((unsigned char)*p)) p++;
    int experts = -1, E = 0;
    size_t rest = len - (size_t)(p - buf);
    mvmoe_status s = *p == '{' ? parse_json(path, p, rest, K, map, &experts)
                               : parse_text(path, p, rest, K, map);
    if (s == MVMOE_OK) s = check_used(path, map, K, &E);
    if (s == MVMOE_OK && experts >= 0 && experts != E)
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "the super-class map '%s' says \"experts\": %d, but its superclass_of "
                            "uses %d super-classes",
                            path, experts, E);
    if (s == MVMOE_OK) {
        memcpy(superclass_of, map, sizeof *map * (size_t)K);
        *E_out = E;
    }
    free(map);
    free(buf);
    return s;
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
