/* Mapping and checking a safetensors checkpoint (rt_checkpoint.h). The checks are those of
 * the library's reader (docs/CHECKPOINT_FORMAT.md §1): header at most 100 MB inside the file,
 * strict JSON, known dtypes, at most 8 dimensions, byte sizes that match the shapes, offsets
 * that tile the data section exactly, unique names, string metadata. */
#include "runtime/rt_checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvmoe_run.h"

#define MAX_HEADER ((uint64_t)100 << 20)
#define MAX_NAME 1024

static int failf(char *err, size_t errlen, int *st, int kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    *st = kind;
    return -1;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const rt_tensor *)a)->name, ((const rt_tensor *)b)->name);
}

static int by_begin(const void *a, const void *b) {
    const rt_tensor *x = *(rt_tensor *const *)a, *y = *(rt_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end;
}

static char *dup_str(const rt_json *doc, int s) {
    const size_t cap = doc->nodes[s].len + 1; /* decoding never lengthens the text */
    char *buf = malloc(cap);
    if (buf && rt_json_str(doc, s, buf, cap) < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* One tensor entry `name`: {"dtype", "shape", "data_offsets"}. */
static int read_entry(rt_tensor *t, const rt_json *doc, int v, const char *path, size_t data_size, char *err,
                      size_t errlen, int *st) {
    const int F = MVMOE_RUN_ERR_FORMAT;
    if (doc->nodes[v].type != RT_J_OBJ)
        return failf(err, errlen, st, F, "%s: header entry '%s' is not an object", path, t->name);
    const int dt = rt_json_get(doc, v, "dtype"), sh = rt_json_get(doc, v, "shape"), of = rt_json_get(doc, v, "data_offsets");
    if (dt < 0 || doc->nodes[dt].type != RT_J_STR || sh < 0 || doc->nodes[sh].type != RT_J_ARR || of < 0 ||
        doc->nodes[of].type != RT_J_ARR || doc->nodes[of].count != 2)
        return failf(err, errlen, st, F, "%s: tensor '%s' lacks a string dtype, a shape array or two data_offsets",
                     path, t->name);
    size_t elem;
    if (rt_json_str_is(doc, dt, "F32")) t->dtype = RT_DT_F32, elem = 4;
    else if (rt_json_str_is(doc, dt, "I8")) t->dtype = RT_DT_I8, elem = 1;
    else {
        char d[32];
        if (rt_json_str(doc, dt, d, sizeof d) < 0) snprintf(d, sizeof d, "?");
        const int known = !strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "F64");
        return failf(err, errlen, st, known ? MVMOE_RUN_ERR_UNSUPPORTED : F,
                     "%s: tensor '%s' has dtype %s; mvmoe-run reads F32 and I8 tensors only (%s)", path, t->name, d,
                     known ? "re-save it as F32 with `mvmoe eval`-readable tools, e.g. load and save with mvmoe"
                           : "not a safetensors dtype mvmoe knows");
    }
    t->ndim = doc->nodes[sh].count;
    if (t->ndim > RT_MAX_DIMS)
        return failf(err, errlen, st, F, "%s: tensor '%s' has %d dimensions (at most %d)", path, t->name, t->ndim,
                     RT_MAX_DIMS);
    uint64_t count = 1;
    int i = 0;
    for (int x = doc->nodes[sh].child; x >= 0; x = doc->nodes[x].next, i++) {
        const double d = doc->nodes[x].num;
        if (doc->nodes[x].type != RT_J_NUM || d < 0 || d > 4e9 || d != (double)(int64_t)d)
            return failf(err, errlen, st, F, "%s: tensor '%s': shape entry %d is not a dimension", path, t->name, i);
        t->shape[i] = (int64_t)d;
        if (t->shape[i] && count > UINT64_MAX / (uint64_t)t->shape[i] / elem)
            return failf(err, errlen, st, F, "%s: tensor '%s': shape too large", path, t->name);
        count *= (uint64_t)t->shape[i];
    }
    double b = doc->nodes[doc->nodes[of].child].num, e = doc->nodes[doc->nodes[doc->nodes[of].child].next].num;
    if (doc->nodes[doc->nodes[of].child].type != RT_J_NUM || doc->nodes[doc->nodes[doc->nodes[of].child].next].type != RT_J_NUM ||
        !(b >= 0 && e >= b && e <= (double)data_size) || b != (double)(uint64_t)b || e != (double)(uint64_t)e)
        return failf(err, errlen, st, F,
                     "%s: tensor '%s': data_offsets [%.0f, %.0f] are not inside the %zu data bytes (truncated "
                     "or corrupt file)",
                     path, t->name, b, e, data_size);
    t->begin = (size_t)b, t->end = (size_t)e;
    if ((uint64_t)(t->end - t->begin) != count * elem)
        return failf(err, errlen, st, F, "%s: tensor '%s' holds %zu bytes but its shape needs %llu", path, t->name,
                     t->end - t->begin, (unsigned long long)(count * elem));
    return 0;
}

/* __metadata__: string values; config and quantization kept. */
static int read_metadata(rt_checkpoint *ck, const rt_json *doc, int v, const char *path, char *err, size_t errlen,
                         int *st) {
    if (doc->nodes[v].type != RT_J_OBJ)
        return failf(err, errlen, st, MVMOE_RUN_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    for (int k = doc->nodes[v].child; k >= 0; k = doc->nodes[doc->nodes[k].next].next) {
        const int x = doc->nodes[k].next;
        if (doc->nodes[x].type != RT_J_STR)
            return failf(err, errlen, st, MVMOE_RUN_ERR_FORMAT, "%s: a __metadata__ value is not a string", path);
        char **dst = rt_json_str_is(doc, k, "config") ? &ck->config
                     : rt_json_str_is(doc, k, "quantization") ? &ck->quantization : NULL;
        if (!dst) continue;
        free(*dst);
        if (!(*dst = dup_str(doc, x)))
            return failf(err, errlen, st, MVMOE_RUN_ERR_NOMEM, "%s: out of memory for the metadata", path);
    }
    return 0;
}

static int read_header(rt_checkpoint *ck, const char *path, char *err, size_t errlen, int *st) {
    const int F = MVMOE_RUN_ERR_FORMAT;
    if (ck->size < 8)
        return failf(err, errlen, st, F, "%s: %zu bytes, too short for a safetensors file (truncated?)", path, ck->size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | ck->map[i];
    if (hl < 2 || hl > MAX_HEADER || hl > ck->size - 8)
        return failf(err, errlen, st, F,
                     "%s: header length %llu does not fit the %zu-byte file (at most 100 MB); not a safetensors "
                     "file, or truncated",
                     path, (unsigned long long)hl, ck->size);
    ck->data_start = 8 + (size_t)hl;
    rt_json doc;
    char jerr[160];
    if (rt_json_parse(&doc, (const char *)ck->map + 8, (size_t)hl, jerr, sizeof jerr))
        return failf(err, errlen, st, F, "%s: header is not valid JSON (%s)", path, jerr);
    int rc = 0;
    if (doc.nodes[0].type != RT_J_OBJ) rc = failf(err, errlen, st, F, "%s: header is not a JSON object", path);
    const int n = doc.nodes[0].count;
    if (!rc && !(ck->t = calloc((size_t)(n ? n : 1), sizeof *ck->t)))
        rc = failf(err, errlen, st, MVMOE_RUN_ERR_NOMEM, "%s: out of memory for %d tensors", path, n);
    const size_t data_size = ck->size - ck->data_start;
    for (int k = rc ? -1 : doc.nodes[0].child; k >= 0 && !rc; k = doc.nodes[doc.nodes[k].next].next) {
        const int v = doc.nodes[k].next;
        if (rt_json_str_is(&doc, k, "__metadata__")) {
            rc = read_metadata(ck, &doc, v, path, err, errlen, st);
            continue;
        }
        rt_tensor *t = &ck->t[ck->nt];
        if (doc.nodes[k].len >= MAX_NAME || !(t->name = dup_str(&doc, k))) {
            rc = failf(err, errlen, st, F, "%s: a tensor name is too long or unreadable", path);
            break;
        }
        ck->nt++;
        rc = read_entry(t, &doc, v, path, data_size, err, errlen, st);
    }
    rt_json_free(&doc);
    if (rc) return rc;
    /* names unique; offsets tile the data section exactly */
    qsort(ck->t, (size_t)ck->nt, sizeof *ck->t, by_name);
    for (int i = 1; i < ck->nt; i++)
        if (!strcmp(ck->t[i].name, ck->t[i - 1].name))
            return failf(err, errlen, st, F, "%s: tensor '%s' appears twice in the header", path, ck->t[i].name);
    rt_tensor **order = malloc(sizeof *order * (size_t)(ck->nt ? ck->nt : 1));
    if (!order) return failf(err, errlen, st, MVMOE_RUN_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < ck->nt; i++) order[i] = &ck->t[i];
    qsort(order, (size_t)ck->nt, sizeof *order, by_begin);
    size_t at = 0;
    for (int i = 0; i < ck->nt && !rc; i++) {
        if (order[i]->begin != at)
            rc = failf(err, errlen, st, F, "%s: tensor '%s' starts at data byte %zu, expected %zu (overlapping or "
                       "holey offsets: a corrupt file)", path, order[i]->name, order[i]->begin, at);
        at = order[i]->end;
    }
    free(order);
    if (!rc && at != data_size)
        rc = failf(err, errlen, st, F, "%s: the tensors end at data byte %zu but the file has %zu (truncated, or "
                   "trailing bytes)", path, at, data_size);
    return rc;
}

int rt_checkpoint_open(rt_checkpoint *ck, const char *path, int random_access, char *err, size_t errlen, int *st) {
    memset(ck, 0, sizeof *ck);
    ck->fd = -1;
    ck->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ck->fd < 0)
        return failf(err, errlen, st, MVMOE_RUN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(ck->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return failf(err, errlen, st, MVMOE_RUN_ERR_IO, "'%s' is not a regular file", path);
    if ((uint64_t)sb.st_size > ((uint64_t)64 << 30))
        return failf(err, errlen, st, MVMOE_RUN_ERR_FORMAT, "'%s' is larger than 64 GiB", path);
    ck->size = (size_t)sb.st_size;
    if (ck->size == 0) return failf(err, errlen, st, MVMOE_RUN_ERR_FORMAT, "'%s' is empty", path);
    void *m = mmap(NULL, ck->size, PROT_READ, MAP_PRIVATE, ck->fd, 0);
    if (m == MAP_FAILED)
        return failf(err, errlen, st, MVMOE_RUN_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    ck->map = m;
    /* before the header is read: its first fault would otherwise read ahead into the weights */
    if (random_access) (void)madvise(m, ck->size, MADV_RANDOM);
    if (read_header(ck, path, err, errlen, st)) return -1;
    for (int i = 0; i < ck->nt; i++) {
        rt_tensor *t = &ck->t[i];
        const uint8_t *p = ck->map + ck->data_start + t->begin;
        if (t->dtype == RT_DT_F32 && ((uintptr_t)p & 3u)) { /* another writer's unpadded header */
            if (!(t->copy = malloc(t->end - t->begin + 1)))
                return failf(err, errlen, st, MVMOE_RUN_ERR_NOMEM, "%s: out of memory copying '%s'", path, t->name);
            memcpy(t->copy, p, t->end - t->begin);
            p = t->copy;
        }
        t->data = p;
    }
    return 0;
}

void rt_checkpoint_close(rt_checkpoint *ck) {
    for (int i = 0; i < ck->nt; i++) {
        free(ck->t[i].name);
        free(ck->t[i].copy);
    }
    free(ck->t);
    free(ck->config);
    free(ck->quantization);
    if (ck->map) munmap((void *)ck->map, ck->size);
    if (ck->fd >= 0) close(ck->fd);
    memset(ck, 0, sizeof *ck);
    ck->fd = -1;
}

rt_tensor *rt_checkpoint_find(const rt_checkpoint *ck, const char *name) {
    rt_tensor key = {0};
    key.name = (char *)name;
    return ck->nt ? bsearch(&key, ck->t, (size_t)ck->nt, sizeof *ck->t, by_name) : NULL;
}
