/* Fuzz target: the checkpoint contract's config JSON (mvmoe_config_from_json, which ends with
 * mvmoe_config_validate) and its writer.
 *
 * Input: one or two JSON texts separated by FZ_SEP, parsed in turn into the same config
 * (starting from a preset), as the API allows: fields a text leaves out keep their values.
 * Every accepted config must validate, print, and parse back from its own JSON to the same
 * JSON (a fixed point); its FLOP count must be finite. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

static void fz_cfg_roundtrip(const mvmoe_config *c) {
    FZ_ASSERT(mvmoe_config_validate(c) == MVMOE_OK, "accepted config does not validate");
    char *j1 = NULL, *j2 = NULL;
    FZ_ASSERT(mvmoe_config_to_json(c, &j1) == MVMOE_OK, "to_json");
    mvmoe_config back;
    memset(&back, 0, sizeof back);
    FZ_ASSERT(mvmoe_config_from_json(&back, j1, strlen(j1)) == MVMOE_OK, "own JSON rejected: %s", j1);
    FZ_ASSERT(mvmoe_config_to_json(&back, &j2) == MVMOE_OK, "to_json of the copy");
    FZ_ASSERT(strcmp(j1, j2) == 0, "JSON round trip differs:\n%s\n%s", j1, j2);
    FZ_ASSERT(back.img_size == c->img_size && back.dim == c->dim && back.depth == c->depth &&
                  back.heads == c->heads && back.routing == c->routing &&
                  back.experts == c->experts && back.num_classes == c->num_classes,
              "fields differ after round trip");
    for (int k = 0; k < c->in_chans; k++)
        FZ_ASSERT(memcmp(&back.mean[k], &c->mean[k], sizeof(float)) == 0 &&
                      memcmp(&back.std[k], &c->std[k], sizeof(float)) == 0,
                  "mean/std[%d] differ", k);
    mvmoe_config copy;
    FZ_ASSERT(mvmoe_config_copy(&copy, c) == MVMOE_OK, "copy");
    mvmoe_config_free(&copy);
    mvmoe_config_free(&back);
    free(j1);
    free(j2);
    double f = mvmoe_config_flops(c);
    FZ_ASSERT(isfinite(f) && f > 0, "flops %g", f);
    FZ_ASSERT(mvmoe_config_tokens(c) >= 2, "tokens");
}

int mvmoe_fuzz_config_json(const uint8_t *data, size_t size) {
    fz_part parts[2];
    int n = fz_split(data, size, parts, 2);
    mvmoe_config c;
    FZ_ASSERT(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset");
    for (int i = 0; i < n; i++)
        if (mvmoe_config_from_json(&c, (const char *)parts[i].p, parts[i].n) == MVMOE_OK)
            fz_cfg_roundtrip(&c);
    mvmoe_config_free(&c);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mvmoe_fuzz_config_json(data, size);
}
#endif
