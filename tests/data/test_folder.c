/* Image-folder datasets and mvmoe_image_load on tiny PNG / JPEG files written here with
 * libpng / libjpeg: class names and labels, sizes after resize + center crop, the resampling
 * weights (Pillow's bilinear reduce-by-2 kernel), gray conversion, capped loads, and corrupt /
 * truncated / mislabelled files giving errors that name the file (never an exit). */
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "data/augment.h"
#include "data_fixtures.h"
#include "mvmoe.h"
#include "test_util.h"

static int write_png(const char *path, const uint8_t *rgb, int w, int h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    return png_image_write_to_file(&img, path, 0, rgb, 0, NULL) ? 0 : -1;
}

static int write_jpeg(const char *path, const uint8_t *rgb, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) == 0 ? 0 : -1;
}

static uint8_t *solid(int w, int h, int r, int g, int b) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        p[3 * i] = (uint8_t)r;
        p[3 * i + 1] = (uint8_t)g;
        p[3 * i + 2] = (uint8_t)b;
    }
    return p;
}

/* 8x8, R = 10 x, G = 20 y, B = 77 */
static uint8_t *ramp8(void) {
    uint8_t *p = malloc(8 * 8 * 3);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            p[(y * 8 + x) * 3] = (uint8_t)(10 * x);
            p[(y * 8 + x) * 3 + 1] = (uint8_t)(20 * y);
            p[(y * 8 + x) * 3 + 2] = 77;
        }
    return p;
}

static int max_abs_diff_plane(const uint8_t *img, int S, int c, int value) {
    int m = 0;
    for (int i = 0; i < S * S; i++) {
        int d = abs(img[c * S * S + i] - value);
        m = d > m ? d : m;
    }
    return m;
}

static char dir_buf[512];

static void make_folder(void) {
    char *d = fx_tempdir("folder");
    snprintf(dir_buf, sizeof dir_buf, "%s", d ? d : "");
    free(d);
    const char *dir = dir_buf;
    fx_mkdir(dir, "train");
    fx_mkdir(dir, "val");
    char p[700];
    snprintf(p, sizeof p, "%s/train", dir);
    fx_mkdir(p, "cat");
    fx_mkdir(p, "dog");
    fx_mkdir(p, ".cache");
    fx_write(fx_path(p, "README"), "hi", 2);
    uint8_t *red = solid(8, 8, 200, 10, 10), *green = solid(12, 8, 10, 200, 10);
    uint8_t *blue = solid(6, 10, 20, 30, 220), *ramp = ramp8();
    snprintf(p, sizeof p, "%s/train/cat", dir);
    CHECK(write_png(fx_path(p, "a.png"), red, 8, 8) == 0, "write a.png");
    CHECK(write_jpeg(fx_path(p, "b.jpg"), green, 12, 8) == 0, "write b.jpg");
    fx_write(fx_path(p, "notes.txt"), "not an image", 12);
    write_png(fx_path(p, ".hidden.png"), red, 8, 8);
    snprintf(p, sizeof p, "%s/train/dog", dir);
    write_png(fx_path(p, "c.png"), ramp, 8, 8);
    write_jpeg(fx_path(p, "d.JPEG"), blue, 6, 10);
    snprintf(p, sizeof p, "%s/val", dir);
    fx_mkdir(p, "cat");
    fx_mkdir(p, "dog");
    snprintf(p, sizeof p, "%s/val/dog", dir);
    write_png(fx_path(p, "e.png"), ramp, 8, 8);
    free(red);
    free(green);
    free(blue);
    free(ramp);
}

static void test_folder_load(void) {
    const char *dir = dir_buf;
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "train", 4, 0);
    CHECK(s == MVMOE_OK, "folder load: %s", mvmoe_last_error());
    if (s != MVMOE_OK) return;
    CHECK(ds.n == 4 && ds.c == 3 && ds.h == 4 && ds.w == 4, "n=%d c=%d %dx%d", ds.n, ds.c, ds.h, ds.w);
    CHECK(ds.num_classes == 2 && strcmp(ds.class_names[0], "cat") == 0 &&
              strcmp(ds.class_names[1], "dog") == 0, "class names");
    CHECK(ds.labels[0] == 0 && ds.labels[1] == 0 && ds.labels[2] == 1 && ds.labels[3] == 1, "labels");
    const uint8_t *a = ds.images, *b = a + 48, *c = b + 48, *d = c + 48;
    /* a.png: solid red, shrunk 2x: exact */
    CHECK(max_abs_diff_plane(a, 4, 0, 200) == 0 && max_abs_diff_plane(a, 4, 1, 10) == 0 &&
              max_abs_diff_plane(a, 4, 2, 10) == 0, "a.png not solid (200,10,10)");
    /* b.jpg 12x8 -> 6x4 -> crop: JPEG is lossy, solid color within a few levels */
    CHECK(max_abs_diff_plane(b, 4, 0, 10) <= 4 && max_abs_diff_plane(b, 4, 1, 200) <= 4 &&
              max_abs_diff_plane(b, 4, 2, 10) <= 4, "b.jpg not about (10,200,10): %d %d %d",
          b[0], b[16], b[32]);
    /* c.png: Pillow's bilinear reduce by 2 has taps 1/8 3/8 3/8 1/8 (renormalized at edges):
     * R columns of 10x: 50/7, 25, 45, 440/7 -> 7 25 45 63; G rows of 20y -> 14 50 90 126 */
    const int want_r[4] = {7, 25, 45, 63}, want_g[4] = {14, 50, 90, 126};
    int ok = 1;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            ok &= c[y * 4 + x] == want_r[x] && c[16 + y * 4 + x] == want_g[y] && c[32 + y * 4 + x] == 77;
    CHECK(ok, "c.png resampled: R row %d %d %d %d, G col %d %d %d %d", c[0], c[1], c[2], c[3],
          c[16], c[20], c[24], c[28]);
    CHECK(max_abs_diff_plane(d, 4, 2, 220) <= 4, "d.JPEG not about blue: %d", d[32]);
    mvmoe_dataset_free(&ds);

    /* a cap takes images round-robin over classes: one cat, one dog */
    s = mvmoe_dataset_load(&ds, dir, "train", 4, 2);
    CHECK(s == MVMOE_OK && ds.n == 2 && ds.labels[0] == 0 && ds.labels[1] == 1,
          "max_images = 2: n=%d", ds.n);
    mvmoe_dataset_free(&ds);
    /* "test" falls back to val/; an empty class folder still counts as a class */
    s = mvmoe_dataset_load(&ds, dir, "test", 8, 0);
    CHECK(s == MVMOE_OK && ds.n == 1 && ds.num_classes == 2 && ds.labels[0] == 1 && ds.h == 8,
          "test -> val: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        uint8_t *ramp = ramp8();
        int same = 1;
        for (int i = 0; i < 64; i++)
            same &= ds.images[i] == ramp[3 * i] && ds.images[64 + i] == ramp[3 * i + 1];
        CHECK(same, "same-size load is not the identity");
        free(ramp);
    }
    mvmoe_dataset_free(&ds);
    s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "img_size"), "img_size 0: %d %s", s,
          mvmoe_last_error());
    s = mvmoe_dataset_load(&ds, dir, "nosuch", 4, 0);
    CHECK(s == MVMOE_ERR_IO, "missing split: %d %s", s, mvmoe_last_error());
}

static void test_image_load(void) {
    const char *dir = dir_buf;
    char p[700];
    snprintf(p, sizeof p, "%s/train/cat/a.png", dir);
    uint8_t *img = NULL;
    mvmoe_status s = mvmoe_image_load(p, 1, 16, &img);
    /* ITU-R 601 luma of (200, 10, 10) = 66.81 -> 67; growing a solid image keeps it solid */
    CHECK(s == MVMOE_OK && img && max_abs_diff_plane(img, 16, 0, 67) == 0, "gray 16x16: %s",
          mvmoe_last_error());
    free(img);
    snprintf(p, sizeof p, "%s/train/dog/d.JPEG", dir);
    s = mvmoe_image_load(p, 3, 5, &img);
    CHECK(s == MVMOE_OK && img && max_abs_diff_plane(img, 5, 0, 20) <= 4, "RGB 5x5 from 6x10: %s",
          mvmoe_last_error());
    free(img);
    img = NULL;
    s = mvmoe_image_load(p, 2, 5, &img);
    CHECK(s == MVMOE_ERR_INVALID && img == NULL, "C = 2 rejected: %d", s);
    s = mvmoe_image_load("/nonexistent/x.png", 3, 5, &img);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), "/nonexistent/x.png"), "missing file: %s",
          mvmoe_last_error());
}

/* One bad file in a class folder: the whole load fails with FORMAT naming that file. */
static void expect_bad(const char *name, const void *data, size_t n, const char *what) {
    char p[700];
    snprintf(p, sizeof p, "%s/train/dog/%s", dir_buf, name);
    fx_write(p, data, n);
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir_buf, "train", 4, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), name), "%s: %d %s", what, s,
          mvmoe_last_error());
    CHECK(ds.images == NULL, "%s: dataset not cleared", what);
    if (getenv("MVMOE_TEST_VERBOSE")) printf("  %-18s -> %s\n", what, mvmoe_last_error());
    uint8_t *img = (uint8_t *)1;
    s = mvmoe_image_load(p, 3, 4, &img);
    CHECK(s == MVMOE_ERR_FORMAT && img == NULL, "%s via image_load: %d", what, s);
    remove(p);
}

static void test_corrupt(void) {
    const uint8_t garbage_jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0,
                                    1, 2, 3, 4, 5, 6, 7, 8, 9, 0xFF, 0x99, 0x12, 0x34};
    expect_bad("broken.jpg", garbage_jpeg, sizeof garbage_jpeg, "corrupt JPEG");
    /* a valid JPEG cut in half: premature end of data is an error, not gray padding */
    char p[700];
    snprintf(p, sizeof p, "%s/train/cat/b.jpg", dir_buf);
    FILE *f = fopen(p, "rb");
    uint8_t buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 200, "reading b.jpg back (%zu bytes)", n);
    expect_bad("cut.jpg", buf, n / 2 + 40, "truncated JPEG");
    const uint8_t bad_png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                               'I', 'H', 'D', 'R', 0xff, 0xff, 0xff, 0xff, 1, 2};
    expect_bad("broken.png", bad_png, sizeof bad_png, "corrupt PNG");
    expect_bad("text.png", "hello, world", 12, "text named .png");
    expect_bad("empty.jpg", "", 0, "empty file");
}

/* Labels of a split other than train follow the TRAINING split's classes by name: a split
 * without "cat" must still label its dogs 1, and a class train lacks is an error. */
static void test_labels_by_name(void) {
    const char *dir = dir_buf;
    char p[700];
    uint8_t *ramp = ramp8();
    snprintf(p, sizeof p, "%s/dogsonly", dir);
    fx_mkdir(dir, "dogsonly");
    fx_mkdir(p, "dog");
    snprintf(p, sizeof p, "%s/dogsonly/dog", dir);
    write_png(fx_path(p, "f.png"), ramp, 8, 8);
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "dogsonly", 8, 0);
    CHECK(s == MVMOE_OK && ds.n == 1 && ds.num_classes == 2 && ds.labels[0] == 1 &&
              strcmp(ds.class_names[1], "dog") == 0,
          "split without 'cat': n=%d classes=%d label=%d (%s)", ds.n, ds.num_classes,
          s == MVMOE_OK ? ds.labels[0] : -1, mvmoe_last_error());
    if (s == MVMOE_OK) mvmoe_dataset_free(&ds);

    snprintf(p, sizeof p, "%s/odd", dir);
    fx_mkdir(dir, "odd");
    fx_mkdir(p, "cow");
    snprintf(p, sizeof p, "%s/odd/cow", dir);
    write_png(fx_path(p, "g.png"), ramp, 8, 8);
    s = mvmoe_dataset_load(&ds, dir, "odd", 8, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "'cow'"),
          "a class the training split lacks: %d %s", s, mvmoe_last_error());
    if (s == MVMOE_OK) mvmoe_dataset_free(&ds);

    /* relabelling by a model's names: train's "cat","dog" onto a model of "dog","cat","emu" */
    s = mvmoe_dataset_load(&ds, dir, "train", 4, 0);
    if (s == MVMOE_OK) {
        const char *model[3] = {"dog", "cat", "emu"};
        s = mvmoe_dataset_match_classes(&ds, model, 3);
        CHECK(s == MVMOE_OK && ds.num_classes == 3 && ds.labels[0] == 1 && ds.labels[3] == 0 &&
                  strcmp(ds.class_names[2], "emu") == 0,
              "match_classes: %s", mvmoe_last_error());
        const char *other[2] = {"dog", "emu"};
        s = mvmoe_dataset_match_classes(&ds, other, 2);
        CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "'cat'"),
              "match_classes with a class the model lacks: %s", mvmoe_last_error());
        mvmoe_dataset_free(&ds);
    }
    free(ramp);
}

int main(void) {
    make_folder();
    if (dir_buf[0]) {
        test_folder_load();
        test_labels_by_name();
        test_image_load();
        test_corrupt();
        fx_rmtree(dir_buf);
    } else {
        CHECK(0, "mkdtemp failed");
    }
    TEST_MAIN_END("test_folder");
}
