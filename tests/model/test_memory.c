/* mvmoe_model_memory_estimate against what the model really allocates: the parameter arena
 * and tensor table (mvmoe_model_create), the inference arena (mvmoe_acts_init, training 0)
 * and its packed weights (mvmoe_model_pack_weights), and the training state
 * (mvmoe_model_train_init: gradients, AdamW moments, training
 * activations), for dense and every MoE routing. The allocator's own sizes come from
 * malloc_usable_size: exact under AddressSanitizer (make asan-test), so there the estimate
 * must match to the byte; glibc rounds each block up (< 1 page + alignment), so here each
 * block may exceed the estimate by that much but never fall below it. */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "mvmoe.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLACK_PER_BLOCK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLACK_PER_BLOCK 0
#endif
#endif
#ifndef SLACK_PER_BLOCK
#define SLACK_PER_BLOCK (4096 + 128)
#endif

static size_t usable(const void *p) { return p ? malloc_usable_size((void *)p) : 0; }

static size_t acts_usable(const mvmoe_acts *a, int *blocks) {
    *blocks = 1 + (a->imem != NULL) + (a->plans != NULL);
    return usable(a->mem) + usable(a->imem) + usable(a->plans);
}

/* Passes when est <= got <= est + blocks * slack. */
static void check_close(const char *name, const char *part, size_t est, size_t got, int blocks) {
    CHECK(got >= est && got - est <= (size_t)blocks * SLACK_PER_BLOCK,
          "%s %s: estimate %zu bytes, allocated %zu (%d blocks, slack %d each)", name, part, est,
          got, blocks, SLACK_PER_BLOCK);
}

static void check_config(const char *name, const mvmoe_config *c, int B) {
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, c, 1) == MVMOE_OK, "%s: create: %s", name, mvmoe_last_error());
    if (!m) return;
    size_t K = (size_t)c->num_classes;
    size_t eval_extra = K * K * sizeof(int64_t) + K * sizeof(double) + (size_t)B * 4;
    size_t e0 = mvmoe_model_memory_estimate(c, 0, 0), eB = mvmoe_model_memory_estimate(c, B, 0);
    size_t eT = mvmoe_model_memory_estimate(c, B, 1), eT0 = mvmoe_model_memory_estimate(c, 0, 1);
    CHECK(e0 < eB && eB < eT && e0 < eT0 && eT0 < eT, "%s: estimates not increasing", name);

    check_close(name, "weights + table", e0, usable(m->param_mem) + usable(m->layout.t), 2);

    mvmoe_acts a;
    int blocks = 0;
    CHECK(mvmoe_acts_init(&a, c, B, 0) == MVMOE_OK, "%s: acts_init: %s", name, mvmoe_last_error());
    CHECK(mvmoe_model_pack_weights(m) == MVMOE_OK, "%s: prepare: %s", name, mvmoe_last_error());
    size_t got = acts_usable(&a, &blocks) + usable(m->packed.mem);
    blocks += m->packed.mem != NULL;
    check_close(name, "inference activations + packed weights", eB - e0 - eval_extra, got, blocks);
    mvmoe_acts_free(&a);

    CHECK(mvmoe_model_train_init(m, B) == MVMOE_OK, "%s: train_init: %s", name, mvmoe_last_error());
    size_t state = usable(m->grad_mem) + usable(m->adam_m) + usable(m->adam_v);
    check_close(name, "gradients + AdamW", eT0 - e0, state, 3);
    size_t acts = acts_usable(&m->train_acts, &blocks);
    check_close(name, "training activations", eT - eB - (eT0 - e0), acts, blocks);
    mvmoe_model_free(m);
}

static mvmoe_config preset(const char *name) {
    mvmoe_config c;
    if (mvmoe_config_preset(&c, name) != MVMOE_OK) memset(&c, 0, sizeof c);
    return c;
}

int main(void) {
    mvmoe_config c = preset("vit-test-tiny");
    check_config("vit-test-tiny B=5", &c, 5);
    c = preset("vit-12x64");
    c.depth = 3;
    check_config("vit-12x64 (depth 3) B=2", &c, 2);

    c = preset("vit-test-tiny");
    c.img_size = 12, c.patch = 3, c.in_chans = 3, c.dim = 24, c.heads = 3, c.mlp_dim = 40;
    c.num_classes = 7, c.depth = 3;
    c.routing = MVMOE_ROUTING_IMAGE_LEARNED, c.experts = 4, c.top_k = 2, c.moe_layers = 2;
    check_config("image-learned E4 k2", &c, 3);
    c.routing = MVMOE_ROUTING_IMAGE_SUPERCLASS, c.top_k = 1, c.moe_layers = 1;
    check_config("image-superclass E4 k1", &c, 4);
    c.routing = MVMOE_ROUTING_TOKEN_LEARNED, c.experts = 3, c.top_k = 2, c.moe_layers = 3;
    check_config("token-learned E3 k2", &c, 2);

    /* The sizes that --max-memory exists for: estimated without allocating. */
    c = preset("vit-12x384");
    size_t big = mvmoe_model_memory_estimate(&c, 65536, 1);
    CHECK(big != SIZE_MAX && big > ((size_t)1 << 40), "vit-12x384 at batch 65536: %zu bytes", big);
    CHECK(mvmoe_model_memory_estimate(&c, 100, 1) < mvmoe_model_memory_estimate(&c, 101, 1),
          "estimate grows with the batch");
    c.dim = 16384, c.heads = 16384, c.depth = 256, c.img_size = 1024, c.patch = 4;
    CHECK(mvmoe_model_memory_estimate(&c, 65536, 1) == SIZE_MAX, "beyond size_t saturates");
    /* the arena itself refuses such sizes instead of wrapping around size_t or int */
    mvmoe_acts a;
    CHECK(mvmoe_acts_init(&a, &c, 65536, 1) == MVMOE_ERR_NOMEM && a.mem == NULL, "arena beyond size_t refused");
    mvmoe_config v = preset("vit-12x64");
    CHECK(mvmoe_acts_init(&a, &v, 2147483647, 0) == MVMOE_ERR_NOMEM && a.mem == NULL,
          "a batch of 2^31 - 1 images (token rows beyond int) refused");
    CHECK(mvmoe_acts_init(&a, &v, 0, 0) == MVMOE_ERR_INVALID, "batch 0 refused");
    c.heads = 5; /* does not divide dim */
    CHECK(mvmoe_model_memory_estimate(&c, 1, 0) == SIZE_MAX, "invalid config gives SIZE_MAX");
    CHECK(mvmoe_model_memory_estimate(NULL, 1, 0) == SIZE_MAX, "NULL config gives SIZE_MAX");
    TEST_MAIN_END("test_memory");
}
