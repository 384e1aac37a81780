/* The fast model (src/model/vit.c) against the reference model (src/model/vit_ref.c), for
 * every routing mode: dense; image-superclass k = 1, 2; image-learned k = 1, 2 with router
 * noise (and adaptive k); token-learned with and without expert capacity (and adaptive k);
 * with and without drop-path. Training (forward, loss, backward) and inference
 * (mvmoe_model_logits). Compared: logits, each loss part, every gradient tensor (named in the
 * message on failure), and the routing decisions, which must be identical.
 * Then finite differences of the reference itself, so it is anchored independently of the
 * fast code.
 *
 * Tolerances: both compute in float32; the fast one sums in other orders (oneDNN sgemm
 * blocking, FMA, 8-lane partial sums, the class-token-only last block, grouped experts), the
 * reference often in double. Each op then differs by a few ulp (~1e-7 relative), amplified
 * through the blocks' LayerNorms and softmaxes: observed here (both kernel widths, 1-4
 * threads) logits up to ~1e-6 and worst gradient tensors up to ~7e-6 (max |Δ| over max |ref|
 * of the tensor). The bounds below leave 10x or more of margin, while real errors are far
 * above them: a flipped sign on the gate gradient, the load loss's η term or one image's
 * drop-path factor, or a capacity off by one, each gave 1e-3 .. 1 and failed this test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/augment.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/vit_ref.h"
#include "test_util.h"

#define LOGIT_TOL 2e-5  /* max |Δlogit| / max(max |logit|, 1) */
#define LOSS_TOL 1e-5   /* |Δ| / max(|loss part|, 1e-3) */
#define GRAD_TOL 1e-4   /* per tensor: max |Δg| / max(max |g_ref| of the tensor, GRAD_FLOOR) */
#define GRAD_FLOOR 1e-6 /* an expert nothing was routed to has g = 0 in both: compared absolutely */
#define GATE_TOL 1e-5   /* router probabilities (gates) are O(1) */

enum { B = 4 };

typedef struct variant {
    const char *name;
    mvmoe_routing routing;
    int E, k;
    float drop_path, capacity_ratio, adaptive_k;
} variant;

static const variant variants[] = {
    {"dense", MVMOE_ROUTING_DENSE, 0, 1, 0.0f, 0, 0},
    {"dense, drop-path", MVMOE_ROUTING_DENSE, 0, 1, 0.5f, 0, 0},
    {"image-superclass k=1", MVMOE_ROUTING_IMAGE_SUPERCLASS, 3, 1, 0.0f, 0, 0},
    {"image-superclass k=2, drop-path", MVMOE_ROUTING_IMAGE_SUPERCLASS, 4, 2, 0.3f, 0, 0},
    {"image-learned k=1, noise", MVMOE_ROUTING_IMAGE_LEARNED, 3, 1, 0.0f, 0, 0},
    {"image-learned k=2, noise", MVMOE_ROUTING_IMAGE_LEARNED, 4, 2, 0.0f, 0, 0},
    {"image-learned k=2, noise, adaptive k", MVMOE_ROUTING_IMAGE_LEARNED, 4, 2, 0.0f, 0, 0.5f},
    {"token-learned k=1, no capacity", MVMOE_ROUTING_TOKEN_LEARNED, 3, 1, 0.0f, 0, 0},
    {"token-learned k=2, capacity 0.8", MVMOE_ROUTING_TOKEN_LEARNED, 4, 2, 0.0f, 0.8f, 0},
    {"token-learned k=2, capacity, adaptive k, drop-path", MVMOE_ROUTING_TOKEN_LEARNED, 4, 2, 0.3f, 1.05f, 0.5f},
};

static int superclass_of[5] = {0, 2, 1, 2, 0};

static mvmoe_config base_config(int small) {
    mvmoe_config c;
    mvmoe_config_preset(&c, "vit-test-tiny");
    c.img_size = small ? 8 : 12, c.in_chans = small ? 2 : 3, c.patch = 4, c.dim = small ? 12 : 16;
    c.depth = small ? 2 : 3, c.heads = 2, c.mlp_dim = small ? 20 : 32, c.num_classes = 5;
    c.mean[0] = 0.4f, c.std[1] = 0.3f;
    return c;
}

/* A model of variant v with weights far from timm's init (every path carries signal) and
 * strong routers (clear top-k margins). NULL on failure (recorded). */
static mvmoe_model *make_model(mvmoe_config c, const variant *v, mvmoe_rng *r) {
    c.routing = v->routing;
    c.experts = v->E, c.top_k = v->routing == MVMOE_ROUTING_DENSE ? 1 : v->k;
    c.moe_layers = v->routing == MVMOE_ROUTING_DENSE ? 0 : (c.depth > 2 ? 2 : 1);
    c.superclass_of = v->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS ? superclass_of : NULL;
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, &c, 11) == MVMOE_OK, "%s: create: %s", v->name, mvmoe_last_error());
    if (!m) return NULL;
    for (int i = 0; i < m->layout.n; i++)
        for (size_t q = 0; q < m->layout.t[i].count; q++)
            m->param_mem[m->layout.t[i].offset + q] += 0.3f * mvmoe_rng_normal(r);
    float *rw = m->p.router_w ? m->p.router_w : m->p.trouter_w;
    if (rw)
        for (size_t q = 0; q < (size_t)c.experts * c.dim * (m->p.router_w ? 1 : c.moe_layers); q++) rw[q] *= 4.0f;
    mvmoe_model_params_changed(m);
    m->adaptive_k = v->adaptive_k;
    return m;
}

/* The training pass of variant v (the trainer's defaults, except a balancing-loss weight whose
 * gradients stand well above float noise), seed 7, step 3. */
static mvmoe_pass pass_of(const variant *v) {
    mvmoe_train_options d;
    mvmoe_train_options_default(&d);
    mvmoe_pass t = {.drop_path = v->drop_path, .seed = 7, .step = 3,
                    .superclass_lambda = d.superclass_lambda, .aux_weight = 0.5f,
                    .capacity_ratio = v->capacity_ratio, .route_noise = 1, .superclass_of = NULL};
    return t;
}

/* The reference's options for the same pass (training) or for inference. */
static mvmoe_vit_ref_opts opts_of(const mvmoe_model *m, const variant *v, int training) {
    const mvmoe_pass t = pass_of(v);
    mvmoe_vit_ref_opts o = {training, training ? t.drop_path : 0.0f, t.seed, t.step, t.superclass_lambda,
                            t.aux_weight, t.capacity_ratio, t.route_noise, m->adaptive_k};
    return o;
}

/* Normalized images [B, C, S, S] from uint8 ones, exactly as mvmoe_model_logits makes them. */
static void normalize(float *img, const uint8_t *u8, const mvmoe_config *c) {
    mvmoe_dataset view = {.n = B, .c = c->in_chans, .h = c->img_size, .w = c->img_size,
                          .num_classes = c->num_classes, .images = (uint8_t *)u8};
    int32_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = i;
    CHECK(mvmoe_augment_batch(img, &view, idx, B, c->img_size, c->mean, c->std, NULL, 0, 0) == MVMOE_OK,
          "normalize: %s", mvmoe_last_error());
}

static double compare_logits(const float *fast, const float *ref, int K, const char *what) {
    double err = tu_rel_err(fast, ref, (size_t)B * K, 1.0);
    CHECK(err < LOGIT_TOL, "%s: logits differ, rel %.3g", what, err);
    return err;
}

/* The fast model's routing plans against the reference's routers: same experts, same kept
 * choices, same gates. Returns the number of distinct experts that ran (routing variety);
 * *dropped: choices dropped (capacity, adaptive k). */
static int compare_routes(const mvmoe_acts *a, const mvmoe_vit_ref *r, const mvmoe_config *c, const char *what,
                          int *dropped) {
    *dropped = 0;
    if (c->routing == MVMOE_ROUTING_DENSE) return 0;
    const int k = c->top_k;
    int used[1024] = {0}, distinct = 0, mism = 0;
    double gate_err = 0;
    CHECK(a->n_plans == r->n_routers && a->n_route == r->n_route, "%s: %d plans of %d vs %d of %d", what,
          a->n_plans, a->n_route, r->n_routers, r->n_route);
    for (int l = 0; l < a->n_plans && l < r->n_routers; l++) {
        const mvmoe_plan *pl = &a->plans[l];
        for (int j = 0; j < a->n_route * k; j++) {
            const size_t q = (size_t)l * r->n_route * k + j;
            const int kept = pl->pos[j] >= 0;
            mism += pl->expert[j] != r->rexpert[q] || kept != r->rkept[q];
            gate_err = fmax(gate_err, fabs((double)pl->gate[j] - r->rgate[q]));
            if (kept && !used[pl->expert[j]]++) distinct++;
            *dropped += !kept;
        }
    }
    CHECK(mism == 0, "%s: %d routing choices differ", what, mism);
    CHECK(gate_err < GATE_TOL, "%s: gates differ by %.3g", what, gate_err);
    return distinct;
}

/* Every gradient tensor by name; the worst one is named on failure. */
static void compare_grads(const mvmoe_model *m, const float *gref, const char *what, double logit_err) {
    double worst = 0, norm = 0;
    const char *worst_name = "(none)";
    for (int i = 0; i < m->layout.n; i++) {
        const mvmoe_tensor_info *t = &m->layout.t[i];
        double err = tu_rel_err(m->grad_mem + t->offset, gref + t->offset, t->count, GRAD_FLOOR);
        if (err > worst || err != err) worst = err != err ? INFINITY : err, worst_name = t->name;
        for (size_t q = 0; q < t->count; q++) norm += (double)gref[t->offset + q] * gref[t->offset + q];
    }
    CHECK(worst < GRAD_TOL, "%s: gradient of %s differs, rel %.3g", what, worst_name, worst);
    CHECK(norm > 1e-6, "%s: reference gradient is zero", what); /* the test must carry signal */
    printf("  %-58s logits %.1e, worst gradient %-28s %.1e\n", what, logit_err, worst_name, worst);
}

static void check_variant(const variant *v, mvmoe_rng *rng) {
    mvmoe_model *m = make_model(base_config(0), v, rng);
    if (!m) return;
    const mvmoe_config *c = &m->cfg;
    const int K = c->num_classes;
    const size_t n_img = (size_t)B * c->in_chans * c->img_size * c->img_size;
    uint8_t *u8 = malloc(n_img);
    float *img = malloc(sizeof(float) * n_img), *gref = calloc(m->layout.total, sizeof(float)),
          *logits = malloc(sizeof(float) * B * K);
    int32_t labels[B] = {0, 3, 1, 4};
    for (size_t q = 0; q < n_img; q++) u8[q] = (uint8_t)mvmoe_rng_below(rng, 256);
    normalize(img, u8, c);
    mvmoe_vit_ref ref;
    CHECK(mvmoe_vit_ref_init(&ref, c, B) == MVMOE_OK, "ref init: %s", mvmoe_last_error());
    CHECK(mvmoe_model_train_init(m, B) == MVMOE_OK, "train init: %s", mvmoe_last_error());

    /* training: forward (packed weights, as the trainer runs it), loss, backward */
    char what[160];
    snprintf(what, sizeof what, "%s, training", v->name);
    mvmoe_acts *a = &m->train_acts;
    CHECK(mvmoe_model_pack_weights(m) == MVMOE_OK, "pack");
    memcpy(a->img, img, sizeof(float) * n_img);
    mvmoe_targets_smoothed(a->targets, labels, B, K, 0.1f);
    const mvmoe_pass pass = pass_of(v);
    mvmoe_vit_forward(m, a, B, &pass);
    const double loss = mvmoe_vit_loss(m, a, B, labels, &pass);
    mvmoe_vit_backward(m, a, B);
    const mvmoe_vit_ref_opts ot = opts_of(m, v, 1);
    mvmoe_vit_ref_forward(&ref, img, &m->p, &ot);
    const double loss_ref = mvmoe_vit_ref_loss(&ref, a->targets, labels, &ot);
    mvmoe_params g;
    mvmoe_params_view(&g, gref, c);
    mvmoe_vit_ref_backward(&g, &ref, &m->p);
    const double logit_err = compare_logits(a->logits, ref.logits, K, what);
    const double parts[4][2] = {{loss, loss_ref}, {a->loss_ce, ref.loss_ce},
                                {a->loss_router, ref.loss_router}, {a->loss_aux, ref.loss_aux}};
    const char *part_names[4] = {"total", "ce", "router (super-class)", "aux (importance + load)"};
    for (int i = 0; i < 4; i++)
        CHECK(fabs(parts[i][0] - parts[i][1]) <= LOSS_TOL * fmax(fabs(parts[i][1]), 1e-3),
              "%s: loss %s %.9g vs reference %.9g", what, part_names[i], parts[i][0], parts[i][1]);
    if (c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS) CHECK(ref.loss_router > 0, "%s: no router loss", what);
    if (c->routing == MVMOE_ROUTING_IMAGE_LEARNED || c->routing == MVMOE_ROUTING_TOKEN_LEARNED)
        CHECK(ref.loss_aux > 0, "%s: no balancing loss", what);
    /* the features under test must be exercised: several experts, drops, dropped branches */
    int dropped, distinct = compare_routes(a, &ref, c, what, &dropped);
    if (c->routing != MVMOE_ROUTING_DENSE) CHECK(distinct >= 2, "%s: only %d experts ran", what, distinct);
    if (v->capacity_ratio > 0 || v->adaptive_k > 0) CHECK(dropped > 0, "%s: no choice was dropped", what);
    int zeros = 0;
    for (size_t q = 0; q < (size_t)c->depth * 2 * B; q++) zeros += ref.keep[q] == 0.0f;
    if (v->drop_path > 0) CHECK(zeros > 0, "%s: drop-path dropped no branch", what);
    compare_grads(m, gref, what, logit_err);

    /* inference through the public entry point: uint8 images in, logits out */
    snprintf(what, sizeof what, "%s, inference", v->name);
    CHECK(mvmoe_model_logits(m, u8, B, logits) == MVMOE_OK, "logits: %s", mvmoe_last_error());
    const mvmoe_vit_ref_opts oi = opts_of(m, v, 0);
    mvmoe_vit_ref_forward(&ref, img, &m->p, &oi);
    compare_logits(logits, ref.logits, K, what);
    compare_routes(&m->infer_acts, &ref, c, what, &dropped);
    if (v->adaptive_k > 0) CHECK(dropped > 0, "%s: adaptive k dropped no choice", what);

    mvmoe_vit_ref_free(&ref);
    free(u8), free(img), free(gref), free(logits);
    mvmoe_model_free(m);
}

/* ---------------------------------------------------------------- the reference's own gradients */
static double ref_loss(mvmoe_vit_ref *r, const float *img, const float *targets, const int32_t *labels,
                       const mvmoe_params *p, const mvmoe_vit_ref_opts *o) {
    mvmoe_vit_ref_forward(r, img, p, o);
    return mvmoe_vit_ref_loss(r, targets, labels, o);
}

/* Whether the reference's routing decisions differ from saved[2·nc] (experts, kept flags). */
static int route_changed(const mvmoe_vit_ref *r, const int *saved, size_t nc) {
    return nc && (memcmp(saved, r->rexpert, sizeof(int) * nc) || memcmp(saved + nc, r->rkept, sizeof(int) * nc));
}

/* Central differences on up to 8 entries of every tensor, compared as vectors (the style of
 * test_vit_grad.c): |num − ana| / max(|num|, floor) < 3e-2. The routing decisions must not
 * change under the perturbations (strong routers: clear top-k margins). */
static void fd_check(const variant *v, mvmoe_rng *rng) {
    mvmoe_model *m = make_model(base_config(1), v, rng);
    if (!m) return;
    const mvmoe_config *c = &m->cfg;
    const int moe = c->routing != MVMOE_ROUTING_DENSE, Bf = 3;
    const size_t n_img = (size_t)Bf * c->in_chans * c->img_size * c->img_size;
    float *img = malloc(sizeof(float) * n_img), *targets = malloc(sizeof(float) * Bf * c->num_classes),
          *gbuf = calloc(m->layout.total, sizeof(float));
    for (size_t q = 0; q < n_img; q++) img[q] = mvmoe_rng_normal(rng);
    int32_t labels[3] = {0, 3, 1};
    mvmoe_targets_smoothed(targets, labels, Bf, c->num_classes, 0.1f);
    mvmoe_vit_ref r;
    CHECK(mvmoe_vit_ref_init(&r, c, Bf) == MVMOE_OK, "ref init");
    const mvmoe_vit_ref_opts o = opts_of(m, v, 1);
    mvmoe_params g;
    mvmoe_params_view(&g, gbuf, c);
    ref_loss(&r, img, targets, labels, &m->p, &o);
    mvmoe_vit_ref_backward(&g, &r, &m->p);
    const size_t nc = (size_t)r.n_routers * r.n_route * c->top_k;
    int *choice0 = malloc(sizeof(int) * (nc ? 2 * nc : 1));
    if (nc) memcpy(choice0, r.rexpert, sizeof(int) * nc), memcpy(choice0 + nc, r.rkept, sizeof(int) * nc);
    const float eps_rel = moe ? 2e-3f : 1e-2f; /* MoE: small, so no routing decision flips */
    const double floor_ = moe ? 5e-3 : 1e-4;  /* float32 loss noise / eps */
    int flips = 0;
    double worst = 0;
    const char *worst_name = "(none)";
    for (int i = 0; i < m->layout.n; i++) {
        const mvmoe_tensor_info *t = &m->layout.t[i];
        const int ns = t->count < 8 ? (int)t->count : 8;
        double dn = 0, diff = 0;
        for (int s = 0; s < ns; s++) {
            const size_t q = t->count <= 8 ? (size_t)s : mvmoe_rng_below(rng, (uint32_t)t->count);
            float *w = m->param_mem + t->offset + q, w0 = *w, eps = eps_rel * fmaxf(1.0f, fabsf(w0));
            *w = w0 + eps;
            const double lp = ref_loss(&r, img, targets, labels, &m->p, &o);
            flips += route_changed(&r, choice0, nc);
            *w = w0 - eps;
            const double lm = ref_loss(&r, img, targets, labels, &m->p, &o);
            flips += route_changed(&r, choice0, nc);
            *w = w0;
            const double num = (lp - lm) / (2.0 * eps), ana = gbuf[t->offset + q];
            dn += num * num;
            diff += (num - ana) * (num - ana);
        }
        const double rel = sqrt(diff) / fmax(sqrt(dn), floor_);
        if (rel > worst) worst = rel, worst_name = t->name;
    }
    CHECK(flips == 0, "%s: %d perturbations changed a routing decision", v->name, flips);
    CHECK(worst < 3e-2, "%s: reference gradient of %s vs finite differences: %.3g", v->name, worst_name, worst);
    printf("  finite differences, %-34s worst %-28s %.2e\n", v->name, worst_name, worst);
    mvmoe_vit_ref_free(&r);
    free(img), free(targets), free(gbuf), free(choice0);
    mvmoe_model_free(m);
}

int main(void) {
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 2026, 0);
    /* the fast kernels' AVX2 versions, then their AVX-512 ones where this CPU has them */
    for (int width = 256; width <= 512; width += 256) {
        if (mvmoe_isa_force(width) != 0) continue;
        printf("kernels at %d bits\n", width);
        for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
            check_variant(&variants[i], &rng);
            fflush(stdout);
        }
    }
    mvmoe_isa_force(0);
    /* dense (with drop-path), one per-image and one per-token MoE mode */
    const int fd[] = {1, 3, 5, 8};
    for (size_t i = 0; i < sizeof fd / sizeof fd[0]; i++) fd_check(&variants[fd[i]], &rng);
    TEST_MAIN_END("test_vit_ref");
}
