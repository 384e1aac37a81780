/* Fuzz target: CIFAR-10 / CIFAR-100 binary datasets through mvmoe_dataset_load (detection,
 * record reader, label checks, the class-name file).
 *
 * Input: one flag byte, then parts separated by FZ_SEP. Flag bits: 0 CIFAR-100 (train.bin /
 * test.bin, 2 label bytes per record) instead of CIFAR-10 (data_batch_1..5.bin /
 * test_batch.bin), 1 split "test", 2 the files go in the tarball's subfolder
 * (cifar-10-batches-bin/ or cifar-100-binary/), 3 write the name file (batches.meta.txt or
 * fine_label_names.txt) from the last part, 4 for CIFAR-100 also coarse_label_names.txt and
 * ask for the coarse names, 6-7 --max-images 0, 1, 2 or 7. The data parts fill the split's
 * files in order (CIFAR-10 train: five files). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "fuzz_util.h"

int mvmoe_fuzz_cifar(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    int c100 = flags & 1, test = (flags >> 1) & 1, sub = (flags >> 2) & 1;
    fz_part parts[7];
    int n = fz_split(data + 1, size - 1, parts, 7);
    const char *dir = fz_dir();
    char root[600];
    snprintf(root, sizeof root, "%s", dir);
    if (sub) {
        snprintf(root, sizeof root, "%s", fz_path(c100 ? "cifar-100-binary" : "cifar-10-batches-bin"));
        FZ_ASSERT(mkdir(root, 0700) == 0, "mkdir %s", root);
    }
    char name[700];
    int nfiles = c100 || test ? 1 : 5, used = 0;
    for (int i = 0; i < nfiles && used < n; i++, used++) {
        if (c100) snprintf(name, sizeof name, "%s/%s", root, test ? "test.bin" : "train.bin");
        else if (test) snprintf(name, sizeof name, "%s/test_batch.bin", root);
        else snprintf(name, sizeof name, "%s/data_batch_%d.bin", root, i + 1);
        fz_write(name, parts[used].p, parts[used].n);
    }
    if ((flags & 8) && used < n) {
        snprintf(name, sizeof name, "%s/%s", root, c100 ? "fine_label_names.txt" : "batches.meta.txt");
        fz_write(name, parts[used].p, parts[used].n);
        used++;
    }
    int coarse = c100 && (flags & 16);
    if (coarse && used < n) {
        snprintf(name, sizeof name, "%s/coarse_label_names.txt", root);
        fz_write(name, parts[used].p, parts[used].n);
    }
    static const int caps[4] = {0, 1, 2, 7};
    int cap = caps[flags >> 6];
    mvmoe_dataset ds;
    if (mvmoe_dataset_load(&ds, dir, test ? "test" : "train", 0, cap) == MVMOE_OK) {
        int K = c100 ? 100 : 10;
        FZ_ASSERT(ds.n >= 1 && ds.c == 3 && ds.h == 32 && ds.w == 32, "shape %d %d %d %d", ds.n,
                  ds.c, ds.h, ds.w);
        FZ_ASSERT(cap == 0 || ds.n <= cap, "cap ignored: %d", ds.n);
        FZ_ASSERT(ds.num_classes == K && ds.class_names, "classes %d", ds.num_classes);
        for (int k = 0; k < K; k++) FZ_ASSERT(ds.class_names[k] != NULL, "name %d", k);
        for (int i = 0; i < ds.n; i++) {
            FZ_ASSERT(ds.labels[i] >= 0 && ds.labels[i] < K, "label %d = %d", i, ds.labels[i]);
            if (c100) FZ_ASSERT(ds.coarse[i] >= 0 && ds.coarse[i] < 20, "coarse %d", i);
        }
        uint64_t sum = 0;
        for (size_t i = 0; i < (size_t)ds.n * 3072; i++) sum += ds.images[i];
        (void)sum;
        if (c100) {
            int *map = NULL;
            if (mvmoe_dataset_superclass_map(&ds, &map) == MVMOE_OK) {
                for (int k = 0; k < K; k++) FZ_ASSERT(map[k] >= -1 && map[k] < 20, "map %d", k);
            }
            free(map);
        }
        if (coarse) {
            char **names = NULL;
            int nn = 0;
            if (mvmoe_dataset_coarse_names(&ds, &names, &nn) == MVMOE_OK) {
                FZ_ASSERT(nn == ds.num_coarse, "%d coarse names", nn);
                for (int k = 0; k < nn; k++) free(names[k]);
                free(names);
            }
        }
    } else {
        FZ_ASSERT(ds.images == NULL && ds.labels == NULL && ds.coarse == NULL &&
                      ds.class_names == NULL, "failed load left data behind");
    }
    mvmoe_dataset_free(&ds);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return mvmoe_fuzz_cifar(data, size); }
#endif
