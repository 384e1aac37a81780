/* MNIST / Fashion-MNIST IDX files (LeCun's format: big-endian magic 0x00000803 + n, rows,
 * cols for images; 0x00000801 + n for labels; then unsigned bytes), plain or gzip-compressed.
 * Every header field is checked against what the file actually holds before anything large is
 * allocated, so hostile headers give MVMOE_ERR_FORMAT instead of huge allocations. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/status.h"
#include "data/loaders.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* type 0x08 = unsigned byte, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* type 0x08 = unsigned byte, 1 dimension */
#define IDX_MAX_SIDE 32768u
/* Deflate cannot expand data by more than 1032:1 (zlib technical details), so a .gz file
 * of s bytes holds at most 1032 s bytes: an upper bound checked before allocating. */
#define DEFLATE_MAX_RATIO 1032u
#define FIRST_CHUNK ((size_t)4 << 20)

static const char *const image_patterns[] = {"%s-images-idx3-ubyte", "%s-images-idx3-ubyte.gz",
                                             "%s-images.idx3-ubyte"};
static const char *const label_patterns[] = {"%s-labels-idx1-ubyte", "%s-labels-idx1-ubyte.gz",
                                             "%s-labels.idx1-ubyte"};
#define NPATTERNS 3

typedef struct {
    gzFile f;
    char *path;
    unsigned long long file_size;
} idx_file;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Path of the first existing candidate for (prefix, patterns) in dir, or NULL. */
static char *find_file(const char *dir, const char *prefix, const char *const *patterns) {
    for (int i = 0; i < NPATTERNS; i++) {
        char name[64];
        snprintf(name, sizeof name, patterns[i], prefix);
        char *p = mvmoe_data_join(dir, name);
        if (!p) return NULL;
        if (mvmoe_data_is_file(p)) return p;
        free(p);
    }
    return NULL;
}

int mvmoe_idx_detect(const char *dir) {
    const char *prefixes[] = {"train", "t10k"};
    for (int i = 0; i < 2; i++) {
        char *p = find_file(dir, prefixes[i], image_patterns);
        if (p) {
            free(p);
            return 1;
        }
    }
    return 0;
}

static void idx_close(idx_file *x) {
    if (x->f) gzclose(x->f);
    free(x->path);
    x->f = NULL;
    x->path = NULL;
}

static mvmoe_status idx_open(idx_file *x, const char *dir, const char *prefix,
                             const char *const *patterns) {
    memset(x, 0, sizeof *x);
    x->path = find_file(dir, prefix, patterns);
    if (!x->path) {
        char names[NPATTERNS][64];
        for (int i = 0; i < NPATTERNS; i++) snprintf(names[i], sizeof names[i], patterns[i], prefix);
        MVMOE_FAIL(MVMOE_ERR_IO, "missing IDX file: tried %s, %s and %s in %s; put the "
                   "MNIST-style files there (for Fashion-MNIST: apt-get install "
                   "dataset-fashion-mnist, which provides /usr/share/datasets/fashion-mnist)",
                   names[0], names[1], names[2], dir);
    }
    struct stat st;
    if (stat(x->path, &st) != 0) {
        mvmoe_status s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__, "cannot stat %s: %s",
                                         x->path, strerror(errno));
        idx_close(x);
        return s;
    }
    x->file_size = (unsigned long long)st.st_size;
    x->f = gzopen(x->path, "rb");
    if (!x->f) {
        mvmoe_status s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__, "cannot open %s: %s",
                                         x->path, strerror(errno));
        idx_close(x);
        return s;
    }
    return MVMOE_OK;
}

/* Reads up to n bytes; *got < n only at the end of the data. */
static mvmoe_status idx_read(idx_file *x, void *buf, size_t n, size_t *got) {
    size_t have = 0;
    while (have < n) {
        size_t chunk = n - have < ((size_t)1 << 30) ? n - have : ((size_t)1 << 30);
        int r = gzread(x->f, (uint8_t *)buf + have, (unsigned)chunk);
        int errnum = Z_OK;
        const char *msg = gzerror(x->f, &errnum);
        if (r < 0 || (errnum != Z_OK && errnum != Z_STREAM_END)) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: corrupt or truncated gzip data (%s); re-download "
                       "or re-extract the file", x->path, msg ? msg : "gzread failed");
        }
        if (r == 0) break;
        have += (size_t)r;
    }
    *got = have;
    return MVMOE_OK;
}

/* Reads exactly `want` payload bytes into a buffer that grows with what was actually read, so a
 * header that lies about the size cannot make us allocate more than about twice the data. */
static mvmoe_status read_payload(idx_file *x, size_t want, uint8_t **out, const char *declared) {
    size_t cap = want < FIRST_CHUNK ? want : FIRST_CHUNK;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zu bytes to read %s", cap, x->path);
    size_t have = 0;
    while (have < want) {
        if (have == cap) {
            size_t ncap = cap > want / 2 ? want : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zu bytes to read %s", ncap, x->path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = 0, req = cap - have;
        mvmoe_status s = idx_read(x, buf + have, req, &got);
        if (s != MVMOE_OK) {
            free(buf);
            return s;
        }
        have += got;
        if (got < req) { /* end of data before `want` bytes */
            free(buf);
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s is truncated: it holds %zu data bytes after the "
                       "header, but the header declares %s (%zu bytes); re-download the file",
                       x->path, have, declared, want);
        }
    }
    *out = buf;
    return MVMOE_OK;
}

/* Plain files must match their header exactly; gzip files must be able to hold it. */
static mvmoe_status check_size(const idx_file *x, unsigned long long header,
                               unsigned long long payload, const char *declared) {
    if (gzdirect(x->f)) {
        if (x->file_size != header + payload) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s has %llu bytes, but its header declares %s, which "
                       "needs %llu + %llu bytes; the file is truncated or not an IDX file",
                       x->path, x->file_size, declared, header, payload);
        }
    } else if (payload > x->file_size * DEFLATE_MAX_RATIO) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s header declares %s (%llu bytes), more than a %llu-byte "
                   "gzip file can hold; the header is corrupt", x->path, declared, payload,
                   x->file_size);
    }
    return MVMOE_OK;
}

/* After reading everything the header declares, nothing may follow. */
static mvmoe_status check_end(idx_file *x, const char *declared) {
    uint8_t extra;
    size_t got = 0;
    MVMOE_TRY(idx_read(x, &extra, 1, &got));
    if (got) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s has data after the %s its header declares; the header "
                   "count is wrong or the file is corrupt", x->path, declared);
    }
    return MVMOE_OK;
}

static mvmoe_status read_header(idx_file *x, uint8_t *h, size_t n) {
    size_t got = 0;
    MVMOE_TRY(idx_read(x, h, n, &got));
    if (got < n) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s is too short for an IDX header (%zu of %zu bytes)",
                   x->path, got, n);
    }
    return MVMOE_OK;
}

static mvmoe_status check_magic(const idx_file *x, uint32_t magic, uint32_t want) {
    if (magic != want) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: bad IDX magic 0x%08x, expected 0x%08x (unsigned bytes, "
                   "%d dimension%s)%s", x->path, magic, want, want == IDX_MAGIC_IMAGES ? 3 : 1,
                   want == IDX_MAGIC_IMAGES ? "s" : "",
                   magic == IDX_MAGIC_IMAGES || magic == IDX_MAGIC_LABELS
                       ? "; the image and label files look swapped" : "");
    }
    return MVMOE_OK;
}

static mvmoe_status load_images(mvmoe_dataset *ds, idx_file *x, int max_images, uint32_t *count) {
    uint8_t h[16];
    MVMOE_TRY(read_header(x, h, sizeof h));
    MVMOE_TRY(check_magic(x, be32(h), IDX_MAGIC_IMAGES));
    uint32_t n = be32(h + 4), rows = be32(h + 8), cols = be32(h + 12);
    char declared[96];
    snprintf(declared, sizeof declared, "%u images of %ux%u", n, rows, cols);
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: image size %ux%u is outside 1..%u; the header is "
                   "corrupt", x->path, rows, cols, IDX_MAX_SIDE);
    }
    if (n == 0 || n > INT_MAX) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: image count %u is outside 1..%d", x->path, n, INT_MAX);
    }
    unsigned long long per = (unsigned long long)rows * cols;
    MVMOE_TRY(check_size(x, 16, per * n, declared));
    uint32_t take = max_images > 0 && (uint32_t)max_images < n ? (uint32_t)max_images : n;
    uint8_t *pix;
    MVMOE_TRY(read_payload(x, (size_t)(per * take), &pix, declared));
    if (take == n) {
        mvmoe_status s = check_end(x, declared);
        if (s != MVMOE_OK) {
            free(pix);
            return s;
        }
    }
    ds->images = pix;
    ds->n = (int)take;
    ds->c = 1;
    ds->h = (int)rows;
    ds->w = (int)cols;
    *count = n;
    return MVMOE_OK;
}

static mvmoe_status load_labels(mvmoe_dataset *ds, idx_file *x, const char *image_path,
                                uint32_t image_count) {
    uint8_t h[8];
    MVMOE_TRY(read_header(x, h, sizeof h));
    MVMOE_TRY(check_magic(x, be32(h), IDX_MAGIC_LABELS));
    uint32_t n = be32(h + 4);
    if (n != image_count) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s declares %u labels but %s declares %u images; the two "
                   "files must belong together", x->path, n, image_path, image_count);
    }
    char declared[64];
    snprintf(declared, sizeof declared, "%u labels", n);
    MVMOE_TRY(check_size(x, 8, n, declared));
    uint8_t *lab;
    MVMOE_TRY(read_payload(x, (size_t)ds->n, &lab, declared));
    if ((uint32_t)ds->n == n) {
        mvmoe_status s = check_end(x, declared);
        if (s != MVMOE_OK) {
            free(lab);
            return s;
        }
    }
    ds->labels = malloc((size_t)ds->n * sizeof *ds->labels);
    if (!ds->labels) {
        free(lab);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %d labels for %s", ds->n, x->path);
    }
    for (int i = 0; i < ds->n; i++) ds->labels[i] = lab[i];
    free(lab);
    return MVMOE_OK;
}

/* classes.txt beside the files wins; else Fashion-MNIST's names when the path says so; else
 * digits. Without classes.txt there are exactly 10 classes (the MNIST family), so that train
 * and test (and capped loads) agree, and a stray label such as 255 cannot silently make a
 * 256-class model: more classes need classes.txt. */
static mvmoe_status set_class_names(mvmoe_dataset *ds, const char *dir) {
    int maxl = 0, at = 0;
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] > maxl) maxl = ds->labels[i], at = i;
    char *names_path = mvmoe_data_join(dir, "classes.txt");
    if (!names_path) return MVMOE_ERR_NOMEM;
    if (mvmoe_data_is_file(names_path)) {
        mvmoe_status s = mvmoe_data_read_names(names_path, &ds->class_names, &ds->num_classes);
        if (s == MVMOE_OK && maxl >= ds->num_classes) {
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "label %d in %s is beyond the %d names of %s; add the missing "
                                "names (one per line)", maxl, dir, ds->num_classes, names_path);
        }
        free(names_path);
        return s;
    }
    free(names_path);
    if (maxl >= 10)
        MVMOE_FAIL(MVMOE_ERR_FORMAT,
                   "label %d (image %d) in the IDX files of %s: without a classes.txt beside them "
                   "labels must be 0..9 (MNIST, Fashion-MNIST); the label file is corrupt, or add "
                   "classes.txt with one class name per line", maxl, at, dir);
    ds->num_classes = 10;
    char *real = realpath(dir, NULL);
    int fashion = strcasestr(real ? real : dir, "fashion") != NULL;
    free(real);
    if (fashion && ds->num_classes == 10)
        return mvmoe_data_names_copy(mvmoe_fashion_mnist_names, 10, &ds->class_names);
    return mvmoe_data_names_numeric(ds->num_classes, &ds->class_names);
}

mvmoe_status mvmoe_idx_load(mvmoe_dataset *ds, const char *dir, const char *split, int max_images) {
    const char *prefix = strcmp(split, "train") == 0 ? "train"
                         : strcmp(split, "test") == 0 ? "t10k" : NULL;
    if (!prefix) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "split '%s' of IDX dataset %s: use \"train\" or \"test\"",
                   split, dir);
    }
    idx_file imgs, labs;
    MVMOE_TRY(idx_open(&imgs, dir, prefix, image_patterns));
    uint32_t count = 0;
    mvmoe_status s = load_images(ds, &imgs, max_images, &count);
    if (s == MVMOE_OK) s = idx_open(&labs, dir, prefix, label_patterns);
    if (s == MVMOE_OK) {
        s = load_labels(ds, &labs, imgs.path, count);
        idx_close(&labs);
    }
    idx_close(&imgs);
    if (s == MVMOE_OK) s = set_class_names(ds, dir);
    return s;
}
