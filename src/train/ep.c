/* The expert-parallel training step (ep.h). An image's record travels whole: there, its
 * global position (for its drop-path masks), its k experts and gates, targets (the smoothed
 * label) and MoE input [T, D]; back, its logits, k gate gradients and d(MoE input) [T, D].
 * Records go in local order per destination rank, so a rank receives its images in global
 * order (the ranks' shares are consecutive): its experts see their images in the order one
 * process would. Top-k > 1: the choices after the first whose expert lives on another rank
 * run there, block by block (the hooks remote_forward and remote_backward below). */
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
    free(ep->plan_expert);
    free(ep->out_item);
    free(ep->out_choice);
    free(ep->out_count);
    free(ep->in_count);
    free(ep->xs_cnt);
    free(ep->xs_dsp);
    free(ep->xr_cnt);
    free(ep->xr_dsp);
    free(ep->has_out);
    free(ep->in_expert);
    free(ep->ones);
    free(ep->in_imem);
    free(ep->in_plan.gate);
    free(ep->in_xg);
    free(ep->in_h);
    free(ep->in_hg);
    free(ep->in_y);
    free(ep->in_sd);
    free(ep->in_sh);
    free(ep->in_shg);
    free(ep->in_dgate);
    free(ep->out_y);
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

int mvmoe_ep_out_choices(const int *expert, int n, int k, int per_rank, int rank, int ranks, int *count, int *item,
                         int *choice) {
    int total = 0;
    for (int r = 0; r < ranks; r++) count[r] = 0;
    for (int r = 0; r < ranks; r++) {
        if (r == rank) continue;
        for (int i = 0; i < n; i++)
            for (int q = 1; q < k; q++)
                if (expert[(size_t)i * k + q] / per_rank == r) item[total] = i, choice[total] = q, total++, count[r]++;
    }
    return total;
}

static void remote_forward(void *ctx, const mvmoe_moe_site *s);
static void remote_backward(void *ctx, const mvmoe_moe_site *s);

/* Top-k > 1: the buffers of the choices that run on other ranks (ep.h) and the hooks. */
static mvmoe_status remote_init(mvmoe_ep *ep, const mvmoe_config *c) {
    const int N = ep->ranks, T = mvmoe_config_tokens(c), D = c->dim, H = c->mlp_dim, E = c->experts;
    const size_t nx = (size_t)ep->Bg * (ep->k - 1), L = (size_t)c->moe_layers;
    ep->x_rd = nx * T * D, ep->x_rh = nx * T * H;
    MVMOE_ALLOC(ep->out_item, nx, "expert parallel: other choices");
    MVMOE_ALLOC(ep->out_choice, nx, "expert parallel: other choices");
    MVMOE_ALLOC(ep->in_expert, nx, "expert parallel: other choices");
    MVMOE_ALLOC(ep->ones, nx, "expert parallel: other choices");
    MVMOE_ALLOC(ep->in_dgate, nx, "expert parallel: other choices");
    MVMOE_ALLOC(ep->has_out, ep->Bg, "expert parallel: other choices");
    MVMOE_ALLOC(ep->out_count, N, "expert parallel: counts");
    MVMOE_ALLOC(ep->in_count, N, "expert parallel: counts");
    MVMOE_ALLOC(ep->xs_cnt, N, "expert parallel: counts");
    MVMOE_ALLOC(ep->xs_dsp, N, "expert parallel: counts");
    MVMOE_ALLOC(ep->xr_cnt, N, "expert parallel: counts");
    MVMOE_ALLOC(ep->xr_dsp, N, "expert parallel: counts");
    /* the in plan's arrays: expert, pos, src [nx] each and start [E + 1]; gate is ones */
    MVMOE_ALLOC(ep->in_imem, 3 * nx + (size_t)E + 1, "expert parallel: the other choices' plan");
    ep->in_plan.expert = ep->in_imem, ep->in_plan.pos = ep->in_imem + nx, ep->in_plan.src = ep->in_imem + 2 * nx;
    ep->in_plan.start = ep->in_imem + 3 * nx;
    MVMOE_ALLOC(ep->in_plan.gate, nx, "expert parallel: the other choices' plan");
    for (size_t i = 0; i < nx; i++) ep->ones[i] = 1.0f;
    MVMOE_ALLOC_ALIGNED(ep->in_xg, L * ep->x_rd, "expert parallel: the other ranks' choices' expert inputs");
    MVMOE_ALLOC_ALIGNED(ep->in_y, L * ep->x_rd, "expert parallel: the other ranks' choices' expert outputs");
    MVMOE_ALLOC_ALIGNED(ep->in_h, L * ep->x_rh, "expert parallel: the other ranks' choices' fc1 outputs");
    MVMOE_ALLOC_ALIGNED(ep->in_hg, L * ep->x_rh, "expert parallel: the other ranks' choices' GELU outputs");
    MVMOE_ALLOC_ALIGNED(ep->in_sd, ep->x_rd, "expert parallel: backward scratch");
    MVMOE_ALLOC_ALIGNED(ep->in_sh, ep->x_rh, "expert parallel: backward scratch");
    MVMOE_ALLOC_ALIGNED(ep->in_shg, ep->x_rh, "expert parallel: backward scratch");
    MVMOE_ALLOC_ALIGNED(ep->out_y, L * ep->x_rd, "expert parallel: the other choices' expert outputs");
    ep->D = D, ep->H = H;
    ep->remote.ctx = ep, ep->remote.forward = remote_forward, ep->remote.backward = remote_backward;
    ep->back.remote = &ep->remote;
    return MVMOE_OK;
}

mvmoe_status mvmoe_ep_init(mvmoe_ep *ep, const mvmoe_model *m, int Bg, int off, int Bl) {
    const mvmoe_config *c = &m->cfg;
    memset(ep, 0, sizeof *ep);
    ep->ranks = mvmoe_dist_size(), ep->rank = mvmoe_dist_rank();
    MVMOE_TRY(mvmoe_ep_check(c, ep->ranks));
    if (m->adaptive_k > 0)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "--expert-parallel with adaptive k (%g): an image's later choices "
                   "would run only where its router is unsure, which the exchanges of the other ranks' "
                   "choices do not know in advance; train without adaptive k", (double)m->adaptive_k);
    ep->per_rank = c->experts / ep->ranks;
    ep->Bg = Bg, ep->Bl = Bl, ep->off = off, ep->k = c->top_k;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes, k = c->top_k;
    ep->rec_fwd = 1 + 2 * k + K + T * D;
    ep->rec_bwd = K + k + T * D;
    int rec = ep->rec_fwd > ep->rec_bwd ? ep->rec_fwd : ep->rec_bwd;
    if ((k - 1) * T * D > rec) rec = (k - 1) * T * D; /* a block's exchange of the other choices */
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
    MVMOE_ALLOC(ep->expert, (size_t)Bg * k, "expert parallel: experts");
    MVMOE_ALLOC(ep->gate, (size_t)Bg * k, "expert parallel: gates");
    MVMOE_ALLOC(ep->plan_expert, (size_t)Bg * k, "expert parallel: experts");
    if (k > 1) MVMOE_TRY(remote_init(ep, c));
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

/* Counts in choices to counts and displacements in floats of `rec` floats each: the exchange
 * of one MoE block (out: the choices sent, in: received). */
static void block_counts(mvmoe_ep *ep, int rec) {
    for (int r = 0; r < ep->ranks; r++) ep->xs_cnt[r] = ep->out_count[r], ep->xr_cnt[r] = ep->in_count[r];
    to_floats(ep->xs_cnt, ep->xs_dsp, ep->ranks, rec);
    to_floats(ep->xr_cnt, ep->xr_dsp, ep->ranks, rec);
}

/* Top-k > 1, once a step after the dispatch: which choices of the received images go where,
 * and which experts the other ranks' choices sent here need (one all-to-all of the counts and
 * one of the experts; every MoE block then exchanges rows in this order). */
static mvmoe_status remote_setup(mvmoe_ep *ep, const mvmoe_config *c) {
    const int k = ep->k, N = ep->ranks;
    ep->n_out = mvmoe_ep_out_choices(ep->expert, ep->Bm, k, ep->per_rank, ep->rank, N, ep->out_count, ep->out_item,
                                     ep->out_choice);
    memset(ep->has_out, 0, (size_t)ep->Bg);
    for (int p = 0; p < ep->n_out; p++) {
        ep->has_out[ep->out_item[p]] = 1;
        ep->send[p] = (float)ep->expert[(size_t)ep->out_item[p] * k + ep->out_choice[p]];
    }
    MVMOE_TRY(mvmoe_dist_alltoall_int(ep->out_count, ep->in_count));
    ep->n_in = 0;
    const int most = ep->Bg * (k - 1);
    for (int r = 0; r < N; r++) {
        if (ep->in_count[r] < 0 || ep->in_count[r] > most - ep->n_in)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: expert parallel: rank %d announces %d choices for this rank's "
                       "experts, more than a batch of %d holds; the ranks disagree (every host must run the same "
                       "mvmoe build)", ep->rank, r, ep->in_count[r], ep->Bg);
        ep->n_in += ep->in_count[r];
    }
    block_counts(ep, 1);
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->xs_cnt, ep->xs_dsp, ep->recv, ep->xr_cnt, ep->xr_dsp));
    for (int i = 0; i < ep->n_in; i++) {
        ep->in_expert[i] = (int)ep->recv[i];
        if (ep->in_expert[i] < 0 || ep->in_expert[i] / ep->per_rank != ep->rank || ep->in_expert[i] >= c->experts)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: expert parallel: received a choice of expert %d, not this rank's; "
                       "the ranks disagree (every host must run the same mvmoe build)", ep->rank, ep->in_expert[i]);
    }
    mvmoe_plan_from_choices(&ep->in_plan, ep->in_expert, ep->ones, ep->n_in, 1, c->experts, 1);
    return MVMOE_OK;
}

/* A MoE block's forward for the choices that run elsewhere (model.h, mvmoe_moe_site): the
 * out choices' norm2 rows to their experts' ranks; the in choices through this rank's
 * experts (their rows saved for the backward) and their outputs back; then, per image here,
 * branch += gate·expert(rows) in choice order after the choices run here (one process's
 * order for k = 2) and the block's residual again. */
static mvmoe_status remote_forward_do(mvmoe_ep *ep, const mvmoe_moe_site *s) {
    const int R = s->rows, D = ep->D, k = ep->k;
    const size_t RD = (size_t)R * D;
    if (s->B != 0 && s->B != ep->Bm)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "expert parallel: MoE block %d ran %d images, not the %d received", s->lm, s->B,
                   ep->Bm);
    for (int p = 0; p < ep->n_out; p++) memcpy(ep->send + p * RD, s->ln2 + ep->out_item[p] * RD, sizeof(float) * RD);
    block_counts(ep, (int)RD);
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->xs_cnt, ep->xs_dsp, ep->recv, ep->xr_cnt, ep->xr_dsp));
    if (ep->n_in > 0) {
        const size_t o = (size_t)s->lm * ep->x_rd, oh = (size_t)s->lm * ep->x_rh;
        ep->in_plan.rows = R;
        /* gate 1: what goes back is the expert's output itself */
        mvmoe_moe_forward(ep->send, ep->in_xg + o, ep->in_h + oh, ep->in_hg + oh, ep->in_y + o, ep->recv, &s->w,
                          &ep->in_plan, D, ep->H);
    }
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->xr_cnt, ep->xr_dsp, ep->recv, ep->xs_cnt, ep->xs_dsp));
    float *y = ep->out_y + (size_t)s->lm * ep->x_rd;
    memcpy(y, ep->recv, sizeof(float) * ep->n_out * RD);
    for (int p = 0; p < ep->n_out; p++) {
        const int i = ep->out_item[p];
        const float g = ep->gate[(size_t)i * k + ep->out_choice[p]], *yp = y + p * RD;
        float *br = s->branch + i * RD;
        for (size_t x = 0; x < RD; x++) br[x] += g * yp[x];
    }
    for (int i = 0; i < s->B; i++)
        if (ep->has_out[i])
            mvmoe_residual_add(s->out + i * RD, s->res1 + i * RD, s->branch + i * RD, NULL, s->keep, R, i * R, R, D);
    return MVMOE_OK;
}

/* Its backward: the out choices' gated d(branch) rows to their experts' ranks (and their gate
 * gradients here, from the outputs kept in the forward); the in choices' backward through
 * this rank's experts (their weight gradients stay here) and their input gradients back,
 * added to d(norm2) of their images after the choices run here. */
static mvmoe_status remote_backward_do(mvmoe_ep *ep, const mvmoe_moe_site *s) {
    const int R = s->rows, D = ep->D, k = ep->k;
    const size_t RD = (size_t)R * D;
    const float *y = ep->out_y + (size_t)s->lm * ep->x_rd;
    for (int p = 0; p < ep->n_out; p++) {
        const int i = ep->out_item[p];
        const size_t ik = (size_t)i * k + ep->out_choice[p];
        const float g = ep->gate[ik], *d = s->dbr + i * RD, *yp = y + p * RD;
        float *dy = ep->send + p * RD;
        double dot = 0;
        for (size_t x = 0; x < RD; x++) {
            dot += (double)d[x] * yp[x];
            dy[x] = g * d[x];
        }
        s->d_gates[ik] += (float)dot;
    }
    block_counts(ep, (int)RD);
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->xs_cnt, ep->xs_dsp, ep->recv, ep->xr_cnt, ep->xr_dsp));
    if (ep->n_in > 0) {
        const size_t o = (size_t)s->lm * ep->x_rd, oh = (size_t)s->lm * ep->x_rh;
        ep->in_plan.rows = R;
        mvmoe_zero(ep->send, ep->n_in * RD);
        memset(ep->in_dgate, 0, sizeof(float) * ep->n_in);
        mvmoe_moe_backward(ep->send, ep->in_dgate, &s->g, ep->in_sd, ep->in_sh, ep->in_shg, ep->recv, ep->in_xg + o,
                           ep->in_h + oh, ep->in_hg + oh, ep->in_y + o, &s->w, &ep->in_plan, D, ep->H);
    }
    MVMOE_TRY(mvmoe_dist_alltoallv_f32(ep->send, ep->xr_cnt, ep->xr_dsp, ep->recv, ep->xs_cnt, ep->xs_dsp));
    for (int p = 0; p < ep->n_out; p++) {
        float *dl = s->d_ln + ep->out_item[p] * RD;
        const float *dx = ep->recv + p * RD;
        for (size_t x = 0; x < RD; x++) dl[x] += dx[x];
    }
    return MVMOE_OK;
}

/* The hooks (model.h): a failure is kept for the step to return; the blocks after it skip
 * their exchanges (the other ranks then wait until the failing rank's job is aborted). */
static void remote_forward(void *ctx, const mvmoe_moe_site *s) {
    mvmoe_ep *ep = ctx;
    if (ep->hook_status == MVMOE_OK) ep->hook_status = remote_forward_do(ep, s);
}

static void remote_backward(void *ctx, const mvmoe_moe_site *s) {
    mvmoe_ep *ep = ctx;
    if (ep->hook_status == MVMOE_OK) ep->hook_status = remote_backward_do(ep, s);
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
    const int k = ep->k, h = 1 + 2 * k; /* the record's header: position, experts, gates */
    for (int r = 0; r < N; r++) ep->scount[r] = 0;
    for (int i = 0; i < ep->Bl; i++) ep->scount[plan->expert[(size_t)i * k] / ep->per_rank]++;
    int n = 0;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < ep->Bl; i++)
            if (plan->expert[(size_t)i * k] / ep->per_rank == r) ep->order[n++] = i;
    for (int j = 0; j < ep->Bl; j++) {
        const int i = ep->order[j];
        float *rec = ep->send + (size_t)j * ep->rec_fwd;
        rec[0] = (float)(ep->off + i); /* exact: batches are at most 65536 */
        for (int q = 0; q < k; q++) {
            rec[1 + q] = (float)plan->expert[(size_t)i * k + q];
            rec[1 + k + q] = plan->gate[(size_t)i * k + q];
        }
        memcpy(rec + h, a->targets + (size_t)i * K, sizeof(float) * K);
        memcpy(rec + h + K, x + (size_t)i * TD, sizeof(float) * TD);
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
        int *e = ep->expert + (size_t)j * k, bad = pos < 0 || pos >= ep->Bg;
        for (int q = 0; q < k; q++) {
            e[q] = (int)rec[1 + q];
            ep->gate[(size_t)j * k + q] = rec[1 + k + q];
            bad |= e[q] < 0 || e[q] >= c->experts;
            /* the back half's plan runs the choices whose expert lives here; the others run
             * on their experts' ranks (remote_forward) */
            ep->plan_expert[(size_t)j * k + q] = e[q] / ep->per_rank == ep->rank ? e[q] : -1;
        }
        if (bad || e[0] / ep->per_rank != ep->rank)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: expert parallel: received image %d (position %d, expert %d) "
                       "that is not this rank's; the ranks disagree (every host must run the same mvmoe build)",
                       ep->rank, j, pos, e[0]);
        memcpy(b->targets + (size_t)j * K, rec + h, sizeof(float) * K);
        memcpy(xb + (size_t)j * TD, rec + h + K, sizeof(float) * TD);
        /* the image's drop-path masks are those of its global position */
        for (int l = 0; l < c->depth; l++)
            for (int br = 0; br < 2; br++)
                b->keep[(size_t)l * 2 * Bm + (size_t)br * Bm + j] =
                    ep->keep_g[(size_t)l * 2 * ep->Bg + (size_t)br * ep->Bg + pos];
    }
    mvmoe_plan_from_choices(&b->plans[0], ep->plan_expert, ep->gate, Bm, k, c->experts, T);
    return k > 1 ? remote_setup(ep, c) : MVMOE_OK;
}

/* The backward exchange: each received image's logits, gate gradient and d(MoE input) back
 * to its home rank, into m->train_acts (logits, d_gates, d_res). */
static mvmoe_status combine(mvmoe_model *m, mvmoe_ep *ep) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_acts *a = &m->train_acts, *b = &ep->back;
    const int T = mvmoe_config_tokens(c), D = c->dim, K = c->num_classes, N = ep->ranks, k = ep->k;
    const size_t TD = (size_t)T * D;
    for (int j = 0; j < ep->Bm; j++) {
        float *rec = ep->send + (size_t)j * ep->rec_bwd;
        memcpy(rec, b->logits + (size_t)j * K, sizeof(float) * K);
        memcpy(rec + K, b->d_gates + (size_t)j * k, sizeof(float) * k);
        memcpy(rec + K + k, b->d_res + (size_t)j * TD, sizeof(float) * TD);
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
        memcpy(a->d_gates + (size_t)i * k, rec + K, sizeof(float) * k);
        memcpy(a->d_res + (size_t)i * TD, rec + K + k, sizeof(float) * TD);
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
    /* top-k > 1: a rank without images still runs the other ranks' choices on its experts */
    ep->hook_status = MVMOE_OK;
    if (ep->Bm > 0 || b->remote) mvmoe_vit_forward_back(m, b, ep->Bm, &back);
    MVMOE_TRY(ep->hook_status);
    if (ep->Bm > 0)
        l[1] = mvmoe_softmax_ce_forward(b->losses, b->probs, b->logits, b->targets, ep->Bm, m->cfg.num_classes) *
               ep->Bm / ep->Bg;
    const double t2 = mvmoe_clock_seconds();
    mvmoe_zero(m->grad_mem, m->layout.total);
    /* every gradient is a sum over images / Bg: summed over the ranks, the global mean's */
    if (ep->Bm > 0 || b->remote) mvmoe_vit_backward_back(m, b, ep->Bm, 1.0f / (float)ep->Bg);
    MVMOE_TRY(ep->hook_status);
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
