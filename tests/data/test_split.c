/* mvmoe_dataset_split: stratified per class, deterministic for a seed, disjoint, covering,
 * sorted, different for another seed, argument checks. */
#include <string.h>

#include "data_fixtures.h"
#include "mvmoe.h"
#include "test_util.h"

#define N 1000
#define K 5

static int count_class(const mvmoe_dataset *ds, const int32_t *idx, int n, int k) {
    int c = 0;
    for (int i = 0; i < n; i++) c += ds->labels[idx[i]] == k;
    return c;
}

int main(void) {
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = i < 900 ? i % K : 3; /* 180 x4, class 3: 280 */
    mvmoe_dataset ds = {.n = N, .c = 1, .h = 1, .w = 1, .num_classes = K, .labels = labels};
    int32_t *tr, *va, *tr2, *va2, *tr3, *va3;
    int nt, nv, nt2, nv2, nt3, nv3;
    mvmoe_status s = mvmoe_dataset_split(&ds, 0.1f, 42, &tr, &nt, &va, &nv);
    CHECK(s == MVMOE_OK, "split: %s", mvmoe_last_error());
    if (s != MVMOE_OK) TEST_MAIN_END("test_split");
    CHECK(nt + nv == N && nv == 100, "n_train %d n_val %d", nt, nv);
    for (int k = 0; k < K; k++) {
        int want = k == 3 ? 28 : 18;
        CHECK(count_class(&ds, va, nv, k) == want, "class %d: %d held out, want %d", k,
              count_class(&ds, va, nv, k), want);
    }
    static uint8_t seen[N];
    int dup = 0, sorted = 1;
    for (int i = 0; i < nt; i++) dup += seen[tr[i]]++;
    for (int i = 0; i < nv; i++) dup += seen[va[i]]++;
    int covered = 1;
    for (int i = 0; i < N; i++) covered &= seen[i] == 1;
    for (int i = 1; i < nt; i++) sorted &= tr[i] > tr[i - 1];
    for (int i = 1; i < nv; i++) sorted &= va[i] > va[i - 1];
    CHECK(dup == 0 && covered, "lists overlap (%d) or miss indices", dup);
    CHECK(sorted, "index lists not strictly ascending");

    s = mvmoe_dataset_split(&ds, 0.1f, 42, &tr2, &nt2, &va2, &nv2);
    CHECK(s == MVMOE_OK && nv2 == nv && memcmp(va, va2, sizeof *va * (size_t)nv) == 0 &&
              memcmp(tr, tr2, sizeof *tr * (size_t)nt) == 0, "same seed, different split");
    s = mvmoe_dataset_split(&ds, 0.1f, 43, &tr3, &nt3, &va3, &nv3);
    CHECK(s == MVMOE_OK && nv3 == nv && memcmp(va, va3, sizeof *va * (size_t)nv) != 0,
          "seed 43 gives the same split as seed 42");
    int first_class_same = 1; /* also per class: seeds differ inside every class */
    for (int i = 0; i < nv; i++) first_class_same &= va[i] == va3[i];
    CHECK(!first_class_same, "identical held-out lists");
    free(tr); free(va); free(tr2); free(va2); free(tr3); free(va3);

    s = mvmoe_dataset_split(&ds, 0.0f, 1, &tr, &nt, &va, &nv);
    CHECK(s == MVMOE_OK && nv == 0 && nt == N && tr[0] == 0 && tr[N - 1] == N - 1, "val = 0");
    free(tr); free(va);
    float bad[3] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        s = mvmoe_dataset_split(&ds, bad[i], 1, &tr, &nt, &va, &nv);
        CHECK(s == MVMOE_ERR_INVALID && tr == NULL && va == NULL, "val %g accepted", (double)bad[i]);
    }
    /* a class with one image keeps it for training */
    int32_t small_labels[3] = {0, 1, 1};
    mvmoe_dataset small = {.n = 3, .num_classes = 2, .labels = small_labels};
    s = mvmoe_dataset_split(&small, 0.5f, 7, &tr, &nt, &va, &nv);
    CHECK(s == MVMOE_OK && nt == 2 && nv == 1 && va[0] != 0, "singleton class held out");
    free(tr); free(va);
    small_labels[2] = 2;
    s = mvmoe_dataset_split(&small, 0.5f, 7, &tr, &nt, &va, &nv);
    CHECK(s == MVMOE_ERR_FORMAT, "label 2 with num_classes 2: %d", s);
    TEST_MAIN_END("test_split");
}
