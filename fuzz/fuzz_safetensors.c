/* Fuzz target: safetensors files and the checkpoint loader on top of them.
 *
 * 1. mvmoe_st_parse (the in-memory entry point of the reader): on success the tensors must
 *    tile the data section and every float tensor must read back with its element count (and
 *    be refused with any other count; integer dtypes are refused as floats); on failure the file struct must be left empty.
 * 2. The same bytes as a checkpoint file through mvmoe_model_load (config JSON in the
 *    metadata, or a plain timm file whose sizes come from shapes; heads and the run size come
 *    from the input's last byte). A model that loads must survive a save + load round trip
 *    bit for bit, and, when small, one forward pass. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/safetensors.h"
#include "model/model.h"

/* A forward pass is run only on models whose estimated memory stays below this. */
#define FZ_ST_FORWARD_BYTES ((size_t)64 << 20)

static void fz_st_parse(const uint8_t *data, size_t size) {
    mvmoe_st_file f;
    if (mvmoe_st_parse(&f, data, size, "fuzz.safetensors") != MVMOE_OK) {
        FZ_ASSERT(!f.bytes && !f.tensors && !f.path && f.n_tensors == 0 && f.n_meta == 0,
                  "a rejected file left state behind");
        return;
    }
    FZ_ASSERT(f.data_start >= 8 && f.data_start <= f.size, "data_start %zu of %zu", f.data_start,
              f.size);
    uint64_t covered = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const mvmoe_st_tensor *t = &f.tensors[i];
        FZ_ASSERT(t->begin <= t->end && t->end <= f.size - f.data_start, "tensor %d out of range", i);
        covered += t->end - t->begin;
        FZ_ASSERT(mvmoe_st_find(&f, t->name) == t, "find(%s) is not the tensor itself", t->name);
        size_t n = mvmoe_st_numel(t);
        float *buf = malloc((n ? n : 1) * sizeof *buf);
        FZ_ASSERT(buf != NULL, "out of memory for %zu floats", n);
        int is_float = t->dtype == MVMOE_ST_F32 || t->dtype == MVMOE_ST_F16 ||
                       t->dtype == MVMOE_ST_BF16 || t->dtype == MVMOE_ST_F64;
        FZ_ASSERT((mvmoe_st_read_f32(&f, t, buf, n) == MVMOE_OK) == is_float,
                  "reading tensor %d (dtype %d)", i, (int)t->dtype);
        FZ_ASSERT(mvmoe_st_read_f32(&f, t, buf, n + 1) != MVMOE_OK, "wrong count accepted");
        free(buf);
    }
    FZ_ASSERT(covered == f.size - f.data_start, "tensors cover %llu of %zu data bytes",
              (unsigned long long)covered, f.size - f.data_start);
    for (int i = 0; i < f.n_meta; i++)
        FZ_ASSERT(mvmoe_st_meta(&f, f.meta_keys[i]) != NULL, "meta key %d not found", i);
    mvmoe_st_close(&f);
}

static void fz_st_checkpoint(const uint8_t *data, size_t size) {
    fz_dir();
    const char *path = fz_path("m.safetensors"), *path2 = fz_path("m2.safetensors");
    fz_write(path, data, size);
    uint8_t tail = size ? data[size - 1] : 0;
    static const int run_sizes[4] = {0, 0, 8, 12};
    mvmoe_load_options o;
    memset(&o, 0, sizeof o);
    o.heads = 1 + (tail & 3);
    o.img_size = run_sizes[(tail >> 4) & 3];
    mvmoe_model *m = NULL;
    if (mvmoe_model_load(&m, path, &o) != MVMOE_OK) {
        FZ_ASSERT(m == NULL, "failed load returned a model");
        FZ_ASSERT(mvmoe_last_error()[0] != '\0', "failed load without a message");
        return;
    }
    const mvmoe_config *c = mvmoe_model_config(m);
    FZ_ASSERT(mvmoe_config_validate(c) == MVMOE_OK, "loaded model has an invalid config");
    FZ_ASSERT(mvmoe_model_save(m, path2) == MVMOE_OK, "saving a loaded model");
    mvmoe_model *m2 = NULL;
    FZ_ASSERT(mvmoe_model_load(&m2, path2, NULL) == MVMOE_OK, "reloading a saved model");
    FZ_ASSERT(m2->layout.total == m->layout.total, "arena sizes differ after round trip");
    FZ_ASSERT(memcmp(m2->param_mem, m->param_mem, sizeof(float) * m->layout.total) == 0,
              "weights differ after save + load");
    char *j1 = NULL, *j2 = NULL;
    FZ_ASSERT(mvmoe_config_to_json(c, &j1) == MVMOE_OK && mvmoe_config_to_json(&m2->cfg, &j2) == MVMOE_OK,
              "config to JSON");
    FZ_ASSERT(strcmp(j1, j2) == 0, "config differs after round trip: %s vs %s", j1, j2);
    free(j1);
    free(j2);
    mvmoe_model_free(m2);
    size_t img = (size_t)c->in_chans * c->img_size * c->img_size;
    if (mvmoe_model_memory_estimate(c, 1, 0) + img <= FZ_ST_FORWARD_BYTES) {
        uint8_t *pix = calloc(img, 1);
        float *logits = malloc(sizeof(float) * (size_t)c->num_classes);
        FZ_ASSERT(pix && logits, "out of memory");
        FZ_ASSERT(mvmoe_model_logits(m, pix, 1, logits) == MVMOE_OK, "forward pass");
        free(pix);
        free(logits);
    }
    mvmoe_model_free(m);
}

int mvmoe_fuzz_safetensors(const uint8_t *data, size_t size) {
    fz_st_parse(data, size);
    fz_st_checkpoint(data, size);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mvmoe_fuzz_safetensors(data, size);
}
#endif
