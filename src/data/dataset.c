/* mvmoe_dataset_load: detects the format of a dataset folder (IDX, CIFAR-10/100 binary, image
 * folder) and dispatches to its reader; plus freeing and the CIFAR-100 super-class helpers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status.h"
#include "data/data.h"
#include "data/loaders.h"

void mvmoe_dataset_free(mvmoe_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds->coarse);
    mvmoe_data_names_free(ds->class_names, ds->num_classes);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}

static mvmoe_status dispatch(mvmoe_dataset *ds, const char *dir, const char *split, int img_size,
                             int max_images) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        MVMOE_FAIL(MVMOE_ERR_IO, "dataset folder %s: %s; pass an existing folder (for "
                   "Fashion-MNIST: apt-get install dataset-fashion-mnist, which provides "
                   "/usr/share/datasets/fashion-mnist)", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset path %s is not a folder; pass the folder that "
                   "holds the IDX / CIFAR .bin files or the SPLIT/CLASS image folders", dir);
    }
    if (mvmoe_idx_detect(dir)) return mvmoe_idx_load(ds, dir, split, max_images);
    char *root = NULL;
    int kind = mvmoe_cifar_detect(dir, &root);
    if (kind) {
        mvmoe_status s = mvmoe_cifar_load(ds, root, kind, split, max_images);
        free(root);
        return s;
    }
    if (strchr(split, '/') == NULL) {
        char *sdir = mvmoe_data_join(dir, split);
        char *vdir = mvmoe_data_join(dir, "val");
        int folder = (sdir && mvmoe_data_is_dir(sdir)) ||
                     (strcmp(split, "test") == 0 && vdir && mvmoe_data_is_dir(vdir));
        free(sdir);
        free(vdir);
        if (folder) return mvmoe_folder_load(ds, dir, split, img_size, max_images);
    }
    MVMOE_FAIL(MVMOE_ERR_IO, "no dataset found in %s for split '%s': looked for IDX files "
               "(train-images-idx3-ubyte[.gz], t10k-...), CIFAR-10 (data_batch_1.bin, "
               "test_batch.bin), CIFAR-100 (train.bin, test.bin), also in cifar-10-batches-bin/ "
               "and cifar-100-binary/, and an image folder %s/%s/CLASS/*.jpg; for Fashion-MNIST: "
               "apt-get install dataset-fashion-mnist", dir, split, dir, split);
}

mvmoe_status mvmoe_dataset_load(mvmoe_dataset *ds, const char *dir, const char *split,
                                int img_size, int max_images) {
    if (!ds) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_dataset_load: ds is NULL");
    memset(ds, 0, sizeof *ds);
    if (!dir || !split) MVMOE_FAIL(MVMOE_ERR_INVALID, "mvmoe_dataset_load: dir and split are required");
    if (img_size < 0 || max_images < 0) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "loading %s: img_size (%d) and max_images (%d) must be >= 0 "
                   "(0: native size / no cap)", dir, img_size, max_images);
    }
    mvmoe_status s = dispatch(ds, dir, split, img_size, max_images);
    if (s == MVMOE_OK) {
        ds->source = strdup(dir);
        if (!ds->source) s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                             "cannot copy the dataset path %s", dir);
    }
    if (s != MVMOE_OK) mvmoe_dataset_free(ds);
    return s;
}

mvmoe_status mvmoe_dataset_coarse_names(const mvmoe_dataset *ds, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    if (!ds->coarse || ds->num_coarse <= 0) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset %s has no coarse (super-class) labels; only "
                   "CIFAR-100 has them", ds->source ? ds->source : "(unnamed)");
    }
    char *root = NULL;
    if (ds->source && mvmoe_cifar_detect(ds->source, &root) == 100) {
        char *path = mvmoe_data_join(root, "coarse_label_names.txt");
        free(root);
        if (!path) return MVMOE_ERR_NOMEM;
        if (mvmoe_data_is_file(path)) {
            int k = 0;
            mvmoe_status s = mvmoe_data_read_names(path, names, &k);
            if (s == MVMOE_OK && k != ds->num_coarse) {
                mvmoe_data_names_free(*names, k);
                *names = NULL;
                s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                    "%s has %d names, expected %d; fix or delete it", path, k,
                                    ds->num_coarse);
            }
            free(path);
            if (s == MVMOE_OK) *n = k;
            return s;
        }
        free(path);
    } else {
        free(root);
    }
    if (ds->num_coarse == 20) {
        MVMOE_TRY(mvmoe_data_names_copy(mvmoe_cifar100_coarse_names, 20, names));
    } else {
        MVMOE_TRY(mvmoe_data_names_numeric(ds->num_coarse, names));
    }
    *n = ds->num_coarse;
    return MVMOE_OK;
}

mvmoe_status mvmoe_dataset_superclass_map(const mvmoe_dataset *ds, int **map) {
    *map = NULL;
    if (!ds->coarse) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset %s has no coarse labels to build a super-class "
                   "map from; use `mvmoe superclasses` to derive one", ds->source ? ds->source : "");
    }
    int *m;
    MVMOE_ALLOC(m, ds->num_classes, "super-class map");
    for (int k = 0; k < ds->num_classes; k++) m[k] = -1;
    for (int i = 0; i < ds->n; i++) {
        int y = ds->labels[i], g = ds->coarse[i];
        if (y < 0 || y >= ds->num_classes || g < 0 || g >= ds->num_coarse) {
            free(m);
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s image %d: label %d / coarse label %d out of range",
                       ds->source ? ds->source : "", i, y, g);
        }
        if (m[y] >= 0 && m[y] != g) {
            int prev = m[y];
            free(m);
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: class %d appears under coarse labels %d and %d "
                       "(image %d); the coarse labels are inconsistent",
                       ds->source ? ds->source : "", y, prev, g, i);
        }
        m[y] = g;
    }
    *map = m;
    return MVMOE_OK;
}

mvmoe_status mvmoe_dataset_match_classes(mvmoe_dataset *ds, const char *const *names, int K) {
    if (!ds || !names || !ds->class_names || !ds->source || K < 1) return MVMOE_OK;
    char *root = NULL;
    int fixed = mvmoe_idx_detect(ds->source) || mvmoe_cifar_detect(ds->source, &root);
    free(root);
    if (fixed) return MVMOE_OK;
    int *to;
    MVMOE_ALLOC(to, ds->num_classes ? ds->num_classes : 1, "class relabelling");
    for (int c = 0; c < ds->num_classes; c++) {
        to[c] = -1;
        for (int k = 0; k < K && to[c] < 0; k++)
            if (names[k] && ds->class_names[c] && strcmp(names[k], ds->class_names[c]) == 0) to[c] = k;
        if (to[c] < 0) {
            free(to);
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s: class '%.200s' is not one of the model's %d classes "
                       "(matched by name); evaluate with the data the model was trained on",
                       ds->source, ds->class_names[c] ? ds->class_names[c] : "", K);
        }
    }
    char **copy;
    mvmoe_status s = mvmoe_data_names_copy(names, K, &copy);
    if (s != MVMOE_OK) {
        free(to);
        return s;
    }
    for (int i = 0; i < ds->n; i++) ds->labels[i] = to[ds->labels[i]];
    free(to);
    mvmoe_data_names_free(ds->class_names, ds->num_classes);
    ds->class_names = copy;
    ds->num_classes = K;
    return MVMOE_OK;
}
