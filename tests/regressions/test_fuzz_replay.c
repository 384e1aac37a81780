/* Replays every fuzz input kept in the repository through the same harness code libFuzzer runs
 * (fuzz/fuzz_*.c, included here with MVMOE_FUZZ_REPLAY so they lose their libFuzzer entry
 * point): the seed corpora fuzz/corpus/NAME/ and the regression inputs tests/regressions/NAME/
 * (inputs that once crashed a reader or broke a harness invariant; each file's name says what
 * it was). A harness that finds a broken invariant aborts, so this test fails; under
 * `make asan-test` the sanitizers check every replay as well. The process's peak memory must
 * stay under REPLAY_MAX_RSS_MB: readers must bound what a small hostile file makes them
 * allocate (one regression input claims 8 GB of weights in a 348-byte checkpoint).
 * Also checks that the valid seeds are valid (a corpus of rejected files would only fuzz the
 * first checks of each reader). Run from the repository root (as tests/run_all.sh does). */
#define MVMOE_FUZZ_REPLAY 1

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "../../fuzz/fuzz_args.c"
#include "../../fuzz/fuzz_cifar.c"
#include "../../fuzz/fuzz_config_json.c"
#include "../../fuzz/fuzz_eval_json.c"
#include "../../fuzz/fuzz_idx.c"
#include "../../fuzz/fuzz_image.c"
#include "../../fuzz/fuzz_safetensors.c"
#include "../../fuzz/fuzz_supermap.c"
#include "test_util.h"

#define REPLAY_MAX_RSS_MB 1024

typedef int (*harness_fn)(const uint8_t *, size_t);

static const struct {
    const char *name;
    harness_fn fn;
} harnesses[] = {
    {"safetensors", mvmoe_fuzz_safetensors}, {"idx", mvmoe_fuzz_idx},
    {"cifar", mvmoe_fuzz_cifar},             {"image", mvmoe_fuzz_image},
    {"config_json", mvmoe_fuzz_config_json}, {"supermap", mvmoe_fuzz_supermap},
    {"args", mvmoe_fuzz_args},               {"eval_json", mvmoe_fuzz_eval_json},
};

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    *n = len;
    return buf;
}

/* Runs every regular file of dir through fn; returns how many, or -1 if dir is missing. */
static int replay_dir(const char *dir, harness_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        size_t n = 0;
        uint8_t *data = slurp(path, &n);
        CHECK(data != NULL, "cannot read %s", path);
        if (!data) continue;
        fprintf(stderr, "replay %s\n", path); /* names the input if the harness aborts */
        fn(data, n);
        free(data);
        count++;
        static int rss_failed; /* the peak only grows: report the first input that broke it */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if (!rss_failed) {
            rss_failed = ru.ru_maxrss / 1024 >= REPLAY_MAX_RSS_MB;
            CHECK(!rss_failed, "%s: peak memory %ld MB after replaying it", path, ru.ru_maxrss / 1024);
        }
    }
    closedir(d);
    return count;
}

/* The seeds that are meant to be valid must load (checked outside the harnesses). */
static void check_valid_seeds(void) {
    static const char *const models[] = {"dense_f32", "dense_f16", "dense_bf16", "dense_f64",
                                         "dense_names", "dense_rgb", "moe_image_superclass",
                                         "moe_image_learned", "moe_token_learned"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "fuzz/corpus/safetensors/%s", models[i]);
        mvmoe_model *m = NULL;
        CHECK(mvmoe_model_load(&m, path, NULL) == MVMOE_OK, "seed %s does not load: %s", path,
              mvmoe_last_error());
        mvmoe_model_free(m);
    }
    mvmoe_load_options o;
    memset(&o, 0, sizeof o);
    o.heads = 2;
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_load(&m, "fuzz/corpus/safetensors/timm_noconfig", &o) == MVMOE_OK,
          "plain timm seed does not load: %s", mvmoe_last_error());
    mvmoe_model_free(m);
    static const char *const images[] = {"gray8.png", "rgb8.png", "rgba8.png", "rgb16.png",
                                         "palette.png", "gray1.png", "gray.jpg",
                                         "rgb_baseline.jpg", "rgb_progressive.jpg",
                                         "rgb_444_restart.jpg", "cmyk_adobe.jpg"};
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "fuzz/corpus/image/%s", images[i]);
        uint8_t *rgb = NULL;
        int w, h;
        CHECK(mvmoe_image_decode_rgb(path, &rgb, &w, &h) == MVMOE_OK, "seed %s does not decode: %s",
              path, mvmoe_last_error());
        free(rgb);
    }
}

int main(void) {
    struct stat st;
    if (stat("fuzz/corpus", &st) != 0) {
        fprintf(stderr, "test_fuzz_replay: fuzz/corpus not found; run from the repository root\n");
        return 1;
    }
    for (size_t h = 0; h < sizeof harnesses / sizeof harnesses[0]; h++) {
        char dir[256];
        snprintf(dir, sizeof dir, "fuzz/corpus/%s", harnesses[h].name);
        int seeds = replay_dir(dir, harnesses[h].fn);
        CHECK(seeds >= 3, "%s: %d seed inputs (expected at least 3)", dir, seeds);
        snprintf(dir, sizeof dir, "tests/regressions/%s", harnesses[h].name);
        int regs = replay_dir(dir, harnesses[h].fn);
        printf("%-12s %3d seeds, %3d regression inputs replayed\n", harnesses[h].name, seeds,
               regs < 0 ? 0 : regs);
    }
    check_valid_seeds();
    TEST_MAIN_END("test_fuzz_replay");
}
