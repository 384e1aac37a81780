/* Reading raw IDX folders and PGM/PPM files for mvmoe-run (data.h). The runtime has no zlib,
 * so gzip-compressed IDX files are refused with the command that unpacks them. Every header
 * field is checked against the file's size before anything is allocated. */
#include "data.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The first of DIR/PREFIX-KIND-idx?-ubyte, DIR/PREFIX-KIND.idx?-ubyte that exists, into path. */
static int find(char *path, size_t cap, const char *dir, const char *prefix, const char *kind, int dims) {
    snprintf(path, cap, "%s/%s-%s-idx%d-ubyte", dir, prefix, kind, dims);
    if (is_file(path)) return 0;
    snprintf(path, cap, "%s/%s-%s.idx%d-ubyte", dir, prefix, kind, dims);
    return is_file(path) ? 0 : -1;
}

/* A whole file, at most `max` bytes. */
static uint8_t *slurp(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size > max) {
        fclose(f);
        fail(err, errlen, "'%s' is larger than %zu bytes", path, max);
        return NULL;
    }
    *len = (size_t)sb.st_size;
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf || fread(buf, 1, *len, f) != *len) {
        fail(err, errlen, buf ? "cannot read '%s'" : "out of memory reading '%s'", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

int run_idx_load(const char *dir, const char *split, run_images *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const char *prefix = strcmp(split, "train") == 0 ? "train" : "t10k";
    char ip[4096], lp[4096];
    if (find(ip, sizeof ip, dir, prefix, "images", 3) || find(lp, sizeof lp, dir, prefix, "labels", 1)) {
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
        if (is_file(ip))
            return fail(err, errlen,
                        "'%s' holds gzip-compressed IDX files; mvmoe-run reads raw IDX only (it links no zlib): "
                        "unpack them with `gunzip -k %s/*.gz` (or into another folder) and give that folder",
                        dir, dir);
        return fail(err, errlen, "no raw IDX files for split '%s' in '%s' (expected %s-images-idx3-ubyte and "
                    "%s-labels-idx1-ubyte)", split, dir, prefix, prefix);
    }
    size_t il = 0, ll = 0;
    uint8_t *ib = slurp(ip, (size_t)16 << 30, &il, err, errlen);
    if (!ib) return -1;
    uint8_t *lb = slurp(lp, (size_t)1 << 30, &ll, err, errlen);
    if (!lb) {
        free(ib);
        return -1;
    }
    int rc = 0;
    if (il < 16 || be32(ib) != 0x803u) rc = fail(err, errlen, "'%s' is not an IDX image file (bad magic)", ip);
    else if (ll < 8 || be32(lb) != 0x801u) rc = fail(err, errlen, "'%s' is not an IDX label file (bad magic)", lp);
    const uint64_t n = rc ? 0 : be32(ib + 4), h = rc ? 0 : be32(ib + 8), w = rc ? 0 : be32(ib + 12);
    if (!rc && (h == 0 || w == 0 || h > 32768 || w > 32768 || n > 0x7fffffffu || n * h * w != il - 16))
        rc = fail(err, errlen, "'%s': header says %llu images of %llux%llu but the file holds %zu bytes of pixels "
                  "(truncated or corrupt)", ip, (unsigned long long)n, (unsigned long long)h, (unsigned long long)w,
                  il - 16);
    if (!rc && (be32(lb + 4) != n || ll - 8 != n))
        rc = fail(err, errlen, "'%s' does not hold one label per image of '%s' (%llu)", lp, ip, (unsigned long long)n);
    if (!rc) {
        out->pixels = malloc(n ? n * h * w : 1);
        out->labels = malloc(sizeof(int32_t) * (n ? n : 1));
        if (!out->pixels || !out->labels) rc = fail(err, errlen, "out of memory for %llu images", (unsigned long long)n);
    }
    if (!rc) {
        memcpy(out->pixels, ib + 16, n * h * w);
        for (uint64_t i = 0; i < n; i++) out->labels[i] = lb[8 + i];
        out->n = (int)n, out->c = 1, out->h = (int)h, out->w = (int)w;
    } else {
        run_images_free(out);
    }
    free(ib);
    free(lb);
    return rc;
}

/* The next header number of a PNM file (skipping white space and # comments). */
static int pnm_number(const uint8_t *b, size_t len, size_t *pos, long *v) {
    for (;;) {
        while (*pos < len && (b[*pos] == ' ' || b[*pos] == '\t' || b[*pos] == '\n' || b[*pos] == '\r')) (*pos)++;
        if (*pos < len && b[*pos] == '#') {
            while (*pos < len && b[*pos] != '\n') (*pos)++;
            continue;
        }
        break;
    }
    if (*pos >= len || b[*pos] < '0' || b[*pos] > '9') return -1;
    *v = 0;
    while (*pos < len && b[*pos] >= '0' && b[*pos] <= '9') {
        *v = *v * 10 + (b[*pos] - '0');
        if (*v > 1000000) return -1;
        (*pos)++;
    }
    return 0;
}

int run_pnm_load(const char *path, run_images *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t len = 0;
    uint8_t *b = slurp(path, (size_t)1 << 30, &len, err, errlen);
    if (!b) return -1;
    long w = 0, h = 0, mx = 0;
    size_t pos = 2;
    const int C = len >= 2 && b[0] == 'P' && b[1] == '5' ? 1 : len >= 2 && b[0] == 'P' && b[1] == '6' ? 3 : 0;
    int rc = 0;
    if (!C) rc = fail(err, errlen, "'%s' is not a binary PGM (P5) or PPM (P6) image: mvmoe-run reads only those "
                      "(convert PNG/JPEG first, e.g. `convert in.png out.pgm`)", path);
    else if (pnm_number(b, len, &pos, &w) || pnm_number(b, len, &pos, &h) || pnm_number(b, len, &pos, &mx) ||
             w < 1 || h < 1 || mx < 1 || mx > 255 || pos >= len)
        rc = fail(err, errlen, "'%s': bad PGM/PPM header (need width, height and a maxval of at most 255)", path);
    else if (len - pos - 1 < (size_t)(w * h * C))
        rc = fail(err, errlen, "'%s': %ldx%ld image is truncated", path, w, h);
    if (!rc && !(out->pixels = malloc((size_t)(w * h * C))))
        rc = fail(err, errlen, "out of memory for '%s'", path);
    if (!rc) {
        const uint8_t *px = b + pos + 1; /* one white-space byte after maxval */
        for (long i = 0; i < w * h; i++)
            for (int c = 0; c < C; c++) {
                long v = px[i * C + c];
                if (mx != 255) v = (v * 255 + mx / 2) / mx;
                out->pixels[(size_t)c * w * h + i] = (uint8_t)(v > 255 ? 255 : v);
            }
        out->n = 1, out->c = C, out->h = (int)h, out->w = (int)w;
    }
    free(b);
    return rc;
}

void run_images_free(run_images *im) {
    free(im->pixels);
    free(im->labels);
    memset(im, 0, sizeof *im);
}
