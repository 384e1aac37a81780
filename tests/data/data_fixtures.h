/* Helpers for the data-layer tests: temporary folders and small files written on the spot. */
#ifndef MVMOE_TESTS_DATA_FIXTURES_H
#define MVMOE_TESTS_DATA_FIXTURES_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int fx_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a folder tree (only ever called on folders made by fx_tempdir). */
static inline void fx_rmtree(const char *dir) { nftw(dir, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh folder under $TMPDIR (or /tmp) whose name contains `tag`; static storage per call. */
static inline char *fx_tempdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *p = malloc(512);
    if (!p) return NULL;
    snprintf(p, 512, "%s/mvmoe-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static inline char *fx_path(const char *dir, const char *name) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static inline int fx_mkdir(const char *dir, const char *name) { return mkdir(fx_path(dir, name), 0755); }

static inline int fx_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static inline void fx_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif
