/* Helpers shared by the fuzz harnesses (fuzz/fuzz_*.c) and their replay test
 * (tests/regressions/test_fuzz_replay.c, which includes every harness into one program).
 *
 * Readers that take a path get the fuzz input written to a scratch folder (on /dev/shm when it
 * exists, so no disk I/O), created once per process and removed at exit. Inputs that hold
 * several files are split at FZ_SEP, a separator the seed corpora use and fuzz/fuzz.dict
 * names so the mutator keeps it. A harness reports a broken invariant with FZ_ASSERT, which
 * aborts: libFuzzer counts that as a crash and the replay test as a failure. */
#ifndef MVMOE_FUZZ_UTIL_H
#define MVMOE_FUZZ_UTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvmoe.h"

#define FZ_SEP "\n--MVFZ-PART--\n"
#define FZ_SEP_LEN (sizeof FZ_SEP - 1)
#define FZ_MAX_PARTS 8

#define FZ_ASSERT(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, " (last error: %s)\n", mvmoe_last_error());              \
            abort();                                                                 \
        }                                                                            \
    } while (0)

typedef struct {
    const uint8_t *p;
    size_t n;
} fz_part;

static char fz_dir_path[256];

static inline int fz_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    if (ftw->level > 0) remove(path); /* everything under the scratch folder, not itself */
    return 0;
}

static inline void fz_clean(void) {
    if (fz_dir_path[0]) nftw(fz_dir_path, fz_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_remove_dir(void) {
    fz_clean();
    if (fz_dir_path[0]) rmdir(fz_dir_path);
}

/* The scratch folder, emptied: every harness call starts from nothing. */
static inline const char *fz_dir(void) {
    if (!fz_dir_path[0]) {
        struct stat st;
        const char *tmp = getenv("TMPDIR");
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
                                   access("/dev/shm", W_OK) == 0
                               ? "/dev/shm"
                               : (tmp && tmp[0] ? tmp : "/tmp");
        snprintf(fz_dir_path, sizeof fz_dir_path, "%s/mvmoe-fuzz-XXXXXX", base);
        if (!mkdtemp(fz_dir_path)) {
            perror("mvmoe fuzz: mkdtemp");
            abort();
        }
        atexit(fz_remove_dir);
    }
    fz_clean();
    return fz_dir_path;
}

/* dir/name in a static buffer (one of 8, so a few can be alive at once). */
static inline const char *fz_path(const char *name) {
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fz_dir_path, name);
    return buf[k];
}

static inline void fz_write(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort(); /* the scratch folder is ours: failing to write it is not the reader's fault */
    }
}

/* Splits data at FZ_SEP into at most max parts (the last takes the rest); returns the count. */
static inline int fz_split(const uint8_t *data, size_t size, fz_part *parts, int max) {
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n < max - 1 && i + FZ_SEP_LEN <= size; i++) {
        if (memcmp(data + i, FZ_SEP, FZ_SEP_LEN) == 0) {
            parts[n].p = data + start;
            parts[n].n = i - start;
            n++;
            start = i + FZ_SEP_LEN;
            i = start - 1;
        }
    }
    parts[n].p = data + start;
    parts[n].n = size - start;
    return n + 1;
}

#endif
