/* The expert-parallel training step (ep.h). An image's record travels whole: there, its
 * global position (for its drop-path masks), expert, gate, targets (the smoothed label) and MoE
 * input [T, D]; back, its logits, gate gradient and d(MoE input) [T, D]. Records go in local
 * order per destination rank, so a rank receives its images in global order (the ranks'
 * shares are consecutive): its experts see their images in the order one process would. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/kernels.h"
#include "kernels/loss.h"
#include "train/dist.h"
#include "train/ep.h"

mvmoe_status mvmoe_ep_check(const mvmoe_config *c, int ranks) {
    if (c->routing != MVMOE_ROUTING_IMAGE_SUPERCLASS && c->routing != MVMOE_ROUTING_IMAGE_LEARNED)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "--expert-parallel moves each image to its experts' rank, which "
                   "needs one router per image (image-superclass or image-learned routing); this model's "
                   "routing is %s: train it data parallel (without --expert-parallel)",
                   mvmoe_routing_name(c->routing));
    if (c->top_k != 1)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "--expert-parallel supports top-1 routing only; this model has "
                   "top-%d: with two experts per image their outputs meet at every MoE layer, an exchange "
                   "not built yet (docs/SCALING.md, 'Top-2'); train it data parallel, or with --top-k 1",
                   c->top_k);
    if (c->experts % ranks != 0)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "--expert-parallel: the %d experts do not split evenly over %d ranks; "
                   "run a number of ranks that divides %d (mpirun -np N), or train data parallel "
                   "(without --expert-parallel)", c->experts, ranks, c->experts);
    return MVMOE_OK;
}

void mvmoe_ep_free(mvmoe_ep *ep) {
    mvmoe_acts_free(&ep->back);
    free(ep->keep_g);
    free(ep->send);
    free(ep->recv);
    free(ep->scount);
    free(ep->sdispl);
    free(ep->rcount);
    free(ep->rdispl);
    free(ep->order);
    free(ep->expert);
    free(ep->gate);
    free(ep->xt_off);
    free(ep->xt_cnt);
    free(ep->xt_owner);
    free(ep->update);
    free(ep->shared_off);
    free(ep->shared_cnt);
    free(ep->xm_off);
    free(ep->xm_cnt);
    memset(ep, 0, sizeof *ep);
}

static int by_offset(const void *x, const void *y) {
    const size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return a < b ? -1 : a > b;
}

/* The expert tensors (by their contract names, blocks.B.mlp.experts.E.*), their owners, their
 * contiguous runs, and the shared ranges between them. */
static mvmoe_status expert_ranges(mvmoe_ep *ep, const mvmoe_layout *L) {
    MVMOE_ALLOC(ep->xt_off, L->n, "expert parallel: expert tensors");
    MVMOE_ALLOC(ep->xt_cnt, L->n, "expert parallel: expert tensors");
    MVMOE_ALLOC(ep->xt_owner, L->n, "expert parallel: expert tensors");
    MVMOE_ALLOC(ep->update, L->n, "expert parallel: expert tensors");
    size_t *iv;
    MVMOE_ALLOC(iv, 2 * (size_t)L->n, "expert parallel: expert tensors");
    for (int i = 0; i < L->n; i++) {
        int blk, e;
        ep->update[i] = 1;
        if (sscanf(L->t[i].name, "blocks.%d.mlp.experts.%d.", &blk, &e) != 2) continue;
        ep->update[i] = e / ep->per_rank == ep->rank;
        ep->xt_off[ep->n_xt] = L->t[i].offset, ep->xt_cnt[ep->n_xt] = L->t[i].count;
        ep->xt_owner[ep->n_xt] = e / ep->per_rank;
        iv[2 * ep->n_xt] = L->t[i].offset, iv[2 * ep->n_xt + 1] = L->t[i].count;
        ep->n_xt++;
    }
    qsort(iv, (size_t)ep->n_xt, 2 * sizeof *iv, by_offset);
    /* at most n_xt runs, and n_xt + 1 gaps around them */
    ep->xm_off = calloc((size_t)ep->n_xt + 1, sizeof *ep->xm_off);
    ep->xm_cnt = calloc((size_t)ep->n_xt + 1, sizeof *ep->xm_cnt);
    ep->shared_off = calloc((size_t)ep->n_xt + 1, sizeof *ep->shared_off);
    ep->shared_cnt = calloc((size_t)ep->n_xt + 1, sizeof *ep->shared_cnt);
    if (!ep->xm_off || !ep->xm_cnt || !ep->shared_off || !ep->shared_cnt) {
        free(iv);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "expert parallel: %d expert tensors' ranges", ep->n_xt);
    }
    for (int i = 0; i < ep->n_xt; i++) {
        const size_t o = iv[2 * i], n = iv[2 * i + 1];
        if (ep->n_xmerged > 0 && ep->xm_off[ep->n_xmerged - 1] + ep->xm_cnt[ep->n_xmerged - 1] == o)
            ep->xm_cnt[ep->n_xmerged - 1] += n;
        else
            ep->xm_off[ep->n_xmerged] = o, ep->xm_cnt[ep->n_xmerged++] = n;
    }
    free(iv);
    size_t at = 0;
    for (int i = 0; i <= ep->n_xmerged; i++) {
        const size_t end = i < ep->n_xmerged ? ep->xm_off[i] : L->total;
        if (end > at) ep->shared_off[ep->n_shared] = at, ep->shared_cnt[ep->n_shared++] = end - at;
        if (i < ep->n_xmerged) at = ep->xm_off[i] + ep->xm_cnt[i];
    }
    return MVMOE_OK;
}

mvmoe_status mvmoe_ep_sync(mvmoe_model *m, const mvmoe_ep *ep) {
    if (ep->ranks <= 1) return MVMOE_OK;
    float *arrays[4] = {m->param_mem, m->adam_m, m->adam_v, m->ema_mem};
    /* the owner's values plus zeros from every other rank: the owner's bits everywhere */
    for (int a = 0; a < 4; a++) {
        if (!arrays[a]) continue;
        for (int i = 0; i < ep->n_xt; i++)
            if (ep->xt_owner[i] != ep->rank) memset(arrays[a] + ep->xt_off[i], 0, sizeof(float) * ep->xt_cnt[i]);
        for (int i = 0; i < ep->n_xmerged; i++)
            MVMOE_TRY(mvmoe_dist_allreduce_sum_f32(arrays[a] + ep->xm_off[i], ep->xm_cnt[i]));
    }
    mvmoe_model_params_changed(m);
    return MVMOE_OK;
}

static double sum_squares(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

mvmoe_status mvmoe_ep_init(mvmoe_ep *ep, const mvmoe_model *m, int Bg, int off, int Bl) {
    const mvmoe_config *c = &m->cfg;
    memset(ep, 0, sizeof *ep);
    ep->ranks = mvmoe_dist_size(), ep->rank = mvmoe_dist_rank();
    MVMOE_TRY(mvmoe_ep_check(c, ep->ranks));
    ep->per_rank = c->experts / ep->ranks;
    ep->Bg = Bg, ep->Bl = Bl, ep->off = off;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes;
    ep->rec_fwd = 3 + K + T * D;
    ep->rec_bwd = K + 1 + T * D;
    const int rec = ep->rec_fwd > ep->rec_bwd ? ep->rec_fwd : ep->rec_bwd;
    if ((double)rec * Bg > INT_MAX)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "--expert-parallel: a batch of %d images of %d floats each is beyond "
                   "MPI's int counts; use a smaller --batch", Bg, rec);
    /* the back half may receive the whole batch (every image routed to this rank's experts) */
    MVMOE_TRY(mvmoe_acts_init(&ep->back, c, Bg, 1));
    MVMOE_ALLOC_ALIGNED(ep->keep_g, (size_t)c->depth * 2 * Bg, "expert parallel: drop-path masks");
    MVMOE_ALLOC_ALIGNED(ep->send, (size_t)rec * Bg, "expert parallel: send buffer");
    MVMOE_ALLOC_ALIGNED(ep->recv, (size_t)rec * Bg, "expert parallel: receive buffer");
    MVMOE_ALLOC(ep->scount, ep->ranks, "expert parallel: counts");
    MVMOE_ALLOC(ep->sdispl, ep->ranks, "expert parallel: counts");
    MVMOE_ALLOC(ep->rcount, ep->ranks, "expert parallel: counts");
    MVMOE_ALLOC(ep->rdispl, ep->ranks, "expert parallel: counts");
    MVMOE_ALLOC(ep->order, Bl, "expert parallel: send order");
    MVMOE_ALLOC(ep->expert, Bg, "expert parallel: experts");
    MVMOE_ALLOC(ep->gate, Bg, "expert parallel: gates");
    return expert_ranges(ep, &m->layout);
}

/* Counts (in images) to counts and displacements in floats of rec-float records. */
static void to_floats(int *count, int *displ, int n, int rec) {
    int acc = 0;
    for (int r = 0; r < n; r++) {
        displ[r] = acc * rec;
        acc += count[r];
        count[r] *= rec;
    }
}

/* The forward exchange: this share's images to their experts' ranks; fills the back half's
 * MoE input, targets, masks and plan with what this rank received (ep->Bm images). */
static mvmoe_status dispatch(mvmoe_model *m, mvmoe_ep *ep) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_acts *a = &m->train_acts, *b = &ep->back;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes, N = ep->ranks;
    const size_t TD = (size_t)T * D;
    const mvmoe_plan *plan = &a->plans[0];
    const float *x = mvmoe_vit_moe_input(m, a);
    /* records by destination rank, local order within each */
    for (int r = 0; r < N; r++) ep->scount[r] = 0;
    for (int i = 0; i < ep->Bl; i++) ep->scount[plan->expert[i] / ep->per_rank]++;
    int n = 0;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < ep->Bl; i++)
            if (plan->expert[i] / ep->per_rank == r) ep->order[n++] = i;
    for (int j = 0; j < ep->Bl; j++) {
        const int i = ep->order[j];
        float *rec = ep->send + (size_t)j * ep->rec_fwd;
        rec[0] = (float)(ep->off + i); /* exact: batches are at most 65536 */
        rec[1] = (float)plan->expert[i];
        rec[2] = plan->gate[i];
        memcpy(rec + 3, a->targets + (size_t)i * K, sizeof(float) * K);
        memcpy(rec + 3 + K, x + (size_t)i * TD, sizeof(float) * TD);
    }
    MVMOE_TRY(mvmoe_dist_alltoall_int(ep->scount, ep->rcount));
    ep->Bm = 0;
    for (int r = 0; r < N; r++) {
        if (ep->rcount[r] < 0 || ep->rcount[r] > ep->Bg - ep->Bm)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: expert parallel: rank %d announces %d images, more than the "
                       "batch of %d holds; the ranks disagree (every host must run the same mvmoe build)",
                       ep->rank, r, ep->rcount[r], ep->Bg);
        ep->Bm += ep->rcount[r];
    }
    to_floats(ep->scount, ep->sdispl, N, ep->rec_fwd);
    to_floats(ep->rcount, ep->rdispl, N, ep->rec_fwd);
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->scount, ep->sdispl, ep->recv, ep->rcount, ep->rdispl));
    const int Bm = ep->Bm;
    float *xb = mvmoe_vit_moe_input(m, b);
    for (int j = 0; j < Bm; j++) {
        const float *rec = ep->recv + (size_t)j * ep->rec_fwd;
        const int pos = (int)rec[0];
        ep->expert[j] = (int)rec[1];
        if (pos < 0 || pos >= ep->Bg || ep->expert[j] < 0 || ep->expert[j] / ep->per_rank != ep->rank)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: expert parallel: received image %d (position %d, expert %d) "
                       "that is not this rank's; the ranks disagree (every host must run the same mvmoe build)",
                       ep->rank, j, pos, ep->expert[j]);
        ep->gate[j] = rec[2];
        memcpy(b->targets + (size_t)j * K, rec + 3, sizeof(float) * K);
        memcpy(xb + (size_t)j * TD, rec + 3 + K, sizeof(float) * TD);
        /* the image's drop-path masks are those of its global position */
        for (int l = 0; l < c->depth; l++)
            for (int br = 0; br < 2; br++)
                b->keep[(size_t)l * 2 * Bm + (size_t)br * Bm + j] =
                    ep->keep_g[(size_t)l * 2 * ep->Bg + (size_t)br * ep->Bg + pos];
    }
    mvmoe_plan_from_choices(&b->plans[0], ep->expert, ep->gate, Bm, 1, c->experts, T);
    return MVMOE_OK;
}

/* The backward exchange: each received image's logits, gate gradient and d(MoE input) back
 * to its home rank, into m->train_acts (logits, d_gates, d_res). */
static mvmoe_status combine(mvmoe_model *m, mvmoe_ep *ep) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_acts *a = &m->train_acts, *b = &ep->back;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes, N = ep->ranks;
    const size_t TD = (size_t)T * D;
    for (int j = 0; j < ep->Bm; j++) {
        float *rec = ep->send + (size_t)j * ep->rec_bwd;
        memcpy(rec, b->logits + (size_t)j * K, sizeof(float) * K);
        rec[K] = b->d_gates[j];
        memcpy(rec + K + 1, b->d_res + (size_t)j * TD, sizeof(float) * TD);
    }
    /* the reverse of dispatch: what came from rank r goes back to it */
    for (int r = 0; r < N; r++) {
        const int got = ep->rcount[r] / ep->rec_fwd, sent = ep->scount[r] / ep->rec_fwd;
        ep->rcount[r] = got, ep->scount[r] = sent;
    }
    to_floats(ep->rcount, ep->rdispl, N, ep->rec_bwd); /* now the send side */
    to_floats(ep->scount, ep->sdispl, N, ep->rec_bwd); /* now the receive side */
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->rcount, ep->rdispl, ep->recv, ep->scount, ep->sdispl));
    for (int j = 0; j < ep->Bl; j++) {
        const int i = ep->order[j];
        const float *rec = ep->recv + (size_t)j * ep->rec_bwd;
        memcpy(a->logits + (size_t)i * K, rec, sizeof(float) * K);
        a->d_gates[i] = rec[K];
        memcpy(a->d_res + (size_t)i * TD, rec + K + 1, sizeof(float) * TD);
    }
    return MVMOE_OK;
}

mvmoe_status mvmoe_train_step_ep(mvmoe_model *m, mvmoe_ep *ep, const int32_t *labels, const mvmoe_step_options *o,
                                 mvmoe_step_result *r) {
    mvmoe_acts *a = &m->train_acts;
    if (!m->grad_mem || !a->mem || !ep->back.mem || a->B != ep->Bl)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "expert-parallel step before mvmoe_model_train_init / mvmoe_ep_init");
    mvmoe_pass pass = o->pass;
    pass.step = m->step;
    pass.batch_offset = ep->off, pass.batch_global = ep->Bg;
    const double t0 = mvmoe_clock_seconds();
    MVMOE_TRY(mvmoe_model_pack_weights(m));
    const double t1 = mvmoe_clock_seconds();
    /* front: this share's dense blocks and router; the router loss at home, weighted so that
     * the ranks' parts sum to the global batch's mean */
    mvmoe_vit_forward_front(m, a, ep->Bl, &pass);
    const float share = (float)ep->Bl / (float)ep->Bg;
    mvmoe_vit_loss_router(m, a, ep->Bl, labels, &pass, share);
    double l[4] = {0, 0, a->loss_router, a->loss_aux};
    /* back: the images routed to this rank's experts, in global order */
    mvmoe_vit_drop_path_masks(ep->keep_g, &m->cfg, ep->Bg, &pass);
    MVMOE_TRY(dispatch(m, ep));
    mvmoe_pass back = pass;
    back.keep_given = 1;
    mvmoe_acts *b = &ep->back;
    if (ep->Bm > 0) {
        mvmoe_vit_forward_back(m, b, ep->Bm, &back);
        l[1] = mvmoe_softmax_ce_forward(b->losses, b->probs, b->logits, b->targets, ep->Bm, m->cfg.num_classes) *
               ep->Bm / ep->Bg;
    }
    const double t2 = mvmoe_clock_seconds();
    mvmoe_zero(m->grad_mem, m->layout.total);
    /* every gradient is a sum over images / Bg: summed over the ranks, the global mean's */
    if (ep->Bm > 0) mvmoe_vit_backward_back(m, b, ep->Bm, 1.0f / (float)ep->Bg);
    MVMOE_TRY(combine(m, ep));
    mvmoe_vit_backward_front(m, a, ep->Bl);
    /* the shared weights' gradients are summed over the ranks; an expert's gradient is
     * computed only on its rank and stays there. The clipping norm is the global one: the
     * shared part (the same on every rank) plus every rank's own experts' squares, summed. */
    double norm = -1;
    l[0] = l[1] + l[2] + l[3];
    if (ep->ranks > 1) {
        double own = 0, shared = 0;
        for (int i = 0; i < ep->n_shared; i++)
            MVMOE_TRY(mvmoe_dist_allreduce_sum_f32(m->grad_mem + ep->shared_off[i], ep->shared_cnt[i]));
        for (int i = 0; i < ep->n_xt; i++)
            if (ep->xt_owner[i] == ep->rank) own += sum_squares(m->grad_mem + ep->xt_off[i], ep->xt_cnt[i]);
        for (int i = 0; i < ep->n_shared; i++) shared += sum_squares(m->grad_mem + ep->shared_off[i], ep->shared_cnt[i]);
        double v[5] = {l[0], l[1], l[2], l[3], own};
        MVMOE_TRY(mvmoe_dist_allreduce_sum_f64(v, 5));
        for (int i = 0; i < 4; i++) l[i] = v[i];
        norm = sqrt(shared + v[4]);
    }
    r->loss = l[0], r->loss_ce = l[1], r->loss_router = l[2], r->loss_aux = l[3];
    const double t3 = mvmoe_clock_seconds();
    r->t_pack = t1 - t0, r->t_forward = t2 - t1, r->t_backward = t3 - t2;
    /* AdamW over the shared weights and this rank's experts only: another rank's expert
     * stays as the last mvmoe_ep_sync left it */
    mvmoe_step_options so = *o;
    if (ep->ranks > 1) so.update_tensors = ep->update;
    return mvmoe_train_step_apply(m, &so, r, norm);
}
