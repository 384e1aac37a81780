/* CIFAR-10 / CIFAR-100 binary readers on synthetic files: records decoded in order across
 * batch files, coarse labels kept, names files used (or the standard names), the tarball
 * sub-folder found, malformed sizes and labels rejected. */
#include <string.h>

#include "data/data.h"
#include "data_fixtures.h"
#include "mvmoe.h"
#include "test_util.h"

static uint8_t pixel(int img, int k) { return (uint8_t)((img * 131 + k * 7 + k / 1024) & 255); }

/* n records starting at global image number first; label_of(i) = i % 10 (CIFAR-10) or
 * fine = (i * 7) % 100, coarse = fine % 20 (CIFAR-100). */
static int write_cifar(const char *path, int kind, int first, int n, int bad_label_at) {
    size_t rec = kind == 10 ? 3073 : 3074;
    uint8_t *buf = malloc(rec * (size_t)n);
    if (!buf) return -1;
    for (int r = 0; r < n; r++) {
        int i = first + r;
        uint8_t *p = buf + rec * (size_t)r;
        if (kind == 10) {
            p[0] = (uint8_t)(i % 10);
        } else {
            p[1] = (uint8_t)((i * 7) % 100);
            p[0] = (uint8_t)(p[1] % 20);
        }
        if (r == bad_label_at) p[rec - 3073] = kind == 10 ? 10 : 100;
        for (int k = 0; k < 3072; k++) p[rec - 3072 + k] = pixel(i, k);
    }
    int rc = fx_write(path, buf, rec * (size_t)n);
    free(buf);
    return rc;
}

static int check_images(const mvmoe_dataset *ds, int first) {
    for (int i = 0; i < ds->n; i++)
        for (int k = 0; k < 3072; k++)
            if (ds->images[(size_t)i * 3072 + k] != pixel(first + i, k)) return 0;
    return 1;
}

static void test_cifar10(void) {
    char *dir = fx_tempdir("c10");
    if (!dir) { CHECK(0, "mkdtemp"); return; }
    fx_mkdir(dir, "cifar-10-batches-bin");
    char sub[600];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    int per[5] = {3, 2, 4, 1, 2}, first = 0;
    for (int b = 0; b < 5; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b + 1);
        CHECK(write_cifar(fx_path(sub, name), 10, first, per[b], -1) == 0, "write %s", name);
        first += per[b];
    }
    write_cifar(fx_path(sub, "test_batch.bin"), 10, 100, 5, -1);
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_OK, "CIFAR-10 train: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        CHECK(ds.n == 12 && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.num_classes == 10,
              "shape n=%d c=%d %dx%d K=%d", ds.n, ds.c, ds.h, ds.w, ds.num_classes);
        CHECK(check_images(&ds, 0), "pixels differ from what was written");
        int ok = 1;
        for (int i = 0; i < ds.n; i++) ok &= ds.labels[i] == i % 10;
        CHECK(ok, "labels differ");
        CHECK(ds.coarse == NULL, "CIFAR-10 has no coarse labels");
        CHECK(strcmp(ds.class_names[0], "airplane") == 0 && strcmp(ds.class_names[9], "truck") == 0,
              "standard CIFAR-10 names");
        mvmoe_dataset_free(&ds);
    }
    s = mvmoe_dataset_load(&ds, dir, "train", 0, 6);
    CHECK(s == MVMOE_OK && ds.n == 6 && check_images(&ds, 0), "max_images = 6 over batch files");
    mvmoe_dataset_free(&ds);
    const char *meta = "a0\na1\na2\na3\na4\na5\na6\na7\na8\na9\n\n";
    fx_write(fx_path(sub, "batches.meta.txt"), meta, strlen(meta));
    s = mvmoe_dataset_load(&ds, sub, "test", 0, 0);
    CHECK(s == MVMOE_OK && ds.n == 5 && check_images(&ds, 100) && strcmp(ds.class_names[7], "a7") == 0,
          "test split + batches.meta.txt: %s", mvmoe_last_error());
    mvmoe_dataset_free(&ds);

    /* malformed: label 10, size not a multiple of 3073, missing batch */
    write_cifar(fx_path(sub, "test_batch.bin"), 10, 100, 5, 3);
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "test_batch.bin"),
          "label 10: %d %s", s, mvmoe_last_error());
    fx_write(fx_path(sub, "test_batch.bin"), "xyz", 3);
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "test_batch.bin") && ds.images == NULL,
          "3-byte file: %d %s", s, mvmoe_last_error());
    remove(fx_path(sub, "data_batch_4.bin"));
    s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), "data_batch_4.bin"),
          "missing batch: %d %s", s, mvmoe_last_error());
    if (getenv("MVMOE_TEST_VERBOSE")) printf("  missing batch -> %s\n", mvmoe_last_error());
    fx_rmtree(dir);
    free(dir);
}

static void test_cifar100(void) {
    char *dir = fx_tempdir("c100");
    if (!dir) { CHECK(0, "mkdtemp"); return; }
    CHECK(write_cifar(fx_path(dir, "train.bin"), 100, 0, 40, -1) == 0, "write train.bin");
    write_cifar(fx_path(dir, "test.bin"), 100, 50, 3, -1);
    mvmoe_dataset ds;
    mvmoe_status s = mvmoe_dataset_load(&ds, dir, "train", 0, 0);
    CHECK(s == MVMOE_OK, "CIFAR-100 train: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        CHECK(ds.n == 40 && ds.num_classes == 100 && ds.num_coarse == 20 && ds.coarse != NULL,
              "n=%d K=%d coarse=%d", ds.n, ds.num_classes, ds.num_coarse);
        int ok = 1;
        for (int i = 0; i < ds.n; i++)
            ok &= ds.labels[i] == (i * 7) % 100 && ds.coarse[i] == ((i * 7) % 100) % 20;
        CHECK(ok, "fine / coarse labels differ from what was written");
        CHECK(check_images(&ds, 0), "pixels differ");
        CHECK(strcmp(ds.class_names[0], "apple") == 0 && strcmp(ds.class_names[99], "worm") == 0,
              "standard fine names");
        char **cn = NULL;
        int nc = 0;
        s = mvmoe_dataset_coarse_names(&ds, &cn, &nc);
        CHECK(s == MVMOE_OK && nc == 20 && strcmp(cn[19], "vehicles_2") == 0, "coarse names");
        for (int i = 0; i < nc; i++) free(cn[i]);
        free(cn);
        int *map = NULL;
        s = mvmoe_dataset_superclass_map(&ds, &map);
        CHECK(s == MVMOE_OK && map && map[7] == 7 && map[28] == 8 && map[1] == -1,
              "super-class map: %s", mvmoe_last_error());
        free(map);
        ds.labels[1] = 0; /* image 1 (coarse 7) joins class 0 (coarse 0): inconsistent */
        s = mvmoe_dataset_superclass_map(&ds, &map);
        CHECK(s == MVMOE_ERR_FORMAT, "inconsistent coarse labels: %d", s);
        mvmoe_dataset_free(&ds);
    }
    {   /* fine class 5 under coarse 1, then under coarse 2: refused at load, naming both */
        char *bd = fx_tempdir("c100bad");
        uint8_t rec2[2 * 3074] = {0};
        rec2[0] = 1, rec2[1] = 5, rec2[3074] = 2, rec2[3075] = 5;
        CHECK(bd && fx_write(fx_path(bd, "train.bin"), rec2, sizeof rec2) == 0 &&
                  fx_write(fx_path(bd, "test.bin"), rec2, 3074) == 0, "write bad CIFAR-100");
        mvmoe_dataset bad;
        s = bd ? mvmoe_dataset_load(&bad, bd, "train", 0, 0) : MVMOE_ERR_IO;
        CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "record 1") &&
                  strstr(mvmoe_last_error(), "disagree"),
              "fine/coarse disagreement: %d %s", s, mvmoe_last_error());
        if (s == MVMOE_OK) mvmoe_dataset_free(&bad);
        if (bd) fx_rmtree(bd);
        free(bd);
    }
    char coarse[400] = "";
    for (int i = 0; i < 20; i++) snprintf(coarse + strlen(coarse), 20, "g%d\n", i);
    fx_write(fx_path(dir, "coarse_label_names.txt"), coarse, strlen(coarse));
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_OK && ds.n == 3 && check_images(&ds, 50), "CIFAR-100 test: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        char **cn = NULL;
        int nc = 0;
        s = mvmoe_dataset_coarse_names(&ds, &cn, &nc);
        CHECK(s == MVMOE_OK && nc == 20 && strcmp(cn[13], "g13") == 0, "coarse_label_names.txt");
        for (int i = 0; i < nc; i++) free(cn[i]);
        free(cn);
        mvmoe_dataset_free(&ds);
    }
    fx_write(fx_path(dir, "fine_label_names.txt"), "only\ntwo\n", 9);
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "fine_label_names.txt"),
          "2 fine names: %d %s", s, mvmoe_last_error());
    remove(fx_path(dir, "fine_label_names.txt"));
    write_cifar(fx_path(dir, "test.bin"), 100, 50, 3, 1);
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "test.bin"), "fine label 100: %d", s);
    /* a 3073-byte record file is not CIFAR-100 */
    write_cifar(fx_path(dir, "test.bin"), 10, 0, 4, -1);
    s = mvmoe_dataset_load(&ds, dir, "test", 0, 0);
    CHECK(s == MVMOE_ERR_FORMAT, "CIFAR-10 records in test.bin: %d %s", s, mvmoe_last_error());
    fx_rmtree(dir);
    free(dir);
}

int main(void) {
    test_cifar10();
    test_cifar100();
    TEST_MAIN_END("test_cifar");
}
