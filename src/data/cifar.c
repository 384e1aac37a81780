/* CIFAR-10 / CIFAR-100 "binary version" files (Krizhevsky 2009, cs.toronto.edu/~kriz/cifar):
 * fixed-size records of label byte(s) + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major
 * 32x32), i.e. exactly our [3, 32, 32] layout. CIFAR-10: <1 label><3072>, files data_batch_1..5
 * (train) and test_batch (test). CIFAR-100: <1 coarse><1 fine><3072>, train.bin / test.bin. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status.h"
#include "data/loaders.h"

#define CIFAR_PIXELS 3072
#define CIFAR_MAX_FILES 5

static char *detect_in(const char *dir, const char *a, const char *b) {
    char *pa = mvmoe_data_join(dir, a), *pb = mvmoe_data_join(dir, b);
    int found = (pa && mvmoe_data_is_file(pa)) || (pb && mvmoe_data_is_file(pb));
    free(pa);
    free(pb);
    return found ? strdup(dir) : NULL;
}

int mvmoe_cifar_detect(const char *dir, char **root) {
    /* The folder itself, or the folder the official tarballs extract to. */
    static const struct {
        const char *sub;
        int kind;
        const char *a, *b;
    } where[] = {{NULL, 10, "data_batch_1.bin", "test_batch.bin"},
                 {"cifar-10-batches-bin", 10, "data_batch_1.bin", "test_batch.bin"},
                 {NULL, 100, "train.bin", "test.bin"},
                 {"cifar-100-binary", 100, "train.bin", "test.bin"}};
    *root = NULL;
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        char *d = where[i].sub ? mvmoe_data_join(dir, where[i].sub) : strdup(dir);
        if (!d) return 0;
        char *r = detect_in(d, where[i].a, where[i].b);
        free(d);
        if (r) {
            *root = r;
            return where[i].kind;
        }
    }
    return 0;
}

typedef struct {
    char *path[CIFAR_MAX_FILES];
    long long records[CIFAR_MAX_FILES];
    int nfiles;
} cifar_files;

static void files_free(cifar_files *f) {
    for (int i = 0; i < f->nfiles; i++) free(f->path[i]);
}

/* Lists the split's files and checks each size is a whole number of records. */
static mvmoe_status list_files(cifar_files *f, const char *root, int kind, const char *split,
                               size_t rec) {
    memset(f, 0, sizeof *f);
    char names[CIFAR_MAX_FILES][32];
    int n;
    if (strcmp(split, "train") == 0) {
        n = kind == 10 ? 5 : 1;
        for (int i = 0; i < n; i++) {
            if (kind == 10) snprintf(names[i], sizeof names[i], "data_batch_%d.bin", i + 1);
            else snprintf(names[i], sizeof names[i], "train.bin");
        }
    } else if (strcmp(split, "test") == 0) {
        n = 1;
        snprintf(names[0], sizeof names[0], "%s", kind == 10 ? "test_batch.bin" : "test.bin");
    } else {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "split '%s' of CIFAR dataset %s: use \"train\" or \"test\"",
                   split, root);
    }
    for (int i = 0; i < n; i++) {
        f->path[i] = mvmoe_data_join(root, names[i]);
        if (!f->path[i]) {
            files_free(f);
            return MVMOE_ERR_NOMEM;
        }
        f->nfiles = i + 1;
        struct stat st;
        if (stat(f->path[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__,
                            "missing CIFAR-%d file %s (the binary version has %s); extract "
                            "cifar-%d-binary.tar.gz there", kind, f->path[i],
                            kind == 10 ? "data_batch_1..5.bin and test_batch.bin"
                                       : "train.bin and test.bin", kind);
            files_free(f);
            return MVMOE_ERR_IO;
        }
        if (st.st_size == 0 || (unsigned long long)st.st_size % rec != 0) {
            mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s has %lld bytes, not a positive multiple of the %zu-byte CIFAR-%d "
                            "record; the file is truncated or not CIFAR-%d binary", f->path[i],
                            (long long)st.st_size, rec, kind, kind);
            files_free(f);
            return MVMOE_ERR_FORMAT;
        }
        f->records[i] = (long long)((unsigned long long)st.st_size / rec);
    }
    return MVMOE_OK;
}

/* Reads `want` records from the files in order into ds (labels checked on the way). */
static mvmoe_status read_records(mvmoe_dataset *ds, const cifar_files *f, int kind, int want) {
    size_t rec = kind == 10 ? 1 + CIFAR_PIXELS : 2 + CIFAR_PIXELS;
    uint8_t buf[2 + CIFAR_PIXELS];
    /* CIFAR-100: each fine class belongs to one coarse class, the super-classes routing uses */
    int coarse_of[100], coarse_at[100];
    for (int k = 0; k < 100; k++) coarse_of[k] = -1;
    int done = 0;
    for (int fi = 0; fi < f->nfiles && done < want; fi++) {
        FILE *fp = fopen(f->path[fi], "rb");
        if (!fp) MVMOE_FAIL(MVMOE_ERR_IO, "cannot open %s: %s", f->path[fi], strerror(errno));
        for (long long r = 0; r < f->records[fi] && done < want; r++, done++) {
            if (fread(buf, 1, rec, fp) != rec) {
                fclose(fp);
                MVMOE_FAIL(MVMOE_ERR_IO, "cannot read record %lld of %s (file changed while "
                           "reading?)", r, f->path[fi]);
            }
            int fine = buf[rec - CIFAR_PIXELS - 1];
            if (fine >= kind || (kind == 100 && buf[0] >= 20)) {
                fclose(fp);
                MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s record %lld: label %d%s out of range (CIFAR-%d "
                           "has %d classes%s); the file is corrupt or not CIFAR-%d", f->path[fi],
                           r, fine, kind == 100 && buf[0] >= 20 ? " / coarse label" : "", kind,
                           kind, kind == 100 ? ", 20 coarse" : "", kind);
            }
            if (kind == 100 && coarse_of[fine] >= 0 && coarse_of[fine] != buf[0]) {
                fclose(fp);
                MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s record %lld: fine label %d has coarse label %d, "
                           "but image %d of this split has it under coarse label %d; the fine and "
                           "coarse labels disagree, so the file is corrupt", f->path[fi], r, fine,
                           buf[0], coarse_at[fine], coarse_of[fine]);
            }
            if (kind == 100 && coarse_of[fine] < 0) coarse_of[fine] = buf[0], coarse_at[fine] = done;
            ds->labels[done] = fine;
            if (ds->coarse) ds->coarse[done] = buf[0];
            memcpy(ds->images + (size_t)done * CIFAR_PIXELS, buf + rec - CIFAR_PIXELS, CIFAR_PIXELS);
        }
        fclose(fp);
    }
    return MVMOE_OK;
}

static mvmoe_status load_names(mvmoe_dataset *ds, const char *root, int kind) {
    const char *file = kind == 10 ? "batches.meta.txt" : "fine_label_names.txt";
    char *path = mvmoe_data_join(root, file);
    if (!path) return MVMOE_ERR_NOMEM;
    mvmoe_status s;
    if (mvmoe_data_is_file(path)) {
        int n = 0;
        s = mvmoe_data_read_names(path, &ds->class_names, &n);
        if (s == MVMOE_OK && n != kind) {
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s has %d names, CIFAR-%d needs %d (one per line); fix or "
                                "delete it to use the standard names", path, n, kind, kind);
            mvmoe_data_names_free(ds->class_names, n);
            ds->class_names = NULL;
        }
    } else {
        s = mvmoe_data_names_copy(kind == 10 ? mvmoe_cifar10_names : mvmoe_cifar100_fine_names,
                                  kind, &ds->class_names);
    }
    free(path);
    return s;
}

mvmoe_status mvmoe_cifar_load(mvmoe_dataset *ds, const char *root, int kind, const char *split,
                              int max_images) {
    size_t rec = kind == 10 ? 1 + CIFAR_PIXELS : 2 + CIFAR_PIXELS;
    cifar_files f;
    MVMOE_TRY(list_files(&f, root, kind, split, rec));
    long long total = 0;
    for (int i = 0; i < f.nfiles; i++) total += f.records[i];
    if (total > INT_MAX) {
        files_free(&f);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "CIFAR split %s/%s holds %lld records, more than %d", root,
                   split, total, INT_MAX);
    }
    int want = max_images > 0 && max_images < total ? max_images : (int)total;
    ds->n = want;
    ds->c = 3;
    ds->h = ds->w = 32;
    ds->num_classes = kind;
    ds->images = malloc((size_t)want * CIFAR_PIXELS);
    ds->labels = malloc((size_t)want * sizeof *ds->labels);
    if (kind == 100) {
        ds->coarse = malloc((size_t)want * sizeof *ds->coarse);
        ds->num_coarse = 20;
    }
    mvmoe_status s = MVMOE_OK;
    if (!ds->images || !ds->labels || (kind == 100 && !ds->coarse)) {
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                            "cannot allocate %d CIFAR images from %s; use --max-images", want, root);
    }
    if (s == MVMOE_OK) s = read_records(ds, &f, kind, want);
    files_free(&f);
    if (s == MVMOE_OK) s = load_names(ds, root, kind);
    return s;
}
