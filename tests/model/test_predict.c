/* mvmoe_model_predict: the same logits as mvmoe_model_logits bit for bit, and per-image routes
 * that are the reference model's router choices (src/model/vit_ref.c: an independent
 * implementation) -- across the inference chunk boundary, with adaptive k dropping choices
 * (-1), and the same routes whether an image runs alone or in a batch. Dense models and
 * token-learned routing refuse routes with their documented statuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/augment.h"
#include "model/model.h"
#include "model/vit_ref.h"
#include "test_util.h"

#define N 70 /* more than one inference chunk (64 images) */

/* The reference model's choices for the n images (normalized as inference does them), in the
 * layout of mvmoe_model_predict's routes: expert, or -1 for a dropped choice. */
static void ref_routes(const mvmoe_model *m, const uint8_t *u8, int n, int32_t *out) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_vit_ref r;
    float *img = malloc(sizeof(float) * (size_t)n * c->in_chans * c->img_size * c->img_size);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    CHECK(img && idx && mvmoe_vit_ref_init(&r, c, n) == MVMOE_OK, "reference init");
    if (!img || !idx) {
        free(img), free(idx);
        return;
    }
    mvmoe_dataset view = {.n = n, .c = c->in_chans, .h = c->img_size, .w = c->img_size,
                          .num_classes = c->num_classes, .images = (uint8_t *)u8};
    for (int i = 0; i < n; i++) idx[i] = i;
    CHECK(mvmoe_augment_batch(img, &view, idx, n, c->img_size, c->mean, c->std, NULL, 0, 0) == MVMOE_OK,
          "normalize: %s", mvmoe_last_error());
    mvmoe_vit_ref_opts o = {.adaptive_k = m->adaptive_k};
    mvmoe_vit_ref_forward(&r, img, &m->p, &o);
    CHECK(r.n_routers == 1 && r.n_route == n, "reference: %d routers over %d items", r.n_routers, r.n_route);
    for (size_t j = 0; j < (size_t)n * c->top_k; j++) out[j] = r.rkept[j] ? r.rexpert[j] : -1;
    mvmoe_vit_ref_free(&r);
    free(img), free(idx);
}

static void check_routes(const char *name, mvmoe_config c, float adaptive_k, int want_dropped) {
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, &c, 7) == MVMOE_OK, "%s: create: %s", name, mvmoe_last_error());
    if (!m) return;
    /* weights larger than the init's so the router's choices vary between images */
    mvmoe_rng r;
    mvmoe_rng_init(&r, 21, 0);
    for (size_t i = 0; i < m->layout.total; i++) m->param_mem[i] += 0.3f * mvmoe_rng_normal(&r);
    mvmoe_model_params_changed(m);
    m->adaptive_k = adaptive_k;
    const int K = c.num_classes, k = c.top_k, E = c.experts;
    const size_t ni = (size_t)c.in_chans * c.img_size * c.img_size;
    uint8_t *u8 = malloc(ni * N);
    float *logits = malloc(sizeof(float) * N * K), *plain = malloc(sizeof(float) * N * K),
          *one = malloc(sizeof(float) * K);
    int32_t *routes = malloc(sizeof(int32_t) * N * k), *ref = malloc(sizeof(int32_t) * N * k),
            *alone = malloc(sizeof(int32_t) * k);
    CHECK(u8 && logits && plain && one && routes && ref && alone, "%s: alloc", name);
    if (u8 && logits && plain && one && routes && ref && alone) {
        for (size_t i = 0; i < ni * N; i++) u8[i] = (uint8_t)(mvmoe_rng_u64(&r) >> 56);
        for (size_t j = 0; j < (size_t)N * k; j++) routes[j] = -7;
        CHECK(mvmoe_model_predict(m, u8, N, logits, routes) == MVMOE_OK, "%s: predict: %s", name,
              mvmoe_last_error());
        CHECK(mvmoe_model_logits(m, u8, N, plain) == MVMOE_OK, "%s: logits", name);
        CHECK(!memcmp(logits, plain, sizeof(float) * N * K), "%s: predict's logits differ from "
              "mvmoe_model_logits'", name);
        ref_routes(m, u8, N, ref);
        int same = 1, used[16] = {0}, dropped = 0, distinct = 1;
        for (size_t j = 0; j < (size_t)N * k; j++) {
            same &= routes[j] == ref[j];
            if (routes[j] >= 0 && routes[j] < E) used[routes[j]] = 1;
            dropped += routes[j] == -1;
        }
        for (int i = 0; i < N; i++)
            for (int a = 0; a < k; a++)
                for (int b = a + 1; b < k; b++)
                    distinct &= routes[i * k + a] < 0 || routes[i * k + a] != routes[i * k + b];
        int n_used = 0;
        for (int e = 0; e < E; e++) n_used += used[e];
        CHECK(same, "%s: routes differ from the reference router's choices", name);
        CHECK(distinct, "%s: an image chose one expert twice", name);
        CHECK(n_used >= 2, "%s: only %d expert(s) chosen: the comparison would be weak", name, n_used);
        CHECK(want_dropped ? dropped > 0 : dropped == 0, "%s: %d dropped choices", name, dropped);
        /* an image alone gets what it got in the batch (the last one, past the first chunk) */
        CHECK(mvmoe_model_predict(m, u8 + ni * (N - 1), 1, one, alone) == MVMOE_OK, "%s: alone", name);
        CHECK(!memcmp(alone, routes + (size_t)(N - 1) * k, sizeof(int32_t) * k), "%s: image %d's "
              "routes differ alone and in the batch", name, N - 1);
        /* NULL routes: logits only, for every routing */
        CHECK(mvmoe_model_predict(m, u8, 3, logits, NULL) == MVMOE_OK, "%s: routes NULL", name);
        CHECK(mvmoe_model_predict(m, u8, -1, logits, routes) == MVMOE_ERR_INVALID &&
              strstr(mvmoe_last_error(), "negative"), "%s: n = -1: %s", name, mvmoe_last_error());
    }
    free(u8), free(logits), free(plain), free(one), free(routes), free(ref), free(alone);
    mvmoe_model_free(m);
}

static void check_refused(const char *name, mvmoe_config c, mvmoe_status want, const char *says) {
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, &c, 3) == MVMOE_OK, "%s: create: %s", name, mvmoe_last_error());
    if (!m) return;
    const size_t ni = (size_t)c.in_chans * c.img_size * c.img_size;
    uint8_t *u8 = calloc(ni * 2, 1);
    float logits[2 * 16];
    int32_t routes[2 * 4];
    CHECK(u8 && c.num_classes <= 16 && c.top_k <= 4, "%s: alloc", name);
    if (u8) {
        mvmoe_status s = mvmoe_model_predict(m, u8, 2, logits, routes);
        CHECK(s == want && strstr(mvmoe_last_error(), says), "%s: status %s, message '%s'", name,
              mvmoe_status_name(s), mvmoe_last_error());
        CHECK(mvmoe_model_predict(m, u8, 2, logits, NULL) == MVMOE_OK, "%s: logits only: %s", name,
              mvmoe_last_error());
    }
    free(u8);
    mvmoe_model_free(m);
}

int main(void) {
    mvmoe_config c;
    memset(&c, 0, sizeof c);
    CHECK(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset");
    c.num_classes = 7;
    check_refused("dense", c, MVMOE_ERR_INVALID, "dense");
    c.routing = MVMOE_ROUTING_TOKEN_LEARNED, c.experts = 3, c.top_k = 2, c.moe_layers = 1;
    check_refused("token-learned", c, MVMOE_ERR_UNSUPPORTED, "per token");
    c.depth = 3;
    c.routing = MVMOE_ROUTING_IMAGE_SUPERCLASS, c.experts = 3, c.top_k = 1, c.moe_layers = 2;
    check_routes("image-superclass E3 k1", c, 0, 0);
    c.routing = MVMOE_ROUTING_IMAGE_LEARNED, c.experts = 4, c.top_k = 2, c.moe_layers = 1;
    check_routes("image-learned E4 k2", c, 0, 0);
    /* adaptive k with a threshold some top probabilities reach: those images drop choice 2 */
    check_routes("image-learned E4 k2, adaptive k 0.5", c, 0.5f, 1);
    TEST_MAIN_END("test_predict");
}
