/* Stratified train/validation split: per class, shuffle its indices with a stream seeded by
 * (seed, class) and hold out round(val * count). Seeding per class makes each class's split
 * independent of the others (adding images of one class leaves the rest unchanged). */
#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "core/status.h"
#include "mvmoe.h"

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

mvmoe_status mvmoe_dataset_split(const mvmoe_dataset *ds, float val, uint64_t seed,
                                 int32_t **train_idx, int *n_train, int32_t **val_idx,
                                 int *n_val) {
    *train_idx = *val_idx = NULL;
    *n_train = *n_val = 0;
    if (!(val >= 0.0f && val < 1.0f)) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "validation fraction %g must be in [0, 1)", (double)val);
    }
    int n = ds->n, K = ds->num_classes;
    if (n < 0 || K <= 0) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "cannot split dataset %s: n = %d, num_classes = %d",
                   ds->source ? ds->source : "", n, K);
    }
    for (int i = 0; i < n; i++) {
        if (ds->labels[i] < 0 || ds->labels[i] >= K) {
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "dataset %s image %d has label %d outside 0..%d",
                       ds->source ? ds->source : "", i, ds->labels[i], K - 1);
        }
    }
    int32_t *start, *order, *tr, *va;
    MVMOE_ALLOC(start, (size_t)K + 1, "split class offsets");
    order = calloc(n ? (size_t)n : 1, sizeof *order);
    tr = calloc(n ? (size_t)n : 1, sizeof *tr);
    va = calloc(n ? (size_t)n : 1, sizeof *va);
    if (!order || !tr || !va) {
        free(start);
        free(order);
        free(tr);
        free(va);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate split index lists for %d images", n);
    }
    /* Counting sort by class: order holds each class's indices, ascending. */
    for (int i = 0; i < n; i++) start[ds->labels[i] + 1]++;
    for (int k = 0; k < K; k++) start[k + 1] += start[k];
    for (int i = 0; i < n; i++) order[start[ds->labels[i]]++] = i;
    for (int k = K; k > 0; k--) start[k] = start[k - 1]; /* the fill advanced each start by one class */
    start[0] = 0;
    int nt = 0, nv = 0;
    for (int k = 0; k < K; k++) {
        int count = start[k + 1] - start[k];
        if (count == 0) continue;
        mvmoe_rng r;
        mvmoe_rng_init(&r, seed, (uint64_t)k);
        mvmoe_rng_shuffle_i32(&r, order + start[k], count);
        /* Every class keeps at least one training image. */
        int hold = (int)lround((double)val * count);
        if (hold > count - 1) hold = count - 1;
        for (int j = 0; j < count; j++) {
            if (j < hold) va[nv++] = order[start[k] + j];
            else tr[nt++] = order[start[k] + j];
        }
    }
    qsort(tr, (size_t)nt, sizeof *tr, cmp_i32);
    qsort(va, (size_t)nv, sizeof *va, cmp_i32);
    free(start);
    free(order);
    *train_idx = tr;
    *n_train = nt;
    *val_idx = va;
    *n_val = nv;
    return MVMOE_OK;
}
