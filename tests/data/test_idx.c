/* IDX (MNIST / Fashion-MNIST) reader: round trips of plain and gzip files written here,
 * hostile headers rejected with MVMOE_ERR_FORMAT, class-name rules, and the real
 * Fashion-MNIST test split when the dataset-fashion-mnist package is installed. */
#include <string.h>
#include <zlib.h>

#include "data/data.h"
#include "data_fixtures.h"
#include "mvmoe.h"
#include "test_util.h"

/* Writes an IDX file: magic, dims (count, rows, cols or just count), payload; plain or gzip.
 * cut > 0 drops that many payload bytes, extra > 0 appends junk bytes. */
static int write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndims,
                     const uint8_t *payload, size_t n, size_t cut, size_t extra) {
    size_t hdr = 4 + 4 * (size_t)ndims, total = hdr + n - cut + extra;
    uint8_t *buf = calloc(total, 1);
    if (!buf) return -1;
    fx_be32(buf, magic);
    for (int i = 0; i < ndims; i++) fx_be32(buf + 4 + 4 * i, dims[i]);
    memcpy(buf + hdr, payload, n - cut);
    for (size_t i = 0; i < extra; i++) buf[hdr + n - cut + i] = (uint8_t)(i * 37 + 1);
    int rc;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        rc = f && gzwrite(f, buf, (unsigned)total) == (int)total ? 0 : -1;
        if (f && gzclose(f) != Z_OK) rc = -1;
    } else {
        rc = fx_write(path, buf, total);
    }
    free(buf);
    return rc;
}

typedef struct {
    int n, rows, cols;
    uint8_t *pix, *lab;
} idx_set;

static void make_set(idx_set *s, int n, int rows, int cols, int seed) {
    s->n = n;
    s->rows = rows;
    s->cols = cols;
    s->pix = malloc((size_t)n * rows * cols);
    s->lab = malloc((size_t)n);
    for (int i = 0; i < n * rows * cols; i++) s->pix[i] = (uint8_t)((i * 31 + seed * 7 + i / 5) & 255);
    for (int i = 0; i < n; i++) s->lab[i] = (uint8_t)((i * 3 + seed) % 10);
}

static int write_set(const char *dir, const char *prefix, const idx_set *s, int gz) {
    char name[64];
    uint32_t di[3] = {(uint32_t)s->n, (uint32_t)s->rows, (uint32_t)s->cols}, dl[1] = {(uint32_t)s->n};
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    int rc = write_idx(fx_path(dir, name), gz, 0x803, di, 3, s->pix, (size_t)s->n * s->rows * s->cols, 0, 0);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    rc |= write_idx(fx_path(dir, name), gz, 0x801, dl, 1, s->lab, (size_t)s->n, 0, 0);
    return rc;
}

static int same_as(const mvmoe_dataset *ds, const idx_set *s, int n) {
    if (ds->n != n || ds->c != 1 || ds->h != s->rows || ds->w != s->cols) return 0;
    if (memcmp(ds->images, s->pix, (size_t)n * s->rows * s->cols) != 0) return 0;
    for (int i = 0; i < n; i++)
        if (ds->labels[i] != s->lab[i]) return 0;
    return 1;
}

static void test_round_trip(void) {
    char *dir = fx_tempdir("idx");
    CHECK(dir != NULL, "mkdtemp failed");
    if (!dir) return;
    idx_set tr, te;
    make_set(&tr, 7, 5, 4, 1);
    make_set(&te, 9, 3, 6, 2);
    CHECK(write_set(dir, "train", &tr, 0) == 0, "writing plain train files");
    CHECK(write_set(dir, "t10k", &te, 1) == 0, "writing gzip test files");
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_OK, "plain load: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        CHECK(same_as(&ds, &tr, 7), "plain round trip differs (n=%d %dx%d)", ds.n, ds.h, ds.w);
        CHECK(ds.num_classes == 10, "num_classes %d", ds.num_classes);
        CHECK(ds.class_names && strcmp(ds.class_names[3], "3") == 0, "digit names");
        CHECK(ds.coarse == NULL && ds.source && strcmp(ds.source, dir) == 0, "source / coarse");
        mvmoe_dataset_free(&ds);
        CHECK(ds.images == NULL && ds.n == 0, "free zeroes the struct");
    }
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_OK, "gzip load: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        CHECK(same_as(&ds, &te, 9), "gzip round trip differs");
        mvmoe_dataset_free(&ds);
    }
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 4);
    CHECK(s == MVMOE_OK && same_as(&ds, &te, 4), "max_images = 4: n = %d", ds.n);
    mvmoe_dataset_free(&ds);

    /* without classes.txt, a label beyond 9 is refused (it would make a 256-class model of
     * a stray 255) */
    {
        idx_set odd;
        make_set(&odd, 6, 5, 4, 3);
        odd.lab[4] = 255;
        char sub[600];
        snprintf(sub, sizeof sub, "%s/odd", dir);
        fx_mkdir(dir, "odd");
        CHECK(write_set(sub, "train", &odd, 0) == 0, "writing the label-255 set");
        s = mvmoe_dataset_load(&ds, sub, "train", 0, 0);
        CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "label 255 (image 4)") &&
                  strstr(mvmoe_last_error(), "classes.txt"),
              "label 255 without classes.txt: %d %s", s, mvmoe_last_error());
        if (s == MVMOE_OK) mvmoe_dataset_free(&ds);
        free(odd.pix);
        free(odd.lab);
    }

    /* classes.txt wins and sets num_classes; labels beyond it are rejected */
    const char *names = "zero\none\r\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\neleven\n\n";
    fx_write(fx_path(dir, "classes.txt"), names, strlen(names));
    s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_OK && ds.num_classes == 12 && strcmp(ds.class_names[1], "one") == 0 &&
              strcmp(ds.class_names[11], "eleven") == 0,
          "classes.txt: %s, K = %d", mvmoe_last_error(), ds.num_classes);
    mvmoe_dataset_free(&ds);
    fx_write(fx_path(dir, "classes.txt"), "a\nb\n", 4);
    s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "classes.txt"),
          "labels beyond classes.txt: %d %s", s, mvmoe_last_error());
    remove(fx_path(dir, "classes.txt"));

    s = mvmoe_dataset_load(&ds, dir, "val", 0, 0);
    CHECK(s == MVMOE_ERR_INVALID, "split 'val' of IDX: %d", s);
    fx_rmtree(dir);
    free(dir);

    /* a path that says "fashion" gets Fashion-MNIST's names; a missing split names the files */
    dir = fx_tempdir("Fashion");
    write_set(dir, "train", &tr, 1);
    s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_OK && strcmp(ds.class_names[0], "T-shirt/top") == 0 &&
              strcmp(ds.class_names[9], "Ankle boot") == 0, "fashion names: %s", mvmoe_last_error());
    mvmoe_dataset_free(&ds);
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), "t10k-images-idx3-ubyte") &&
              strstr(mvmoe_last_error(), "apt-get install"), "missing test split: %s",
          mvmoe_last_error());
    fx_rmtree(dir);
    free(dir);
    free(tr.pix); free(tr.lab); free(te.pix); free(te.lab);
}

/* Each hostile variant of the train image file (labels stay valid) must give FORMAT, naming
 * the file. */
static void expect_format(const char *dir, const char *file, const char *what) {
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT, "%s: status %d (%s)", what, s, mvmoe_last_error());
    CHECK(strstr(mvmoe_last_error(), file) != NULL, "%s: message does not name %s: %s", what,
          file, mvmoe_last_error());
    CHECK(ds.images == NULL && ds.n == 0, "%s: dataset not cleared on failure", what);
    if (getenv("MVMOE_TEST_VERBOSE")) printf("  %-28s -> %s\n", what, mvmoe_last_error());
}

static void test_hostile(void) {
    char *dir = fx_tempdir("idxbad");
    if (!dir) { CHECK(0, "mkdtemp"); return; }
    idx_set s;
    make_set(&s, 50, 10, 10, 3);
    const char *img = "train-images-idx3-ubyte", *lab = "train-labels-idx1-ubyte";
    const char *imgp = fx_path(dir, img);
    uint32_t dl[1] = {50}, d3[3] = {50, 10, 10};
    write_idx(fx_path(dir, lab), 0, 0x801, dl, 1, s.lab, 50, 0, 0);
    size_t np = 5000;

    write_idx(imgp, 0, 0x804, d3, 3, s.pix, np, 0, 0);
    expect_format(dir, img, "bad magic");
    write_idx(imgp, 0, 0x801, d3, 3, s.pix, np, 0, 0);
    expect_format(dir, img, "label magic in image file");
    write_idx(imgp, 0, 0x803, d3, 3, s.pix, np, 1, 0);
    expect_format(dir, img, "truncated plain file");
    write_idx(imgp, 0, 0x803, d3, 3, s.pix, np, 0, 3);
    expect_format(dir, img, "trailing bytes");
    uint32_t huge[3] = {50, 1u << 31, 1u << 31};
    write_idx(imgp, 0, 0x803, huge, 3, s.pix, np, 0, 0);
    expect_format(dir, img, "2^31 x 2^31 dims");
    write_idx(imgp, 1, 0x803, huge, 3, s.pix, np, 0, 0);
    expect_format(dir, img, "2^31 x 2^31 dims, gzip");
    uint32_t many[3] = {0xFFFFFFFFu, 28, 28};
    write_idx(imgp, 0, 0x803, many, 3, s.pix, np, 0, 0);
    expect_format(dir, img, "2^32-1 images");
    uint32_t zero[3] = {50, 0, 10};
    write_idx(imgp, 0, 0x803, zero, 3, s.pix, np, 0, 0);
    expect_format(dir, img, "zero rows");
    write_idx(imgp, 0, 0x803, d3, 3, s.pix, 0, 0, 0);
    fx_write(imgp, "\0\0\x08", 3);
    expect_format(dir, img, "3-byte file");
    remove(imgp);

    /* gzip variants: payload short by 1000 bytes (header passes the deflate-ratio bound), a
     * million-image header in a tiny file, and a corrupted deflate stream */
    const char *gzp = fx_path(dir, "train-images-idx3-ubyte.gz");
    write_idx(gzp, 1, 0x803, d3, 3, s.pix, np, 1000, 0);
    expect_format(dir, "train-images-idx3-ubyte.gz", "truncated gzip payload");
    write_idx(gzp, 1, 0x803, d3, 3, s.pix, np, 0, 5);
    expect_format(dir, "train-images-idx3-ubyte.gz", "gzip with trailing bytes");
    uint32_t million[3] = {1000000, 28, 28};
    write_idx(gzp, 1, 0x803, million, 3, s.pix, np, 0, 0);
    expect_format(dir, "train-images-idx3-ubyte.gz", "1e6 images in a tiny gzip");
    write_idx(gzp, 1, 0x803, d3, 3, s.pix, np, 0, 0);
    FILE *f = fopen(gzp, "r+b");
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        uint8_t junk[64];
        memset(junk, 0xA5, sizeof junk);
        fseek(f, len / 2, SEEK_SET);
        fwrite(junk, 1, sizeof junk, f);
        fclose(f);
    }
    expect_format(dir, "train-images-idx3-ubyte.gz", "corrupted deflate stream");
    f = fopen(gzp, "r+b");
    if (f) {
        if (ftruncate(fileno(f), 40) != 0) CHECK(0, "ftruncate");
        fclose(f);
    }
    expect_format(dir, "train-images-idx3-ubyte.gz", "gzip cut at 40 bytes");

    /* label file problems: count mismatch, bad magic */
    write_idx(gzp, 1, 0x803, d3, 3, s.pix, np, 0, 0);
    uint32_t dl6[1] = {49};
    write_idx(fx_path(dir, lab), 0, 0x801, dl6, 1, s.lab, 49, 0, 0);
    expect_format(dir, lab, "49 labels for 50 images");
    write_idx(fx_path(dir, lab), 0, 0x803, dl, 1, s.lab, 50, 0, 0);
    expect_format(dir, lab, "image magic in label file");
    write_idx(fx_path(dir, lab), 0, 0x801, dl, 1, s.lab, 50, 0, 0);
    mvmoe_dataset ds;
    mvmoe_status st = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(st == MVMOE_OK && ds.n == 50, "valid again after the hostile variants: %s", mvmoe_last_error());
    mvmoe_dataset_free(&ds);

    st = mvmoe_dataset_load(&ds, "/nonexistent/mvmoe-data", "train", 0, 0);
    CHECK(st == MVMOE_ERR_IO && strstr(mvmoe_last_error(), "/nonexistent/mvmoe-data"),
          "missing folder: %d %s", st, mvmoe_last_error());
    st = mvmoe_dataset_load(&ds, dir, "train", 0, -1);
    CHECK(st == MVMOE_ERR_INVALID, "negative max_images: %d", st);
    fx_rmtree(dir);
    free(dir);
    free(s.pix);
    free(s.lab);
}

static void test_real_fashion(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    if (access(dir, R_OK) != 0) {
        printf("skip: %s not installed (apt-get install dataset-fashion-mnist)\n", dir);
        return;
    }
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_OK, "Fashion-MNIST test split: %s", mvmoe_last_error());
    if (s != MVMOE_OK) return;
    CHECK(ds.n == 10000 && ds.c == 1 && ds.h == 28 && ds.w == 28, "shape %d x %d x %d x %d",
          ds.n, ds.c, ds.h, ds.w);
    int counts[10] = {0}, bad = 0;
    for (int i = 0; i < ds.n; i++) {
        if (ds.labels[i] < 0 || ds.labels[i] > 9) bad++;
        else counts[ds.labels[i]]++;
    }
    CHECK(bad == 0, "%d labels outside 0..9", bad);
    for (int k = 0; k < 10; k++) CHECK(counts[k] == 1000, "class %d has %d images", k, counts[k]);
    CHECK(ds.num_classes == 10 && strcmp(ds.class_names[9], "Ankle boot") == 0, "names");
    long sum = 0;
    for (size_t i = 0; i < (size_t)ds.n * 784; i++) sum += ds.images[i];
    double mean = sum / (ds.n * 784.0) / 255.0;
    CHECK(mean > 0.25 && mean < 0.32, "pixel mean %.4f (Fashion-MNIST's is about 0.286)", mean);
    mvmoe_dataset_free(&ds);
}

int main(void) {
    test_round_trip();
    test_hostile();
    test_real_fashion();
    TEST_MAIN_END("test_idx");
}
