/* parity_dump CKPT BATCH OUT [HEADS]: runs our forward/backward/AdamW on a batch and dumps
 * logits, loss, every gradient and the weights after each optimizer step, for
 * tests/parity/test_parity.py to compare against PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "train/optim.h"

static double meta_num(const mvmoe_st_file *f, const char *key) {
    const char *v = mvmoe_st_meta(f, key);
    if (!v) {
        fprintf(stderr, "parity_dump: batch file lacks metadata '%s'\n", key);
        exit(1);
    }
    return atof(v);
}

static void die(const char *what) {
    fprintf(stderr, "parity_dump: %s: %s\n", what, mvmoe_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: parity_dump CKPT BATCH OUT [HEADS]\n");
        return 2;
    }
    mvmoe_load_options lo = {0};
    if (argc > 4) lo.heads = atoi(argv[4]);
    mvmoe_model *m;
    if (mvmoe_model_load(&m, argv[1], &lo)) die("loading checkpoint");
    const mvmoe_config *c = mvmoe_model_config(m);
    mvmoe_st_file bf;
    if (mvmoe_st_open(&bf, argv[2])) die("reading batch");
    const mvmoe_st_tensor *ti = mvmoe_st_find(&bf, "images"), *tl = mvmoe_st_find(&bf, "labels");
    if (!ti || !tl || ti->ndim != 4) {
        fprintf(stderr, "parity_dump: batch needs images [B,C,H,W] and labels [B]\n");
        return 1;
    }
    int B = (int)ti->shape[0], K = c->num_classes, S = c->img_size, C = c->in_chans;
    if (ti->shape[1] != C || ti->shape[2] != S || ti->shape[3] != S) {
        fprintf(stderr, "parity_dump: images shape does not match the model\n");
        return 1;
    }
    float *img = malloc(sizeof(float) * (size_t)B * C * S * S), *lab = malloc(sizeof(float) * B);
    int32_t *labels = malloc(sizeof(int32_t) * B);
    if (!img || !lab || !labels) return 1;
    if (mvmoe_st_read_f32(&bf, ti, img, (size_t)B * C * S * S) || mvmoe_st_read_f32(&bf, tl, lab, B))
        die("reading batch tensors");
    for (int i = 0; i < B; i++) labels[i] = (int32_t)lab[i];
    float smoothing = (float)meta_num(&bf, "label_smoothing");
    mvmoe_adamw h = {.lr = (float)meta_num(&bf, "lr"), .beta1 = (float)meta_num(&bf, "beta1"),
                     .beta2 = (float)meta_num(&bf, "beta2"), .eps = (float)meta_num(&bf, "eps"),
                     .weight_decay = (float)meta_num(&bf, "weight_decay")};
    float clip = (float)meta_num(&bf, "clip_norm");
    /* MoE settings (optional metadata; the trainer's defaults otherwise) */
    mvmoe_train_options d;
    mvmoe_train_options_default(&d);
    mvmoe_pass pass = {.superclass_lambda = d.superclass_lambda, .aux_weight = d.aux_weight,
                       .capacity_ratio = d.capacity_ratio, .route_noise = 1};
    const char *mv;
    if ((mv = mvmoe_st_meta(&bf, "superclass_lambda"))) pass.superclass_lambda = (float)atof(mv);
    if ((mv = mvmoe_st_meta(&bf, "aux_weight"))) pass.aux_weight = (float)atof(mv);
    if ((mv = mvmoe_st_meta(&bf, "capacity_ratio"))) pass.capacity_ratio = (float)atof(mv);
    if ((mv = mvmoe_st_meta(&bf, "route_noise"))) pass.route_noise = atoi(mv);
    int steps = (int)meta_num(&bf, "steps");

    if (mvmoe_model_train_init(m, B)) die("allocating training state");
    mvmoe_acts *a = &m->train_acts;
    const mvmoe_layout *L = &m->layout;
    int n_out = 4 + L->n * (1 + steps);
    float losses[3] = {0};
    float *noise = NULL;
    size_t noise_n = 0;
    mvmoe_st_out *out = calloc((size_t)n_out, sizeof *out);
    char (*names)[96] = calloc((size_t)n_out, sizeof *names);
    float *snap = malloc(sizeof(float) * L->total * (1 + steps));
    float *logits = malloc(sizeof(float) * (size_t)B * K), loss1 = 0;
    if (!out || !names || !snap || !logits) return 1;

    for (int s = 0; s <= steps; s++) {
        /* normalization as in the contract: (v/255 - mean[c]) / std[c] */
        for (size_t k = 0; k < (size_t)B * C * S * S; k++) {
            int ch = (int)((k / ((size_t)S * S)) % C);
            a->img[k] = (img[k] / 255.0f - c->mean[ch]) / c->std[ch];
        }
        mvmoe_targets_smoothed(a->targets, labels, B, K, smoothing);
        /* as the trainer does: the forward's products on packed copies of the step's weights */
        if (mvmoe_model_pack_weights(m) != MVMOE_OK) return 1;
        mvmoe_vit_forward(m, a, B, &pass);
        double loss = mvmoe_vit_loss(m, a, B, labels, &pass);
        if (s == steps) break;
        mvmoe_vit_backward(m, a, B);
        if (s == 0) {
            loss1 = (float)loss;
            losses[0] = (float)a->loss_ce, losses[1] = (float)a->loss_router, losses[2] = (float)a->loss_aux;
            if (c->routing != MVMOE_ROUTING_DENSE) {
                /* the router noise this step used (learned routing), for the reference to reuse */
                noise_n = (size_t)a->n_plans * a->n_route * c->experts;
                noise = malloc(sizeof(float) * noise_n);
                if (!noise) return 1;
                memcpy(noise, a->router_noise, sizeof(float) * noise_n);
            }
            memcpy(logits, a->logits, sizeof(float) * (size_t)B * K);
            memcpy(snap, m->grad_mem, sizeof(float) * L->total);
        }
        mvmoe_clip_grad_norm(m->grad_mem, L, clip);
        m->step++;
        mvmoe_adamw_step(m->param_mem, m->grad_mem, m->adam_m, m->adam_v, L, &h, m->step);
        mvmoe_model_params_changed(m);
        memcpy(snap + L->total * (size_t)(1 + s), m->param_mem, sizeof(float) * L->total);
    }
    int n = 0;
    out[n++] = (mvmoe_st_out){.name = "logits", .ndim = 2, .shape = {B, K}, .data = logits};
    out[n++] = (mvmoe_st_out){.name = "loss", .ndim = 1, .shape = {1}, .data = &loss1};
    /* loss parts: CE, router (super-class) loss, auxiliary (importance + load) losses */
    out[n++] = (mvmoe_st_out){.name = "loss_parts", .ndim = 1, .shape = {3}, .data = losses};
    if (noise)
        out[n++] = (mvmoe_st_out){.name = "route_noise", .ndim = 3,
                                  .shape = {m->train_acts.n_plans, m->train_acts.n_route, c->experts},
                                  .data = noise};
    for (int s = 0; s <= steps; s++)
        for (int i = 0; i < L->n; i++) {
            const mvmoe_tensor_info *t = &L->t[i];
            if (s == 0)
                snprintf(names[n], sizeof names[n], "grad.%s", t->name);
            else
                snprintf(names[n], sizeof names[n], "step%d.%s", s, t->name);
            out[n].name = names[n];
            out[n].ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++) out[n].shape[d] = t->shape[d];
            out[n].data = snap + L->total * (size_t)s + t->offset;
            n++;
        }
    if (mvmoe_st_write(argv[3], out, n, NULL, NULL, 0)) die("writing output");
    mvmoe_st_close(&bf);
    mvmoe_model_free(m);
    free(img), free(lab), free(labels), free(out), free(names), free(snap), free(logits), free(noise);
    return 0;
}
