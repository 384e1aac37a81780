/* Before a data-parallel run trains a step, every rank checks that it trains what rank 0
 * trains (dist.h): the same settings, data, split, model and optimizer state. Ranks that
 * differ would compute different gradients, sum them without complaint and drift apart (or,
 * with another --max-steps, leave the loop at another step and leave the others waiting in a
 * sum forever); a fingerprint of each input, compared across ranks once, turns that into an
 * error before training that names the rank and the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model.h"
#include "train/dist.h"

/* A 64-bit hash of bytes, eight at a time: a fingerprint, not a cryptographic digest; a
 * mismatch it misses would need two inputs that differ yet collide, not a typo or a stale file. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    for (; n; n--, b++) {
        h = (h ^ *b) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

static uint64_t hash_i64(uint64_t h, int64_t v) { return hash_bytes(h, &v, sizeof v); }

#define MAX_FIELDS 64
#define SEED 0x6D766D6F65ull /* "mvmoe" */

typedef struct {
    const char *name[MAX_FIELDS];
    uint64_t h[MAX_FIELDS];
    int n;
    char words[MAX_FIELDS][80]; /* names made from the settings' words */
} fields;

static void add(fields *f, const char *name, uint64_t h) {
    if (f->n >= MAX_FIELDS) return; /* cannot happen: the count is fixed below */
    f->name[f->n] = name;
    f->h[f->n++] = h;
}

/* One field per word of the settings text ("--batch=128 ..."), named after its flag, so that
 * the message says which flag differs. The number of words is the same on every rank (one
 * format); a rank whose word count differs still differs in a hash. */
static void add_settings(fields *f, const char *settings) {
    for (const char *w = settings; *w && f->n < MAX_FIELDS - 16;) {
        size_t len = strcspn(w, " "), key = strcspn(w, "=");
        if (key > len) key = len;
        char *name = f->words[f->n];
        snprintf(name, sizeof f->words[0], "setting %.*s", (int)(key < 60 ? key : 60), w);
        add(f, name, hash_bytes(SEED, w, len));
        w += len;
        while (*w == ' ') w++;
    }
}

mvmoe_status mvmoe_dist_check_inputs(const mvmoe_model *m, const mvmoe_dataset *ds,
                                     const int32_t *train_idx, int n_train, const int32_t *val_idx,
                                     int n_val, const mvmoe_train_options *o, const char *settings,
                                     int with_state) {
    if (mvmoe_dist_size() <= 1) return MVMOE_OK;
    fields *f = calloc(1, sizeof *f);
    if (!f) MVMOE_FAIL(MVMOE_ERR_NOMEM, "fingerprints of the inputs");
    if (!with_state) {
        uint64_t h = SEED;
        h = hash_i64(h, ds->n), h = hash_i64(h, ds->c), h = hash_i64(h, ds->h), h = hash_i64(h, ds->w);
        add(f, "dataset size (images, channels, height, width; --data, --max-images)",
            hash_i64(h, ds->num_classes));
        add(f, "dataset labels (--data)", hash_bytes(SEED, ds->labels, sizeof(int32_t) * (size_t)ds->n));
        /* the images: a few hundred spread over the set, whole, so that another file of the
         * same size (a different host's copy, another version) is caught without reading all */
        const size_t img = (size_t)ds->c * ds->h * ds->w;
        const int samples = ds->n < 256 ? ds->n : 256;
        h = SEED;
        for (int i = 0; i < samples; i++)
            h = hash_bytes(h, ds->images + (size_t)((int64_t)i * ds->n / samples) * img, img);
        add(f, "dataset images (--data)", h);
        h = hash_bytes(hash_i64(SEED, n_train), train_idx, sizeof(int32_t) * (size_t)n_train);
        h = hash_bytes(hash_i64(h, n_val), val_idx, sizeof(int32_t) * (size_t)(n_val > 0 ? n_val : 0));
        add(f, "training/validation split (--val-fraction, --seed, --max-images)", h);
        char *json = NULL;
        mvmoe_status js = mvmoe_config_to_json(&m->cfg, &json);
        if (js != MVMOE_OK) {
            free(f);
            return js;
        }
        add(f, "model config (model flags, --superclasses, or the checkpoint's)", hash_bytes(SEED, json, strlen(json)));
        free(json);
        add(f, "initial weights (--seed, --init, --upcycle or the checkpoint)",
            hash_bytes(SEED, m->param_mem, sizeof(float) * m->layout.total));
        /* after the data: another --max-images shows as the dataset, not as its image count */
        add_settings(f, settings);
        add(f, "setting --max-steps", hash_i64(SEED, o->max_steps));
        add(f, "setting --expert-parallel", hash_i64(SEED, o->expert_parallel));
        add(f, "environment MVMOE_OVERLAP_ALLREDUCE", hash_i64(SEED, mvmoe_dist_overlap()));
    } else if (with_state == 2) {
        /* the ranks compute their shares with kernels chosen at run time (AVX-512 or not) but
         * apply the same summed gradient with the same code, so their states stay the same
         * bits; a host with another build would drift, silently, until this says so */
        add(f, "weights after this epoch (the ranks drifted apart: every host must run the same "
               "mvmoe build)", hash_bytes(SEED, m->param_mem, sizeof(float) * m->layout.total));
        uint64_t h = hash_bytes(SEED, m->adam_m, sizeof(float) * m->layout.total);
        add(f, "optimizer moments after this epoch (the ranks drifted apart: every host must run "
               "the same mvmoe build)", hash_bytes(h, m->adam_v, sizeof(float) * m->layout.total));
    } else {
        add(f, "optimizer step (the --resume state)", hash_i64(SEED, m->step));
        uint64_t h = hash_bytes(SEED, m->adam_m, sizeof(float) * m->layout.total);
        add(f, "optimizer moments (the --resume state)", hash_bytes(h, m->adam_v, sizeof(float) * m->layout.total));
        add(f, "weight EMA (the --resume state)",
            m->ema_mem ? hash_bytes(SEED, m->ema_mem, sizeof(float) * m->layout.total) : SEED);
    }
    mvmoe_status s = mvmoe_dist_check_same(f->name, f->h, f->n);
    free(f);
    return s;
}
