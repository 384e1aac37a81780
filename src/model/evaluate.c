/* Evaluation, next to inference: top-1/top-5, mean cross-entropy, confusion matrix,
 * per-class accuracy, and the MoE measures (router accuracy, expert load). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/augment.h"
#include "model/model.h"

void mvmoe_eval_result_free(mvmoe_eval_result *r) {
    free(r->confusion);
    free(r->per_class);
    free(r->moe.expert_load);
    free(r->moe.expert_images);
    free(r->moe.expert_acc);
    free(r->moe.routes);
    memset(r, 0, sizeof *r);
}

mvmoe_status mvmoe_evaluate(mvmoe_model *m, const mvmoe_dataset *ds, const int32_t *idx, int n,
                            int batch, mvmoe_eval_result *r, float *logits_out) {
    const mvmoe_config *c = &m->cfg;
    const int K = c->num_classes;
    memset(r, 0, sizeof *r);
    if (!idx) n = ds->n;
    if (n < 0 || n > ds->n) MVMOE_FAIL(MVMOE_ERR_INVALID, "evaluate: %d images requested of %d", n, ds->n);
    if (ds->c != c->in_chans)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset %s has %d channels, the model expects %d",
                   ds->source ? ds->source : "", ds->c, c->in_chans);
    if (ds->num_classes > K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset %s has %d classes, the model only %d",
                   ds->source ? ds->source : "", ds->num_classes, K);
    /* running a model at another image size resamples its position embeddings: that must be
     * asked for (load option img_size, as timm's), never happen because the data differ */
    if (ds->h != c->img_size || ds->w != c->img_size)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "the images of %s are %dx%d but the model takes %dx%d; give "
                   "--img-size %d to run it at the data's size (position embeddings resampled), or "
                   "data of the model's size", ds->source ? ds->source : "", ds->h, ds->w,
                   c->img_size, c->img_size, ds->h);
    MVMOE_TRY(mvmoe_model_pack_weights(m));
    if (batch < 1) batch = 256;
    if (batch > n) batch = n > 0 ? n : 1;
    if (m->infer_acts.B < batch) {
        mvmoe_acts_free(&m->infer_acts);
        MVMOE_TRY(mvmoe_acts_init(&m->infer_acts, c, batch, 0));
    }
    mvmoe_acts *a = &m->infer_acts;
    int32_t *bidx;
    MVMOE_ALLOC(bidx, batch, "batch indices");
    r->n = n;
    r->num_classes = K;
    r->confusion = calloc((size_t)K * K, sizeof *r->confusion);
    r->per_class = calloc((size_t)K, sizeof *r->per_class);
    if (!r->confusion || !r->per_class) {
        free(bidx);
        mvmoe_eval_result_free(r);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "confusion matrix for %d classes", K);
    }
    int moe = c->routing != MVMOE_ROUTING_DENSE, E = c->experts, k = c->top_k;
    int image = moe && c->routing != MVMOE_ROUTING_TOKEN_LEARNED;
    int64_t *expert_correct = NULL, router_ok = 0, items = 0, kept = 0, routed_correct = 0, misrouted_correct = 0;
    if (moe) {
        r->moe.experts = E;
        r->moe.expert_load = calloc((size_t)E, sizeof *r->moe.expert_load);
        r->moe.expert_images = calloc((size_t)E, sizeof *r->moe.expert_images);
        r->moe.expert_acc = calloc((size_t)E, sizeof *r->moe.expert_acc);
        expert_correct = calloc((size_t)E, sizeof *expert_correct);
        if (image) r->moe.routes = calloc((size_t)n * k + 1, sizeof *r->moe.routes);
        if (!r->moe.expert_load || !r->moe.expert_images || !r->moe.expert_acc || !expert_correct ||
            (image && !r->moe.routes)) {
            free(bidx);
            free(expert_correct);
            mvmoe_eval_result_free(r);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "expert statistics for %d experts", E);
        }
    }
    int64_t top1 = 0, top5 = 0;
    double loss = 0;
    for (int i0 = 0; i0 < n; i0 += batch) {
        int B = n - i0 < batch ? n - i0 : batch;
        for (int i = 0; i < B; i++) bidx[i] = idx ? idx[i0 + i] : i0 + i;
        mvmoe_status s = mvmoe_augment_batch(a->img, ds, bidx, B, c->img_size, c->mean, c->std, NULL, 0, 0);
        if (s != MVMOE_OK) {
            free(bidx);
            free(expert_correct);
            mvmoe_eval_result_free(r);
            return s;
        }
        mvmoe_vit_forward(m, a, B, NULL);
        for (int i = 0; i < B; i++) {
            const float *row = a->logits + (size_t)i * K;
            int y = ds->labels[bidx[i]], best = 0, rank = 0;
            float mx = row[0];
            for (int k = 1; k < K; k++)
                if (row[k] > row[best]) best = k;
            for (int k = 0; k < K; k++) {
                if (row[k] > mx) mx = row[k];
                /* rank of the true class: classes scoring higher, ties broken by index */
                if (row[k] > row[y] || (row[k] == row[y] && k < y)) rank++;
            }
            double se = 0;
            for (int k = 0; k < K; k++) se += exp((double)row[k] - mx);
            loss += log(se) + mx - row[y];
            top1 += best == y;
            top5 += rank < 5;
            r->confusion[(size_t)y * K + best]++;
            if (image) { /* the image's top-1 expert: router accuracy, accuracy per expert */
                int e = a->plans[0].expert[(size_t)i * k];
                r->moe.expert_images[e]++;
                expert_correct[e] += best == y;
                if (c->superclass_of) { /* why the MoE errs: wrong expert, or right expert but wrong class */
                    int routed = c->superclass_of[y] == e;
                    router_ok += routed;
                    routed_correct += routed && best == y;
                    misrouted_correct += !routed && best == y;
                }
                for (int q = 0; q < k; q++) { /* the plan's choices; -1 where one was dropped */
                    const size_t j = (size_t)i * k + q;
                    r->moe.routes[(size_t)(i0 + i) * k + q] = a->plans[0].pos[j] < 0 ? -1 : a->plans[0].expert[j];
                }
            }
        }
        for (int pl = 0; moe && pl < a->n_plans; pl++) { /* load: every kept choice */
            const mvmoe_plan *P = &a->plans[pl];
            for (int e = 0; e < E; e++) r->moe.expert_load[e] += P->start[e + 1] - P->start[e];
            items += P->n;
            kept += P->start[E];
        }
        if (logits_out) memcpy(logits_out + (size_t)i0 * K, a->logits, sizeof(float) * (size_t)B * K);
    }
    free(bidx);
    if (moe) {
        int mapped = image && c->superclass_of && n;
        r->moe.router_acc = mapped ? (double)router_ok / n : -1;
        r->moe.misrouted = mapped ? n - router_ok : 0;
        r->moe.routed_acc = mapped && router_ok ? (double)routed_correct / router_ok : -1;
        r->moe.misrouted_acc = mapped && n > router_ok ? (double)misrouted_correct / (n - router_ok) : -1;
        r->moe.experts_per_item = items ? (double)kept / (double)items : 0;
        for (int e = 0; e < E; e++)
            r->moe.expert_acc[e] = r->moe.expert_images[e] ? (double)expert_correct[e] / r->moe.expert_images[e] : -1;
        free(expert_correct);
    }
    r->top1 = n ? (double)top1 / n : 0;
    r->top5 = n ? (double)top5 / n : 0;
    r->loss = n ? loss / n : 0;
    for (int k = 0; k < K; k++) {
        int64_t row = 0;
        for (int j = 0; j < K; j++) row += r->confusion[(size_t)k * K + j];
        r->per_class[k] = row ? (double)r->confusion[(size_t)k * K + k] / row : 0;
    }
    return MVMOE_OK;
}

double mvmoe_eval_flops(const mvmoe_config *c, const mvmoe_eval_result *r) {
    if (r->moe.experts <= 0) return mvmoe_config_flops(c);
    /* the expert MLPs are linear in k, so f(k) = f(1) + (k - 1)·(f(2) - f(1)); equals
     * mvmoe_config_flops when every choice ran */
    mvmoe_config one = *c, two = *c;
    one.top_k = 1;
    two.top_k = 2;
    double f1 = mvmoe_config_flops(&one);
    return f1 + (r->moe.experts_per_item - 1) * (mvmoe_config_flops(&two) - f1);
}
