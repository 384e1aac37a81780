/* safetensors reader/writer (format and validation rules: see safetensors.h).
 * The reader treats every file as hostile: byte-level checks first (length prefix, size caps,
 * UTF-8, control bytes), then cJSON for the JSON grammar, then the format's own rules as in the
 * reference implementation (huggingface/safetensors `validate`): known dtypes, byte sizes
 * that match the shapes, offsets that tile the data section exactly. */
#include "io/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/status.h"
#include "io/atomic.h"

/* mvmoe_st_open reads the whole file into memory; far beyond any model this project trains. */
#define ST_MAX_FILE ((uint64_t)64 << 30)
/* 2^53: every JSON number is a double in cJSON, and from here on doubles skip integers, so
 * 2^53 and 2^53+1 would read alike. Integers must be below it (JavaScript's "safe" range). */
#define ST_MAX_EXACT 9007199254740992.0
#define ST_MAX_EXACT_INT ((int64_t)9007199254740991)

/* Indexed by mvmoe_st_dtype (same order as the enum). */
static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},  {"BOOL", 1},
};
#define ST_N_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

/* Valid safetensors dtypes this project does not handle: named as "unsupported" rather than
 * "malformed" so the user knows the file itself may be fine. */
static const char *const st_foreign_dtypes[] = {"U16",     "U32",     "U64",     "F8_E4M3",
                                                "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                                "F4",      "C64"};

/* ------------------------------------------------------------------ small helpers */

static uint64_t st_get_le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static void st_put_le64(uint8_t *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static char *st_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "[10, 64]" into buf (always terminated). */
static const char *st_fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

static const char *st_json_kind(const cJSON *it) {
    if (cJSON_IsString(it)) return "string";
    if (cJSON_IsNumber(it)) return "number";
    if (cJSON_IsArray(it)) return "array";
    if (cJSON_IsObject(it)) return "object";
    if (cJSON_IsBool(it)) return "boolean";
    if (cJSON_IsNull(it)) return "null";
    return "value";
}

/* Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates D800-DFFF, nothing above U+10FFFF), or SIZE_MAX if all is valid. */
static size_t st_utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* > U+10FFFF */
        } else {
            return i; /* continuation byte, C0/C1 (overlong), F5..FF */
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return SIZE_MAX;
}

/* Checks done on raw header bytes before cJSON sees them. cJSON itself is lenient in ways that
 * matter here: it treats every byte <= 0x20 as whitespace, copies raw control characters and
 * invalid UTF-8 into strings, and decodes the escape \u0000 into a NUL that silently truncates
 * a C string (so "a\u0000x" would become tensor "a"). */
static mvmoe_status st_check_header_bytes(const char *path, const uint8_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r') {
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s: header byte %zu is the control character 0x%02x (%s); a safetensors "
                       "header is JSON text, so the file is corrupt or not a safetensors file",
                       path, i, h[i], h[i] == 0 ? "NUL" : "not allowed in JSON");
        }
    }
    size_t bad = st_utf8_invalid_at(h, n);
    if (bad != SIZE_MAX) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: header is not valid UTF-8 at byte %zu (0x%02x); the header must be UTF-8 "
                   "JSON, so the file is corrupt or not a safetensors file",
                   path, bad, h[bad]);
    }
    /* Lexical scan for the \u0000 escape inside strings (exact for well-formed JSON; on
     * malformed JSON cJSON rejects the header anyway). */
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            in_string = h[i] == '"';
        } else if (h[i] == '"') {
            in_string = 0;
        } else if (h[i] == '\\') {
            if (i + 5 < n && h[i + 1] == 'u' && memcmp(h + i + 2, "0000", 4) == 0) {
                MVMOE_FAIL(MVMOE_ERR_FORMAT,
                           "%s: header byte %zu: the string escape \\u0000 (NUL) is not supported "
                           "in names or metadata; rename the tensor or key",
                           path, i);
            }
            i++; /* skip the escaped character (so \" does not end the string) */
        }
    }
    return MVMOE_OK;
}

/* A JSON number that must be an exact non-negative integer below 2^53. */
static mvmoe_status st_json_uint(const mvmoe_st_file *f, const char *tname, const char *what,
                                 const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s': %s must be a non-negative integer, got a JSON %s",
                   f->path, tname, what, st_json_kind(it));
    }
    double d = it->valuedouble;
    if (!(d >= 0.0)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s': %s is negative (%.17g)", f->path, tname,
                   what, d);
    }
    if (d >= ST_MAX_EXACT) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s': %s = %.17g is not below 2^53, beyond the integers a JSON "
                   "number holds exactly; the header is corrupt",
                   f->path, tname, what, d);
    }
    if (d != floor(d)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s': %s = %.17g is not an integer", f->path,
                   tname, what, d);
    }
    *out = (uint64_t)d;
    return MVMOE_OK;
}

/* ------------------------------------------------------------------ header entries */

static mvmoe_status st_parse_dtype(const mvmoe_st_file *f, const char *tname, const cJSON *it,
                                   mvmoe_st_dtype *out) {
    if (!cJSON_IsString(it)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s': dtype must be a string, got a JSON %s",
                   f->path, tname, st_json_kind(it));
    }
    for (int i = 0; i < ST_N_DTYPES; i++) {
        if (strcmp(it->valuestring, st_dtypes[i].name) == 0) {
            *out = (mvmoe_st_dtype)i;
            return MVMOE_OK;
        }
    }
    for (size_t i = 0; i < sizeof st_foreign_dtypes / sizeof st_foreign_dtypes[0]; i++) {
        if (strcmp(it->valuestring, st_foreign_dtypes[i]) == 0) {
            MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED,
                       "%s: tensor '%.200s' has dtype %s, which mvmoe does not read (supported: "
                       "F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL); convert the checkpoint to F32",
                       f->path, tname, it->valuestring);
        }
    }
    MVMOE_FAIL(MVMOE_ERR_FORMAT,
               "%s: tensor '%.200s' has unknown dtype '%.40s' (known: F32 F16 BF16 F64 I64 I32 "
               "I16 I8 U8 BOOL); the file is corrupt or not a safetensors file",
               f->path, tname, it->valuestring);
}

static mvmoe_status st_parse_shape(const mvmoe_st_file *f, const char *tname, const cJSON *it,
                                   mvmoe_st_tensor *t) {
    if (!cJSON_IsArray(it)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s': shape must be an array, got a JSON %s",
                   f->path, tname, st_json_kind(it));
    }
    int ndim = cJSON_GetArraySize(it);
    if (ndim > MVMOE_ST_MAX_DIMS) {
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED,
                   "%s: tensor '%.200s' has %d dimensions; at most %d are supported", f->path,
                   tname, ndim, MVMOE_ST_MAX_DIMS);
    }
    int i = 0;
    for (const cJSON *d = it->child; d; d = d->next, i++) {
        uint64_t v;
        MVMOE_TRY(st_json_uint(f, tname, "a shape entry", d, &v));
        t->shape[i] = (int64_t)v; /* < 2^53: fits */
    }
    t->ndim = ndim;
    return MVMOE_OK;
}

static mvmoe_status st_parse_offsets(const mvmoe_st_file *f, const char *tname, const cJSON *it,
                                     mvmoe_st_tensor *t, uint64_t data_len) {
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s': data_offsets must be an array [begin, end] of two "
                   "integers, got a JSON %s%s",
                   f->path, tname, st_json_kind(it),
                   cJSON_IsArray(it) ? " with a different number of entries" : "");
    }
    MVMOE_TRY(st_json_uint(f, tname, "data_offsets begin", it->child, &t->begin));
    MVMOE_TRY(st_json_uint(f, tname, "data_offsets end", it->child->next, &t->end));
    if (t->begin > t->end) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64
                   "] end before they begin; the header is corrupt",
                   f->path, tname, t->begin, t->end);
    }
    if (t->end > data_len) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64
                   "] run past the data section (%" PRIu64
                   " bytes); the file is truncated or the header is wrong",
                   f->path, tname, t->begin, t->end, data_len);
    }
    return MVMOE_OK;
}

/* The shape's byte size must equal end - begin. The product of the nonzero dims times the
 * dtype size must fit in int64, so that no partial product any consumer computes overflows
 * (stricter than the reference, which only fails when its left-to-right product overflows). */
static mvmoe_status st_check_size(const mvmoe_st_file *f, const mvmoe_st_tensor *t) {
    char sh[256];
    uint64_t prod = 1, esize = st_dtypes[t->dtype].size;
    int has_zero = 0;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d == 0) {
            has_zero = 1;
        } else if (prod > (uint64_t)INT64_MAX / d) {
            prod = 0;
            break;
        } else {
            prod *= d;
        }
    }
    if (prod == 0 || prod > (uint64_t)INT64_MAX / esize) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s': %s shape %s would need more than 2^63 bytes; the header "
                   "is corrupt",
                   f->path, t->name, st_dtypes[t->dtype].name,
                   st_fmt_shape(sh, sizeof sh, t->shape, t->ndim));
    }
    uint64_t need = has_zero ? 0 : prod * esize;
    if (need != t->end - t->begin) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: tensor '%.200s' data_offsets [%" PRIu64 ", %" PRIu64 "] but %s shape %s "
                   "needs %" PRIu64 " bytes; the header is corrupt",
                   f->path, t->name, t->begin, t->end, st_dtypes[t->dtype].name,
                   st_fmt_shape(sh, sizeof sh, t->shape, t->ndim), need);
    }
    return MVMOE_OK;
}

/* One tensor entry: exactly the keys dtype, shape, data_offsets. The name is stored first so
 * mvmoe_st_close frees it whatever fails later. */
static mvmoe_status st_parse_tensor(mvmoe_st_file *f, const cJSON *e, uint64_t data_len) {
    mvmoe_st_tensor *t = &f->tensors[f->n_tensors++];
    t->name = st_strdup(e->string);
    if (!t->name) {
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "%s: out of memory copying tensor name '%.200s'", f->path,
                   e->string);
    }
    if (!cJSON_IsObject(e)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: header entry '%.200s' must be an object {dtype, shape, data_offsets}, "
                   "got a JSON %s",
                   f->path, t->name, st_json_kind(e));
    }
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        const cJSON **slot = strcmp(k->string, "dtype") == 0          ? &dtype
                             : strcmp(k->string, "shape") == 0        ? &shape
                             : strcmp(k->string, "data_offsets") == 0 ? &offsets
                                                                      : NULL;
        if (!slot) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s: tensor '%.200s' has the unknown key '%.100s' (allowed: dtype, shape, "
                       "data_offsets)",
                       f->path, t->name, k->string);
        }
        if (*slot) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s' has the key '%s' twice", f->path,
                       t->name, k->string);
        }
        *slot = k;
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
    if (missing) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s' has no '%s'; the header is incomplete",
                   f->path, t->name, missing);
    }
    MVMOE_TRY(st_parse_dtype(f, t->name, dtype, &t->dtype));
    MVMOE_TRY(st_parse_shape(f, t->name, shape, t));
    MVMOE_TRY(st_parse_offsets(f, t->name, offsets, t, data_len));
    return st_check_size(f, t);
}

static int st_cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts `n` string pointers in place; returns the first duplicate or NULL. */
static const char *st_find_duplicate(char **sorted, int n) {
    qsort(sorted, (size_t)n, sizeof *sorted, st_cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) return sorted[i];
    return NULL;
}

static mvmoe_status st_parse_meta(mvmoe_st_file *f, const cJSON *m) {
    if (!cJSON_IsObject(m)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: __metadata__ must be an object of strings, got a JSON %s",
                   f->path, st_json_kind(m));
    }
    int n = cJSON_GetArraySize(m);
    MVMOE_ALLOC(f->meta_keys, n, "safetensors metadata keys");
    MVMOE_ALLOC(f->meta_values, n, "safetensors metadata values");
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s: __metadata__ value of '%.200s' must be a string, got a JSON %s",
                       f->path, kv->string, st_json_kind(kv));
        }
        int i = f->n_meta++;
        f->meta_keys[i] = st_strdup(kv->string);
        f->meta_values[i] = st_strdup(kv->valuestring);
        if (!f->meta_keys[i] || !f->meta_values[i]) {
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "%s: out of memory copying metadata '%.200s'", f->path,
                       kv->string);
        }
    }
    char **sorted;
    MVMOE_ALLOC(sorted, n, "safetensors metadata check");
    memcpy(sorted, f->meta_keys, (size_t)n * sizeof *sorted);
    const char *dup = st_find_duplicate(sorted, n);
    mvmoe_status s = MVMOE_OK;
    if (dup) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: __metadata__ has the key '%.200s' twice", f->path, dup);
    }
    free(sorted);
    return s;
}

static int st_cmp_offsets(const void *a, const void *b) {
    const mvmoe_st_tensor *x = *(const mvmoe_st_tensor *const *)a;
    const mvmoe_st_tensor *y = *(const mvmoe_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* cJSON keeps repeated object keys as separate items, so duplicates are found here. */
static mvmoe_status st_check_unique_names(const mvmoe_st_file *f) {
    char **names;
    MVMOE_ALLOC(names, f->n_tensors, "safetensors name check");
    for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
    const char *dup = st_find_duplicate(names, f->n_tensors);
    mvmoe_status s = MVMOE_OK;
    if (dup) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: tensor name '%.200s' appears twice in the header; names must be "
                            "unique",
                            f->path, dup);
    }
    free(names);
    return s;
}

/* Offsets that tile [0, data_len) exactly (the reference's "offsets cover the whole buffer"
 * rule): sorted by begin, each tensor starts where the previous one ended. */
static mvmoe_status st_check_layout(const mvmoe_st_file *f, const mvmoe_st_tensor **order,
                                    uint64_t data_len) {
    int n = f->n_tensors;
    for (int i = 0; i < n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)n, sizeof *order, st_cmp_offsets);
    uint64_t cursor = 0;
    for (int i = 0; i < n; i++) {
        const mvmoe_st_tensor *t = order[i];
        if (t->begin < cursor) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s: tensor '%.200s' data_offsets [%" PRIu64 ", %" PRIu64
                       "] overlap tensor '%.200s' [%" PRIu64 ", %" PRIu64 "]",
                       f->path, t->name, t->begin, t->end, order[i - 1]->name, order[i - 1]->begin,
                       order[i - 1]->end);
        }
        if (t->begin > cursor) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s: tensor '%.200s' starts at data byte %" PRIu64
                       " but the bytes before it end at %" PRIu64
                       " (a gap of %" PRIu64 " bytes no tensor covers)",
                       f->path, t->name, t->begin, cursor, t->begin - cursor);
        }
        cursor = t->end;
    }
    if (cursor != data_len) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: the data section has %" PRIu64 " bytes but the tensors cover only %" PRIu64
                   "; the file has trailing bytes or its header is wrong",
                   f->path, data_len, cursor);
    }
    return MVMOE_OK;
}

static mvmoe_status st_parse_root(mvmoe_st_file *f, const cJSON *root, uint64_t data_len) {
    int n_entries = 0, n_meta = 0;
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            meta = e;
            n_meta++;
        } else {
            n_entries++;
        }
    }
    if (n_meta > 1) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: the header has __metadata__ %d times; at most once",
                   f->path, n_meta);
    }
    if (meta) MVMOE_TRY(st_parse_meta(f, meta));
    MVMOE_ALLOC(f->tensors, n_entries, "safetensors tensor table");
    for (const cJSON *e = root->child; e; e = e->next)
        if (e != meta) MVMOE_TRY(st_parse_tensor(f, e, data_len));
    MVMOE_TRY(st_check_unique_names(f));
    const mvmoe_st_tensor **order;
    MVMOE_ALLOC(order, n_entries, "safetensors layout check");
    mvmoe_status s = st_check_layout(f, order, data_len);
    free(order);
    return s;
}

/* Validates f->bytes[0 .. f->size) and fills the rest of *f. The caller closes *f on failure. */
static mvmoe_status st_validate(mvmoe_st_file *f) {
    const char *p = f->path;
    if (f->size < 8) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: file is %zu bytes, shorter than the 8-byte header length of a safetensors "
                   "file; it is truncated or not a safetensors file",
                   p, f->size);
    }
    uint64_t n = st_get_le64(f->bytes);
    if (n > MVMOE_ST_MAX_HEADER) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: header length %" PRIu64 " exceeds the limit of %u bytes; the file is "
                   "corrupt or not a safetensors file",
                   p, n, MVMOE_ST_MAX_HEADER);
    }
    if (n > f->size - 8) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: header length %" PRIu64 " but only %zu bytes follow the length field; the "
                   "file is truncated",
                   p, n, f->size - 8);
    }
    const uint8_t *h = f->bytes + 8;
    /* The format requires '{' as the header's first byte (only trailing spaces may pad it);
     * a reader that skips leading whitespace accepts files other readers refuse. */
    if (n == 0 || h[0] != '{') {
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "%s: header does not start with '{' (%s); not a safetensors file", p,
                   n == 0 ? "it is empty"
                   : (h[0] == ' ' || h[0] == '\t' || h[0] == '\n' || h[0] == '\r')
                       ? "it starts with whitespace, which the format does not allow"
                       : "it is not a JSON object");
    }
    MVMOE_TRY(st_check_header_bytes(p, h, (size_t)n));
    f->data_start = 8 + (size_t)n;
    uint64_t data_len = f->size - f->data_start;

    /* cJSON wants a NUL-terminated buffer for require_null_terminated: with it, anything but
     * whitespace after the object is an error (no NULs inside: checked above). */
    char *text;
    MVMOE_ALLOC(text, n + 1, "safetensors header text");
    memcpy(text, h, (size_t)n);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n + 1, &end, 1);
    mvmoe_status s;
    if (!root || end != text + n) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: header is not one valid JSON object (error or trailing bytes near "
                            "header byte %zu: \"%.24s\"); the file is corrupt",
                            p, at, text + at);
    } else if (!cJSON_IsObject(root)) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: header is a JSON %s, not an object", p, st_json_kind(root));
    } else {
        s = st_parse_root(f, root, data_len);
    }
    cJSON_Delete(root);
    free(text);
    return s;
}

/* ------------------------------------------------------------------ open / parse / close */

static mvmoe_status st_read_file(mvmoe_st_file *f, const char *path) {
    char *buf = NULL;
    size_t size = 0;
    MVMOE_TRY(mvmoe_file_read(path, "safetensors checkpoint", ST_MAX_FILE, &buf, &size));
    f->bytes = (uint8_t *)buf;
    f->size = size;
    return MVMOE_OK;
}

mvmoe_status mvmoe_st_open(mvmoe_st_file *f, const char *path) {
    if (!f) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_st_open: no file struct given");
    memset(f, 0, sizeof *f);
    if (!path) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_st_open: no path given");
    f->path = st_strdup(path);
    if (!f->path) MVMOE_FAIL(MVMOE_ERR_NOMEM, "%s: out of memory copying the path", path);
    mvmoe_status s = st_read_file(f, path);
    if (s == MVMOE_OK) s = st_validate(f);
    if (s != MVMOE_OK) mvmoe_st_close(f);
    return s;
}

mvmoe_status mvmoe_st_parse(mvmoe_st_file *f, const uint8_t *bytes, size_t size, const char *name) {
    if (!f) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_st_parse: no file struct given");
    memset(f, 0, sizeof *f);
    if (!name) name = "<memory>";
    if (!bytes && size) MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: %zu bytes given as NULL", name, size);
    mvmoe_status s = MVMOE_OK;
    f->path = st_strdup(name);
    f->bytes = mvmoe_calloc_checked(size ? size : 1, 1, name, __FILE__, __LINE__);
    if (!f->path || !f->bytes) {
        s = f->bytes ? mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                       "%s: out of memory copying the name", name)
                     : MVMOE_ERR_NOMEM;
    } else {
        if (size) memcpy(f->bytes, bytes, size);
        f->size = size;
        s = st_validate(f);
    }
    if (s != MVMOE_OK) mvmoe_st_close(f);
    return s;
}

void mvmoe_st_close(mvmoe_st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* ------------------------------------------------------------------ lookups and reads */

const mvmoe_st_tensor *mvmoe_st_find(const mvmoe_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *mvmoe_st_meta(const mvmoe_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

size_t mvmoe_st_numel(const mvmoe_st_tensor *t) {
    if (!t) return 0;
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i]; /* validated: no overflow */
    return n;
}

/* IEEE 754 binary16 -> binary32, exact for every input (subnormals normalized, inf/NaN kept). */
static float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal man * 2^-24: shift the leading 1 up to the implicit-bit position */
        uint32_t e = 113; /* biased exponent of 2^-14 */
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3FFu) << 13);
    }
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

mvmoe_status mvmoe_st_read_i8(const mvmoe_st_file *f, const mvmoe_st_tensor *t, int8_t *out,
                              size_t count) {
    if (!f || !t) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_st_read_i8: no file or tensor given");
    uintptr_t lo = (uintptr_t)f->tensors, at = (uintptr_t)t;
    if (!f->tensors || at < lo || at >= lo + (uintptr_t)f->n_tensors * sizeof *t)
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "%s: mvmoe_st_read_i8 was given a tensor that does not belong to this file",
                   f->path);
    if (t->dtype != MVMOE_ST_I8)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: tensor '%.200s' has dtype %s where I8 is expected",
                   f->path, t->name, st_dtypes[t->dtype].name);
    size_t numel = mvmoe_st_numel(t);
    if (count != numel)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor '%.200s' has %zu elements but the caller expects %zu",
                   f->path, t->name, numel, count);
    if (count) memcpy(out, f->bytes + f->data_start + t->begin, count); /* size checked at open */
    return MVMOE_OK;
}

mvmoe_status mvmoe_st_read_f32(const mvmoe_st_file *f, const mvmoe_st_tensor *t, float *out,
                               size_t count) {
    if (!f || !t) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_st_read_f32: no file or tensor given");
    uintptr_t lo = (uintptr_t)f->tensors, at = (uintptr_t)t;
    if (!f->tensors || at < lo || at >= lo + (uintptr_t)f->n_tensors * sizeof *t) {
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "%s: mvmoe_st_read_f32 was given a tensor that does not belong to this file",
                   f->path);
    }
    size_t numel = mvmoe_st_numel(t);
    if (count != numel) {
        char sh[256];
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "%s: tensor '%.200s' has %zu elements (shape %s) but the caller expects %zu",
                   f->path, t->name, numel, st_fmt_shape(sh, sizeof sh, t->shape, t->ndim),
                   count);
    }
    if (!out && count) MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor '%.200s': no output buffer",
                                  f->path, t->name);
    const uint8_t *src = f->bytes + f->data_start + t->begin;
    /* Bytes are little-endian and may be unaligned: assemble integers byte by byte. */
    switch (t->dtype) {
    case MVMOE_ST_F32:
        for (size_t i = 0; i < count; i++) {
            const uint8_t *b = src + 4 * i;
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                         (uint32_t)b[3] << 24;
            memcpy(&out[i], &u, sizeof u);
        }
        return MVMOE_OK;
    case MVMOE_ST_F16:
        for (size_t i = 0; i < count; i++)
            out[i] = st_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return MVMOE_OK;
    case MVMOE_ST_BF16: /* bfloat16 is the top half of a binary32 */
        for (size_t i = 0; i < count; i++) {
            uint32_t u = ((uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &u, sizeof u);
        }
        return MVMOE_OK;
    case MVMOE_ST_F64:
        for (size_t i = 0; i < count; i++) {
            uint64_t u = 0;
            for (int k = 7; k >= 0; k--) u = (u << 8) | src[8 * i + (size_t)k];
            double d;
            memcpy(&d, &u, sizeof d);
            out[i] = (float)d; /* IEEE (Annex F): rounds to nearest; overflows to +-inf */
        }
        return MVMOE_OK;
    default:
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED,
                   "%s: tensor '%.200s' has dtype %s, which cannot be read as float32 (only F32, "
                   "F16, BF16, F64 can)",
                   f->path, t->name, st_dtypes[t->dtype].name);
    }
}

/* ------------------------------------------------------------------ writer */

/* Checks one tensor to write; *bytes receives its data size. */
static mvmoe_status st_out_check(const char *path, const mvmoe_st_out *t, int idx,
                                 uint64_t *bytes) {
    if (!t->name) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor #%d to write has no name", path, idx);
    }
    if (strcmp(t->name, "__metadata__") == 0) {
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "%s: tensor #%d is named __metadata__, which safetensors reserves", path, idx);
    }
    if (st_utf8_invalid_at((const uint8_t *)t->name, strlen(t->name)) != SIZE_MAX) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor #%d name is not valid UTF-8", path, idx);
    }
    if (t->ndim < 0 || t->ndim > MVMOE_ST_MAX_DIMS) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor '%.200s' has ndim %d; must be 0..%d", path,
                   t->name, t->ndim, MVMOE_ST_MAX_DIMS);
    }
    char sh[256];
    uint64_t prod = 1;
    int has_zero = 0, overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = t->shape[i];
        if (d < 0 || d > ST_MAX_EXACT_INT) {
            MVMOE_FAIL(MVMOE_ERR_INVALID,
                       "%s: tensor '%.200s' has shape %s; every dim must be in 0..2^53-1", path,
                       t->name, st_fmt_shape(sh, sizeof sh, t->shape, t->ndim));
        }
        if (d == 0) has_zero = 1;
        else if (prod > (uint64_t)INT64_MAX / (uint64_t)d) overflow = 1;
        else prod *= (uint64_t)d;
    }
    const uint64_t esize = t->data_i8 ? 1 : sizeof(float);
    if (overflow || prod > (uint64_t)INT64_MAX / esize) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor '%.200s' shape %s is too large", path, t->name,
                   st_fmt_shape(sh, sizeof sh, t->shape, t->ndim));
    }
    *bytes = has_zero ? 0 : prod * esize;
    if (*bytes && !t->data && !t->data_i8) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: tensor '%.200s' has no data", path, t->name);
    }
    return MVMOE_OK;
}

static mvmoe_status st_write_check(const char *path, const mvmoe_st_out *tensors, int n,
                                   const char *const *keys, const char *const *values,
                                   int n_meta) {
    if (!path || !*path) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_st_write: no path given");
    if (n < 0 || (n > 0 && !tensors) || n_meta < 0 || (n_meta > 0 && (!keys || !values))) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: invalid tensor list (n=%d) or metadata list (n=%d)",
                   path, n, n_meta);
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = 0;
        MVMOE_TRY(st_out_check(path, &tensors[i], i, &b));
        if (b > UINT64_MAX - total) {
            MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: total tensor size overflows", path);
        }
        total += b;
    }
    for (int i = 0; i < n_meta; i++) {
        if (!keys[i] || !values[i]) {
            MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: metadata entry #%d has a NULL key or value", path,
                       i);
        }
        if (st_utf8_invalid_at((const uint8_t *)keys[i], strlen(keys[i])) != SIZE_MAX ||
            st_utf8_invalid_at((const uint8_t *)values[i], strlen(values[i])) != SIZE_MAX) {
            MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: metadata '%.200s' is not valid UTF-8", path,
                       keys[i]);
        }
    }
    /* Unique tensor names, unique metadata keys. */
    int most = n > n_meta ? n : n_meta;
    char **sorted;
    MVMOE_ALLOC(sorted, most, "safetensors write check");
    const char *what = "tensor name";
    for (int i = 0; i < n; i++) sorted[i] = (char *)tensors[i].name;
    const char *dup = st_find_duplicate(sorted, n);
    if (!dup) {
        what = "metadata key";
        for (int i = 0; i < n_meta; i++) sorted[i] = (char *)keys[i];
        dup = st_find_duplicate(sorted, n_meta);
    }
    mvmoe_status s = MVMOE_OK;
    if (dup) {
        s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                            "%s: %s '%.200s' is given twice; names must be unique", path, what,
                            dup);
    }
    free(sorted);
    return s;
}

/* Adds `item` to an object (key) or array (key NULL); frees it if that fails. */
static int st_json_add(cJSON *parent, const char *key, cJSON *item) {
    if (!item) return 0;
    int ok = key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
    if (!ok) cJSON_Delete(item);
    return ok;
}

/* Integers go in as raw JSON text: cJSON prints large doubles as e.g. 1e+15, which the
 * reference reader (integers only) would reject. */
static cJSON *st_json_int(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

/* One tensor entry {"dtype":"F32","shape":[..],"data_offsets":[begin,end]}, or NULL (out of
 * memory). Each child is attached as soon as it exists, so deleting `e` frees everything. */
static cJSON *st_json_entry(const mvmoe_st_out *t, uint64_t begin, uint64_t end) {
    cJSON *e = cJSON_CreateObject(), *shape = NULL, *offs = NULL;
    int ok = st_json_add(e, "dtype", e ? cJSON_CreateString(t->data_i8 ? "I8" : "F32") : NULL);
    ok = ok && st_json_add(e, "shape", shape = cJSON_CreateArray());
    for (int d = 0; ok && d < t->ndim; d++)
        ok = st_json_add(shape, NULL, st_json_int((uint64_t)t->shape[d]));
    ok = ok && st_json_add(e, "data_offsets", offs = cJSON_CreateArray());
    ok = ok && st_json_add(offs, NULL, st_json_int(begin));
    ok = ok && st_json_add(offs, NULL, st_json_int(end));
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* The header JSON: __metadata__ first (as the reference writer), then tensors in order, their
 * data contiguous from offset 0. Returns text to free with cJSON_free, or NULL (message set). */
static char *st_build_header(const char *path, const mvmoe_st_out *tensors, int n,
                             const char *const *keys, const char *const *values, int n_meta) {
    cJSON *root = cJSON_CreateObject(), *meta = NULL;
    int ok = root != NULL;
    if (ok && n_meta > 0) {
        ok = st_json_add(root, "__metadata__", meta = cJSON_CreateObject());
        for (int i = 0; ok && i < n_meta; i++)
            ok = st_json_add(meta, keys[i], cJSON_CreateString(values[i]));
    }
    uint64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const mvmoe_st_out *t = &tensors[i];
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d]; /* checked before */
        uint64_t end = offset + numel * (t->data_i8 ? 1 : sizeof(float));
        ok = st_json_add(root, t->name, st_json_entry(t, offset, end));
        offset = end;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                               "%s: out of memory building the header", path);
    return json;
}

/* Writes len bytes; returns 0 or an errno value (EIO if the C library gave none). */
static int st_fwrite(FILE *fp, const void *p, size_t len) {
    errno = 0;
    if (len && fwrite(p, 1, len, fp) != len) return errno ? errno : EIO;
    return 0;
}

/* Header + tensor bytes to fp; returns 0 or an errno value. */
static int st_write_body(FILE *fp, const char *json, size_t jlen, size_t pad,
                         const mvmoe_st_out *tensors, int n) {
    uint8_t buf[1 << 14];
    st_put_le64(buf, (uint64_t)(jlen + pad));
    int e = st_fwrite(fp, buf, 8);
    if (!e) e = st_fwrite(fp, json, jlen);
    if (!e) e = st_fwrite(fp, "        ", pad);
    for (int i = 0; !e && i < n; i++) {
        const mvmoe_st_out *t = &tensors[i];
        size_t numel = 1, used = 0;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        if (t->data_i8) { /* bytes: no byte order */
            e = st_fwrite(fp, t->data_i8, numel);
            continue;
        }
        /* Little-endian whatever the host, via a stack buffer. */
        for (size_t k = 0; !e && k < numel; k++) {
            uint32_t u;
            memcpy(&u, &t->data[k], sizeof u);
            buf[used] = (uint8_t)u;
            buf[used + 1] = (uint8_t)(u >> 8);
            buf[used + 2] = (uint8_t)(u >> 16);
            buf[used + 3] = (uint8_t)(u >> 24);
            used += 4;
            if (used == sizeof buf) {
                e = st_fwrite(fp, buf, used);
                used = 0;
            }
        }
        if (!e) e = st_fwrite(fp, buf, used);
    }
    return e;
}

/* The file's bytes, for mvmoe_atomic_write. */
typedef struct {
    const char *json;
    size_t jlen, pad;
    const mvmoe_st_out *tensors;
    int n;
} st_body_ctx;

static int st_body(FILE *fp, void *ctx) {
    const st_body_ctx *c = ctx;
    return st_write_body(fp, c->json, c->jlen, c->pad, c->tensors, c->n);
}

mvmoe_status mvmoe_st_write(const char *path, const mvmoe_st_out *tensors, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta) {
    MVMOE_TRY(st_write_check(path, tensors, n, meta_keys, meta_values, n_meta));
    char *json = st_build_header(path, tensors, n, meta_keys, meta_values, n_meta);
    if (!json) return MVMOE_ERR_NOMEM;
    size_t jlen = strlen(json), pad = (8 - jlen % 8) % 8; /* data starts 8-byte aligned */
    st_body_ctx c = {json, jlen, pad, tensors, n};
    mvmoe_status s = mvmoe_atomic_write(path, st_body, &c);
    cJSON_free(json);
    return s;
}
