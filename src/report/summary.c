/* The report's numbers: runs grouped by name (repeats over seeds), mean and sample standard
 * deviation of each measure, the difference to the dense model of the same width (the
 * comparison of the paper's Fig. 1 / Table 1), and the JSON summary. */
#include <cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "report/report.h"

int mvmoe_report_mean_std(const double *v, int n, double *mean, double *std) {
    int c = 0;
    double s = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], c++;
    *mean = c ? s / c : NAN;
    *std = NAN;
    if (c < 2) return c;
    double ss = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) ss += (v[i] - *mean) * (v[i] - *mean);
    *std = sqrt(ss / (c - 1)); /* sample std: n - 1 */
    return c;
}

int mvmoe_report_group_is_dense(const mvmoe_report_group *g) {
    return mvmoe_eval_json_is_dense(g->cfg);
}

void mvmoe_report_stats_free(mvmoe_report_stats *s) {
    for (int i = 0; s->groups && i < s->n_groups; i++) {
        mvmoe_report_group *g = &s->groups[i];
        free(g->members);
        free(g->share_mean);
        free(g->share_std);
        free(g->acc_mean);
        free(g->acc_std);
    }
    free(s->groups);
    memset(s, 0, sizeof *s);
}

/* Repeats of one model must be one model: the fields that place a run in the table agree. */
static mvmoe_status check_same(const mvmoe_report_group *g, const mvmoe_eval_json *a,
                               const mvmoe_eval_json *b) {
    const char *what = NULL;
    char va[48], vb[48];
    if (a->has_config && b->has_config) {
        if (strcmp(a->routing, b->routing) != 0) {
            what = "routing";
            snprintf(va, sizeof va, "%s", a->routing);
            snprintf(vb, sizeof vb, "%s", b->routing);
        }
#define SAME(f)                                    \
    else if (a->f != b->f) {                       \
        what = #f;                                 \
        snprintf(va, sizeof va, "%d", a->f);       \
        snprintf(vb, sizeof vb, "%d", b->f);       \
    }
        SAME(dim) SAME(depth) SAME(experts) SAME(top_k) SAME(moe_layers) SAME(patch) SAME(img_size)
#undef SAME
    }
    if (!what && a->moe_experts && b->moe_experts && a->moe_experts != b->moe_experts) {
        what = "moe.experts";
        snprintf(va, sizeof va, "%d", a->moe_experts);
        snprintf(vb, sizeof vb, "%d", b->moe_experts);
    }
    if (what)
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "the runs named '%s' are different models: '%s' has %s %s, '%s' has %s %s; give repeats "
                   "over seeds one name and different models different names",
                   g->name, a->path, what, va, b->path, what, vb);
    return MVMOE_OK;
}

/* Per seed: each expert's share of images (top-1 expert), or of all assignments when no
 * image counts are there (token routing); the group's mode is fixed by its first member. */
static int expert_shares(const mvmoe_eval_json *e, int E, int use_images, double *share) {
    const int64_t *c = use_images ? e->expert_images : e->expert_load;
    if (!c || e->moe_experts != E) return 0;
    double total = 0;
    for (int i = 0; i < E; i++) total += (double)c[i];
    if (!(total > 0)) return 0;
    for (int i = 0; i < E; i++) share[i] = (double)c[i] / total;
    return 1;
}

static int has_images(const mvmoe_eval_json *e) {
    int64_t total = 0;
    for (int i = 0; e->expert_images && i < e->moe_experts; i++) total += e->expert_images[i];
    return total > 0;
}

static mvmoe_status expert_stats(mvmoe_report_group *g, const mvmoe_eval_json *ev) {
    int E = 0, images = 1;
    for (int m = 0; m < g->n; m++) {
        const mvmoe_eval_json *e = &ev[g->members[m]];
        if (e->moe_experts > E) E = e->moe_experts;
        if (e->moe_experts && !has_images(e)) images = 0;
    }
    if (E == 0) return MVMOE_OK;
    g->E = E;
    g->share_is_images = images;
    MVMOE_ALLOC(g->share_mean, E, "report: expert shares");
    MVMOE_ALLOC(g->share_std, E, "report: expert shares");
    MVMOE_ALLOC(g->acc_mean, E, "report: expert accuracies");
    MVMOE_ALLOC(g->acc_std, E, "report: expert accuracies");
    double *share, *col;
    MVMOE_ALLOC(share, (size_t)g->n * E, "report: expert shares");
    col = malloc(sizeof *col * (size_t)g->n);
    if (!col) {
        free(share);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "report: cannot allocate %d numbers", g->n);
    }
    for (int m = 0; m < g->n; m++)
        if (!expert_shares(&ev[g->members[m]], E, images, share + (size_t)m * E))
            for (int i = 0; i < E; i++) share[(size_t)m * E + i] = NAN;
    for (int i = 0; i < E; i++) {
        for (int m = 0; m < g->n; m++) col[m] = share[(size_t)m * E + i];
        mvmoe_report_mean_std(col, g->n, &g->share_mean[i], &g->share_std[i]);
        for (int m = 0; m < g->n; m++) {
            const mvmoe_eval_json *e = &ev[g->members[m]];
            col[m] = e->expert_acc && e->moe_experts == E ? e->expert_acc[i] : NAN;
        }
        mvmoe_report_mean_std(col, g->n, &g->acc_mean[i], &g->acc_std[i]);
    }
    free(col);
    free(share);
    return MVMOE_OK;
}

static double first_finite(const mvmoe_report_group *g, const mvmoe_eval_json *ev, size_t offset) {
    for (int m = 0; m < g->n; m++) {
        double v = *(const double *)((const char *)&ev[g->members[m]] + offset);
        if (isfinite(v)) return v;
    }
    return NAN;
}

static mvmoe_status group_stats(mvmoe_report_group *g, const mvmoe_eval_json *ev) {
    g->cfg = &ev[g->members[0]];
    for (int m = 0; m < g->n; m++)
        if (ev[g->members[m]].has_config) {
            g->cfg = &ev[g->members[m]];
            break;
        }
    for (int m = 0; m < g->n; m++) MVMOE_TRY(check_same(g, g->cfg, &ev[g->members[m]]));
    double *v;
    MVMOE_ALLOC(v, g->n, "report: run statistics");
    for (int m = 0; m < g->n; m++) v[m] = ev[g->members[m]].top1;
    mvmoe_report_mean_std(v, g->n, &g->top1_mean, &g->top1_std);
    for (int m = 0; m < g->n; m++) v[m] = ev[g->members[m]].top5;
    g->n_top5 = mvmoe_report_mean_std(v, g->n, &g->top5_mean, &g->top5_std);
    for (int m = 0; m < g->n; m++) v[m] = ev[g->members[m]].router_acc;
    double unused;
    g->n_router = mvmoe_report_mean_std(v, g->n, &g->router_acc_mean, &unused);
    for (int m = 0; m < g->n; m++) v[m] = ev[g->members[m]].routed_acc;
    mvmoe_report_mean_std(v, g->n, &g->routed_acc_mean, &unused);
    for (int m = 0; m < g->n; m++) v[m] = ev[g->members[m]].misrouted_acc;
    mvmoe_report_mean_std(v, g->n, &g->misrouted_acc_mean, &unused);
    for (int m = 0; m < g->n; m++) {
        const mvmoe_eval_json *e = &ev[g->members[m]];
        v[m] = e->n > 0 && isfinite(e->misrouted) ? e->misrouted / e->n : NAN;
    }
    mvmoe_report_mean_std(v, g->n, &g->misrouted_share_mean, &unused);
    free(v);
    /* Seeds change the weights, not the shape: the first file that has a count gives it. */
    g->flops = first_finite(g, ev, offsetof(mvmoe_eval_json, flops));
    g->params = first_finite(g, ev, offsetof(mvmoe_eval_json, params));
    g->active_params = first_finite(g, ev, offsetof(mvmoe_eval_json, active_params));
    return expert_stats(g, ev);
}

mvmoe_status mvmoe_report_stats_build(mvmoe_report_stats *s, const mvmoe_eval_json *ev, int n) {
    memset(s, 0, sizeof *s);
    MVMOE_ALLOC(s->groups, n > 0 ? n : 1, "report: run groups");
    for (int i = 0; i < n; i++) {
        int gi = 0;
        while (gi < s->n_groups && strcmp(s->groups[gi].name, ev[i].name) != 0) gi++;
        mvmoe_report_group *g = &s->groups[gi];
        if (gi == s->n_groups) {
            s->n_groups++;
            g->name = ev[i].name;
            g->dense_ref = -1;
            g->delta_vs_dense = NAN;
            MVMOE_ALLOC(g->members, n, "report: run group");
        }
        g->members[g->n++] = i;
    }
    for (int gi = 0; gi < s->n_groups; gi++) MVMOE_TRY(group_stats(&s->groups[gi], ev));
    /* The reference of each width is the first dense model of that width named. */
    for (int gi = 0; gi < s->n_groups; gi++) {
        mvmoe_report_group *g = &s->groups[gi];
        if (g->cfg->dim <= 0) continue;
        for (int r = 0; r < s->n_groups; r++) {
            const mvmoe_report_group *d = &s->groups[r];
            if (!mvmoe_report_group_is_dense(d) || d->cfg->dim != g->cfg->dim) continue;
            if (r != gi) {
                g->dense_ref = r;
                g->delta_vs_dense = g->top1_mean - d->top1_mean;
            }
            break;
        }
    }
    return MVMOE_OK;
}

/* ---------------------------------------------------------------- JSON summary */

static int add_num(cJSON *o, const char *key, double v) {
    return (isfinite(v) ? cJSON_AddNumberToObject(o, key, v) : cJSON_AddNullToObject(o, key)) != NULL;
}

static int add_int(cJSON *o, const char *key, int v) {
    return (v >= 0 ? cJSON_AddNumberToObject(o, key, v) : cJSON_AddNullToObject(o, key)) != NULL;
}

static int add_str(cJSON *o, const char *key, const char *v) {
    return (v && *v ? cJSON_AddStringToObject(o, key, v) : cJSON_AddNullToObject(o, key)) != NULL;
}

static int add_nums(cJSON *o, const char *key, const double *v, int n) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    int ok = a != NULL;
    for (int i = 0; ok && i < n; i++)
        ok &= cJSON_AddItemToArray(a, isfinite(v[i]) ? cJSON_CreateNumber(v[i]) : cJSON_CreateNull());
    return ok;
}

static int add_run(cJSON *runs, const mvmoe_report_ctx *c, const mvmoe_report_group *g) {
    cJSON *r = cJSON_CreateObject();
    int ok = cJSON_AddItemToArray(runs, r);
    if (!ok) {
        cJSON_Delete(r);
        return 0;
    }
    const mvmoe_eval_json *cfg = g->cfg;
    ok &= add_str(r, "name", g->name);
    ok &= add_str(r, "routing", cfg->routing);
    ok &= add_int(r, "dim", cfg->dim);
    ok &= add_int(r, "experts", cfg->experts);
    ok &= add_int(r, "top_k", cfg->top_k);
    ok &= add_int(r, "moe_layers", cfg->moe_layers);
    ok &= add_int(r, "n_seeds", g->n);
    ok &= add_num(r, "top1_mean", g->top1_mean);
    ok &= add_num(r, "top1_std", g->top1_std);
    ok &= add_num(r, "top5_mean", g->top5_mean);
    ok &= add_num(r, "top5_std", g->top5_std);
    ok &= add_num(r, "flops", g->flops);
    ok &= add_num(r, "params", g->params);
    ok &= add_num(r, "active_params", g->active_params);
    ok &= add_num(r, "router_acc_mean", g->router_acc_mean);
    ok &= add_num(r, "routed_acc_mean", g->routed_acc_mean);
    ok &= add_num(r, "misrouted_acc_mean", g->misrouted_acc_mean);
    ok &= add_num(r, "misrouted_share_mean", g->misrouted_share_mean);
    ok &= add_num(r, "delta_vs_dense", g->delta_vs_dense);
    ok &= add_str(r, "dense_reference", g->dense_ref >= 0 ? c->st->groups[g->dense_ref].name : NULL);
    if (g->E > 0) {
        ok &= add_str(r, "expert_share_of", g->share_is_images ? "images" : "assignments");
        ok &= add_nums(r, "expert_share_mean", g->share_mean, g->E);
        ok &= add_nums(r, "expert_acc_mean", g->acc_mean, g->E);
    }
    cJSON *files = cJSON_AddArrayToObject(r, "files");
    ok &= files != NULL;
    for (int m = 0; ok && m < g->n; m++)
        ok &= cJSON_AddItemToArray(files, cJSON_CreateString(c->ev[g->members[m]].path));
    return ok;
}

static int add_superclasses(cJSON *o, const mvmoe_superclass_map *m) {
    if (!m) return cJSON_AddNullToObject(o, "superclasses") != NULL;
    cJSON *s = cJSON_AddObjectToObject(o, "superclasses");
    int ok = s != NULL;
    ok &= ok && add_str(s, "path", m->path);
    ok &= ok && add_int(s, "experts", m->E);
    cJSON *of = ok ? cJSON_CreateIntArray(m->superclass_of, m->K) : NULL;
    ok &= ok && cJSON_AddItemToObject(s, "superclass_of", of);
    cJSON *sizes = ok ? cJSON_CreateIntArray(m->sizes, m->E) : NULL;
    ok &= ok && cJSON_AddItemToObject(s, "sizes", sizes);
    if (ok && m->groups) {
        cJSON *groups = cJSON_AddArrayToObject(s, "groups");
        ok &= groups != NULL;
        for (int e = 0; ok && e < m->E; e++)
            ok &= cJSON_AddItemToArray(groups, cJSON_CreateStringArray((const char *const *)m->groups[e], m->sizes[e]));
    }
    ok &= ok && add_str(s, "method", m->method);
    ok &= ok && add_str(s, "source", m->source);
    return ok;
}

mvmoe_status mvmoe_report_json(const mvmoe_report_ctx *c, char **out) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok &= ok && add_str(o, "title", c->title);
    ok &= ok && add_str(o, "date", c->date);
    cJSON *runs = ok ? cJSON_AddArrayToObject(o, "runs") : NULL;
    ok &= runs != NULL;
    for (int i = 0; ok && i < c->st->n_groups; i++) ok &= add_run(runs, c, &c->st->groups[i]);
    ok &= ok && add_superclasses(o, c->map);
    cJSON *curves = ok ? cJSON_AddArrayToObject(o, "curves") : NULL;
    ok &= curves != NULL;
    for (int i = 0; ok && c->curves && i < c->curves->n; i++) {
        const mvmoe_report_curve_stats *cv = &c->curves->curves[i];
        cJSON *r = cJSON_CreateObject();
        ok &= r && cJSON_AddItemToArray(curves, r);
        ok &= ok && add_str(r, "name", cv->name);
        ok &= ok && add_int(r, "n_seeds", cv->n_files);
        ok &= ok && add_int(r, "epochs", cv->epochs);
        ok &= ok && add_nums(r, "val_acc_mean", cv->val_mean, cv->epochs);
        ok &= ok && add_nums(r, "val_acc_std", cv->val_std, cv->epochs);
    }
    *out = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!*out) MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot build the JSON summary: out of memory");
    return MVMOE_OK;
}
