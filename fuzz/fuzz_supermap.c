/* Fuzz target: class -> super-class map files (mvmoe_superclass_map_load: JSON with
 * "superclass_of", or plain text of K integers).
 *
 * Input: one byte giving the class count K = 1 + byte, then the file. An accepted map must
 * use exactly the super-classes 0..E-1, and survive mvmoe_superclass_map_save + load. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

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
    }
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
