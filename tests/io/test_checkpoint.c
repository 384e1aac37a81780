/* Checkpoint load refuses weights that are not finite, naming the tensor: a NaN weight makes
 * every logit NaN, which evaluation would otherwise report as an accuracy. The file is a real
 * save of a tiny model with one float overwritten in place. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mvmoe.h"
#include "test_util.h"

/* Overwrites element `at` of tensor `name` in the safetensors file with v; 0 on success. */
static int poke(const char *path, const char *name, int at, float v) {
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    uint64_t n = 0;
    int ok = fread(&n, 8, 1, f) == 1 && n < (1u << 24);
    char *h = ok ? calloc(n + 1, 1) : NULL;
    ok = h && fread(h, 1, n, f) == n;
    char key[128];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *t = ok ? strstr(h, key) : NULL, *o = t ? strstr(t, "\"data_offsets\":[") : NULL;
    long off = o ? strtol(o + 16, NULL, 10) : -1;
    ok = off >= 0 && fseek(f, (long)(8 + n) + off + 4L * at, SEEK_SET) == 0 && fwrite(&v, 4, 1, f) == 1;
    free(h);
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(void) {
    mvmoe_config c;
    memset(&c, 0, sizeof c);
    CHECK(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset: %s", mvmoe_last_error());
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, &c, 1) == MVMOE_OK, "create: %s", mvmoe_last_error());
    char path[64];
    snprintf(path, sizeof path, "/tmp/mvmoe_ckpt_%ld.safetensors", (long)getpid());
    CHECK(m && mvmoe_model_save(m, path) == MVMOE_OK, "save: %s", mvmoe_last_error());
    mvmoe_model_free(m);
    mvmoe_config_free(&c);

    mvmoe_model *back = NULL;
    CHECK(mvmoe_model_load(&back, path, NULL) == MVMOE_OK, "clean load: %s", mvmoe_last_error());
    mvmoe_model_free(back);
    const struct { const char *tensor; int at; float v; const char *what; } cases[] = {
        {"norm.weight", 1, NAN, "NaN"},
        {"blocks.0.attn.qkv.weight", 7, INFINITY, "an infinity"},
        {"head.bias", 0, -INFINITY, "an infinity"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mvmoe_model *fresh = NULL;
        mvmoe_config_preset(&c, "vit-test-tiny");
        if (mvmoe_model_create(&fresh, &c, 1) != MVMOE_OK || mvmoe_model_save(fresh, path) != MVMOE_OK) {
            CHECK(0, "re-save: %s", mvmoe_last_error());
            break;
        }
        mvmoe_model_free(fresh);
        mvmoe_config_free(&c);
        CHECK(poke(path, cases[i].tensor, cases[i].at, cases[i].v) == 0, "poke %s", cases[i].tensor);
        mvmoe_model *bad = NULL;
        mvmoe_status s = mvmoe_model_load(&bad, path, NULL);
        CHECK(s == MVMOE_ERR_NUMERIC && strstr(mvmoe_last_error(), cases[i].tensor) &&
                  strstr(mvmoe_last_error(), cases[i].what),
              "%s of %s accepted or misreported: %d %s", cases[i].what, cases[i].tensor, s,
              mvmoe_last_error());
        CHECK(bad == NULL, "a refused load returns no model");
        mvmoe_model_free(bad);
    }
    remove(path);
    TEST_MAIN_END("test_checkpoint");
}
