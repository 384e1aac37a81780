/* Fuzz target: class -> super-class map files (mvmoe_superclass_map_load: JSON with
 * "superclass_of", or plain text of K integers; mvmoe_superclass_map_read, the same reader
 * with K taken from the file and every field kept, as `mvmoe report` reads it).
 *
 * Input: one byte giving the class count K = 1 + byte, then the file. An accepted map must
 * use exactly the super-classes 0..E-1, and survive mvmoe_superclass_map_save + load. The
 * full read must agree: it accepts a file of K classes exactly when the load with K does,
 * with the same map, and whatever it accepts has sizes and groups that match the map. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/superclass_map.h"
#include "fuzz_util.h"

/* The full read (K from the file) of `path`; `map`/E: what the load with K gave (E < 0: it
 * refused). */
static void check_full_read(const char *path, int K, const int *map, int E) {
    mvmoe_superclass_map m;
    mvmoe_status s = mvmoe_superclass_map_read(path, 0, &m);
    if (s != MVMOE_OK) {
        FZ_ASSERT(E < 0, "the full read refused a map the load with K = %d accepted", K);
        FZ_ASSERT(!m.superclass_of && !m.sizes && !m.groups && m.K == 0, "failed read left data");
        return;
    }
    FZ_ASSERT(m.K >= 1 && m.E >= 1 && m.E <= m.K, "K = %d, E = %d", m.K, m.E);
    int *count = calloc((size_t)m.E, sizeof(int));
    FZ_ASSERT(count, "out of memory");
    for (int i = 0; i < m.K; i++) {
        FZ_ASSERT(m.superclass_of[i] >= 0 && m.superclass_of[i] < m.E, "superclass_of[%d] = %d", i, m.superclass_of[i]);
        count[m.superclass_of[i]]++;
    }
    for (int g = 0; g < m.E; g++) {
        FZ_ASSERT(count[g] > 0 && count[g] == m.sizes[g], "super-class %d: %d classes, size %d", g, count[g], m.sizes[g]);
        for (int i = 0; m.groups && i < m.sizes[g]; i++) FZ_ASSERT(m.groups[g][i], "group %d name %d is NULL", g, i);
    }
    free(count);
    if (m.K == K) {
        FZ_ASSERT(E == m.E, "the load with K = %d gave E = %d, the full read E = %d", K, E, m.E);
        FZ_ASSERT(memcmp(map, m.superclass_of, sizeof(int) * (size_t)K) == 0, "the two reads differ");
    } else {
        FZ_ASSERT(E < 0, "the load with K = %d accepted a file of %d classes", K, m.K);
    }
    mvmoe_superclass_map_free(&m);
}

int mvmoe_fuzz_supermap(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int K = 1 + data[0];
    fz_dir();
    const char *path = fz_path("map"), *path2 = fz_path("map2.json");
    fz_write(path, data + 1, size - 1);
    int *map = malloc(sizeof(int) * (size_t)K), *back = malloc(sizeof(int) * (size_t)K);
    int *used = calloc((size_t)K, sizeof(int));
    FZ_ASSERT(map && back && used, "out of memory");
    for (int i = 0; i < K; i++) map[i] = back[i] = -7;
    int E = -1;
    if (mvmoe_superclass_map_load(path, K, map, &E) == MVMOE_OK) {
        FZ_ASSERT(E >= 1 && E <= K, "E = %d for K = %d", E, K);
        for (int i = 0; i < K; i++) {
            FZ_ASSERT(map[i] >= 0 && map[i] < E, "map[%d] = %d, E = %d", i, map[i], E);
            used[map[i]]++;
        }
        for (int g = 0; g < E; g++) FZ_ASSERT(used[g] > 0, "super-class %d unused", g);
        FZ_ASSERT(mvmoe_superclass_map_save(path2, map, K, E, NULL, "fuzz", NULL) == MVMOE_OK,
                  "saving an accepted map");
        int E2 = -1;
        FZ_ASSERT(mvmoe_superclass_map_load(path2, K, back, &E2) == MVMOE_OK, "reloading");
        FZ_ASSERT(E2 == E && memcmp(map, back, sizeof(int) * (size_t)K) == 0, "round trip differs");
    } else {
        for (int i = 0; i < K; i++) FZ_ASSERT(map[i] == -7, "failed load wrote the output");
        E = -1;
    }
    check_full_read(path, K, map, E);
    free(map);
    free(back);
    free(used);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mvmoe_fuzz_supermap(data, size);
}
#endif
