/* The report's figures, each one <figure> with an inline <svg> and a caption: accuracy vs
 * FLOPs (the paper's Fig. 1), the dense model's confusion matrix ordered by super-class (the
 * input of Sec. 3.2's clustering), and each MoE model's expert load and per-expert accuracy
 * (is the router using all experts; are some experts worse than others). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"

static void note(mvmoe_rtext *t, const char *text) {
    mvmoe_rtext_puts(t, "<p class=\"note\">");
    mvmoe_rtext_escape(t, text);
    mvmoe_rtext_puts(t, "</p>\n");
}

static void caption(mvmoe_rtext *t, const char *label, const char *text) {
    mvmoe_rtext_puts(t, "<figcaption><b>");
    mvmoe_rtext_escape(t, label);
    mvmoe_rtext_puts(t, "</b> ");
    mvmoe_rtext_escape(t, text);
    mvmoe_rtext_puts(t, "</figcaption>\n</figure>\n");
}

/* ---------------------------------------------------------------- accuracy vs FLOPs */

/* A model family: everything but the width; dense models are one family. */
static void family_key(const mvmoe_report_group *g, char *buf, size_t cap) {
    const mvmoe_eval_json *e = g->cfg;
    if (mvmoe_report_group_is_dense(g)) {
        snprintf(buf, cap, "dense ViT");
        return;
    }
    if (!e->routing[0]) {
        snprintf(buf, cap, "no config");
        return;
    }
    char E[16] = "?", k[16] = "?", L[16] = "?";
    if (e->experts >= 0) snprintf(E, sizeof E, "%d", e->experts);
    if (e->top_k >= 0) snprintf(k, sizeof k, "%d", e->top_k);
    if (e->moe_layers >= 0) snprintf(L, sizeof L, "%d", e->moe_layers);
    snprintf(buf, cap, "%s, E=%s, k=%s, L=%s", e->routing, E, k, L);
}

#define KEY_LEN 96

static int plottable(const mvmoe_report_group *g) {
    return isfinite(g->flops) && g->flops > 0 && isfinite(g->top1_mean);
}

void mvmoe_report_fig_accuracy(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    const mvmoe_report_stats *st = c->st;
    int n = st->n_groups, shown = 0;
    char (*keys)[KEY_LEN] = calloc((size_t)n + 1, KEY_LEN);
    int *fam = calloc((size_t)n + 1, sizeof *fam), *order = calloc((size_t)n + 1, sizeof *order);
    double *x = calloc((size_t)n + 1, sizeof *x), *y = calloc((size_t)n + 1, sizeof *y);
    double *err = calloc((size_t)n + 1, sizeof *err);
    char (*lab)[24] = calloc((size_t)n + 1, 24), (*placed_lab)[24] = calloc((size_t)n + 1, 24);
    double *placed_x = calloc((size_t)n + 1, sizeof *placed_x), *placed_y = calloc((size_t)n + 1, sizeof *placed_y);
    const char **labp = calloc((size_t)n + 1, sizeof *labp), **names = calloc((size_t)n + 1, sizeof *names);
    const char **colors = calloc((size_t)n + 1, sizeof *colors);
    int *shapes = calloc((size_t)n + 1, sizeof *shapes);
    if (!keys || !fam || !order || !x || !y || !err || !lab || !labp || !names || !colors || !shapes || !placed_lab ||
        !placed_x || !placed_y) {
        t->oom = 1;
        goto done;
    }
    /* Families in order of appearance, the dense one first (it is the baseline, drawn black). */
    int n_fam = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            const mvmoe_report_group *g = &st->groups[i];
            if (!plottable(g) || mvmoe_report_group_is_dense(g) != (pass == 0)) continue;
            char key[KEY_LEN];
            family_key(g, key, sizeof key);
            int f = 0;
            while (f < n_fam && strcmp(keys[f], key) != 0) f++;
            if (f == n_fam) memcpy(keys[n_fam++], key, KEY_LEN);
            fam[i] = f;
            shown++;
        }
    if (shown == 0) {
        note(t, "Accuracy vs FLOPs: no run has both a top-1 accuracy and a FLOP count (\"flops\" in its eval JSON), so there is no plot.");
        goto done;
    }
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n; i++) {
        const mvmoe_report_group *g = &st->groups[i];
        if (!plottable(g)) continue;
        double e = isfinite(g->top1_std) ? 100 * g->top1_std : 0, v = 100 * g->top1_mean;
        xlo = fmin(xlo, g->flops / 1e6), xhi = fmax(xhi, g->flops / 1e6);
        ylo = fmin(ylo, v - e), yhi = fmax(yhi, v + e);
    }
    mvmoe_svg_plot p = {.left = 72, .top = 24, .width = 540, .height = 360};
    p.x.log = xhi / xlo >= 3; /* widths usually double: log spacing keeps them apart */
    p.x.label = p.x.log ? "MFLOPs per image (log scale)" : "MFLOPs per image";
    p.y.label = "top-1 accuracy (%)";
    mvmoe_svg_axis_fit(&p.x, xlo, xhi, 0.08, xlo * 0.2 + 1e-3);
    mvmoe_svg_axis_fit(&p.y, ylo, yhi, 0.1, 1.0);
    char desc[256];
    snprintf(desc, sizeof desc,
             "Scatter plot of top-1 accuracy against forward MFLOPs per image for %d models in %d families; "
             "the table above lists the same numbers.", shown, n_fam);
    mvmoe_rtext_puts(t, "<figure>\n");
    mvmoe_svg_begin(t, "fig-acc", 900, 440, "Top-1 accuracy vs FLOPs per image", desc);
    mvmoe_svg_axes(t, &p);
    int n_placed = 0; /* point labels drawn so far, over all families */
    for (int f = 0; f < n_fam; f++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (plottable(&st->groups[i]) && fam[i] == f) order[m++] = i;
        /* by FLOPs, so the line joins the widths from small to large */
        for (int a = 1; a < m; a++)
            for (int b = a; b > 0 && st->groups[order[b]].flops < st->groups[order[b - 1]].flops; b--) {
                int tmp = order[b];
                order[b] = order[b - 1];
                order[b - 1] = tmp;
            }
        for (int j = 0; j < m; j++) {
            const mvmoe_report_group *g = &st->groups[order[j]];
            x[j] = g->flops / 1e6;
            y[j] = 100 * g->top1_mean;
            err[j] = 100 * g->top1_std;
            if (g->cfg->dim > 0) snprintf(lab[j], 24, "d=%d", g->cfg->dim);
            else lab[j][0] = '\0';
            labp[j] = lab[j][0] ? lab[j] : NULL;
            /* Models of one width sit at almost the same FLOPs: one "d=" label per spot. */
            double px = mvmoe_svg_px(&p, x[j]), py = mvmoe_svg_py(&p, y[j]);
            for (int q = 0; labp[j] && q < n_placed; q++)
                if (strcmp(placed_lab[q], lab[j]) == 0 && fabs(placed_x[q] - px) < 40 && fabs(placed_y[q] - py) < 40)
                    labp[j] = NULL;
            if (labp[j] && n_placed < n) {
                placed_x[n_placed] = px, placed_y[n_placed] = py;
                memcpy(placed_lab[n_placed++], lab[j], 24);
            }
        }
        /* colour 0 (black) is the dense baseline's; MoE families take the others */
        int ci = strcmp(keys[f], "dense ViT") == 0 ? 0 : f + (strcmp(keys[0], "dense ViT") != 0);
        colors[f] = mvmoe_svg_color(ci);
        shapes[f] = mvmoe_svg_shape(ci);
        names[f] = keys[f];
        mvmoe_svg_series(t, &p, x, y, err, labp, m, colors[f], shapes[f]);
    }
    mvmoe_svg_text(t, 640, 30, "start", 13, 0, "font-weight=\"bold\"", "model family");
    mvmoe_svg_legend(t, 640, 52, names, colors, shapes, n_fam);
    mvmoe_svg_end(t);
    caption(t, "Figure 1.",
            "Top-1 accuracy against forward FLOPs per image: one line per model family (routing, experts E, "
            "experts per image k, MoE layers L) joining its widths (d = embedding width); the dense ViT is black. "
            "Points are means over seeds; error bars are \xC2\xB1 one sample standard deviation (none for a single seed).");
done:
    free(keys);
    free(fam);
    free(order);
    free(x);
    free(y);
    free(err);
    free(lab);
    free(labp);
    free(placed_lab);
    free(placed_x);
    free(placed_y);
    free(names);
    free(colors);
    free(shapes);
}

/* ---------------------------------------------------------------- confusion matrix */

/* Above this the cells are under 3 pixels: the matrix is in the eval JSON instead. */
#define MAX_HEATMAP_CLASSES 200

/* The class -> super-class map to order the matrix by: --superclasses, else the one in the
 * evaluated model's config. */
static const int *confusion_map(const mvmoe_report_ctx *c, int K, int *E) {
    if (c->map && c->map->K == K) {
        *E = c->map->E;
        return c->map->superclass_of;
    }
    if (c->confusion->superclass_of) {
        *E = 0;
        for (int k = 0; k < K; k++)
            if (c->confusion->superclass_of[k] >= *E) *E = c->confusion->superclass_of[k] + 1;
        return c->confusion->superclass_of;
    }
    return NULL;
}

void mvmoe_report_fig_confusion(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    const mvmoe_eval_json *e = c->confusion;
    if (!e || !e->confusion) {
        note(t, "Confusion matrix: none of the inputs has one (give --confusion VAL_EVAL.json or a dense run).");
        return;
    }
    int K = e->K;
    if (K > MAX_HEATMAP_CLASSES) {
        char msg[200];
        snprintf(msg, sizeof msg, "Confusion matrix: %d classes are too many to draw (at most %d); it is in the eval JSON.",
                 K, MAX_HEATMAP_CLASSES);
        note(t, msg);
        return;
    }
    int E = 0;
    const int *map = confusion_map(c, K, &E);
    int *order = calloc((size_t)K, sizeof *order);
    double *value = calloc((size_t)K * K, sizeof *value);
    int64_t *count = calloc((size_t)K * K, sizeof *count);
    unsigned char *after = calloc((size_t)K, 1);
    const char **labels = calloc((size_t)K, sizeof *labels);
    char (*idx)[16] = calloc((size_t)K, 16);
    if (!order || !value || !count || !after || !labels || !idx) {
        t->oom = 1;
        goto done;
    }
    /* classes grouped by super-class, in class order within a group */
    int n = 0;
    for (int s = 0; s < (map ? E : 1); s++)
        for (int k = 0; k < K; k++)
            if (!map || map[k] == s) order[n++] = k;
    for (int i = 0; map && i + 1 < K; i++) after[i] = map[order[i]] != map[order[i + 1]];
    for (int i = 0; i < K; i++) {
        const int64_t *row = e->confusion + (size_t)order[i] * K;
        double total = 0;
        for (int j = 0; j < K; j++) total += (double)row[j];
        for (int j = 0; j < K; j++) {
            count[(size_t)i * K + j] = row[order[j]];
            value[(size_t)i * K + j] = total > 0 ? (double)row[order[j]] / total : 0;
        }
        const char *const *names = e->class_names ? (const char *const *)e->class_names : c->K == K ? c->class_names : NULL;
        snprintf(idx[i], 16, "%d", order[i]);
        labels[i] = names && names[order[i]] ? names[order[i]] : idx[i];
    }
    mvmoe_svg_heatmap h = {.top = 16, .K = K, .value = value, .count = count, .labels = labels,
                           .show_counts = K <= 20, .tips = K <= 60, .after_group = map ? after : NULL,
                           .row_title = "true class", .col_title = "predicted class"};
    h.cell = floor((K <= 20 ? 520.0 : 700.0) / K);
    if (h.cell > 46) h.cell = 46;
    if (h.cell < 3) h.cell = 3;
    double extent = mvmoe_svg_heatmap_label_extent(&h), size = K * h.cell;
    h.left = 34 + fmin(extent * 1.45, 210);
    double bar_h = fmin(size, 240);
    double W = h.left + size + 110, H = h.top + size + extent + 34;
    char desc[300];
    snprintf(desc, sizeof desc,
             "Heatmap of a %d by %d confusion matrix, rows true classes, columns predicted classes, colour the share "
             "of the row%s.", K, K, map ? ", classes grouped by super-class" : "");
    mvmoe_rtext_puts(t, "<figure>\n");
    mvmoe_svg_begin(t, "fig-conf", W, H, "Confusion matrix (row-normalized)", desc);
    mvmoe_svg_heatmap_draw(t, &h, "fig-conf");
    mvmoe_svg_colorbar(t, h.left + size + 24, h.top, 16, bar_h, "fig-conf", "0% of row", "100%");
    mvmoe_svg_end(t);
    mvmoe_rtext_puts(t, "<figcaption><b>Figure 2.</b> Confusion matrix");
    if (e->model) {
        mvmoe_rtext_puts(t, " of ");
        mvmoe_rtext_escape(t, e->model);
    }
    if (e->split) {
        mvmoe_rtext_puts(t, " on the ");
        mvmoe_rtext_escape(t, e->split);
        mvmoe_rtext_puts(t, " split");
    }
    if (e->n >= 0) mvmoe_rtext_printf(t, " (%.0f images)", e->n);
    mvmoe_rtext_puts(t, ", from <code>");
    mvmoe_rtext_escape(t, e->path);
    mvmoe_rtext_puts(t, "</code>. Rows: true class; columns: predicted class; colour: share of the row "
                        "(row-normalized)");
    if (K <= 20) mvmoe_rtext_puts(t, "; numbers: image counts");
    if (map)
        mvmoe_rtext_printf(t, ". Classes are ordered by super-class (%d groups, orange lines%s).", E,
                           c->map && c->map->K == K ? ", from the super-class map" : ", from the model's config");
    else
        mvmoe_rtext_puts(t, ". No super-class map for these classes, so they are in class order.");
    mvmoe_rtext_puts(t, "</figcaption>\n</figure>\n");
done:
    free(order);
    free(value);
    free(count);
    free(after);
    free(labels);
    free(idx);
}

/* ---------------------------------------------------------------- experts */

/* The classes routed to expert `x`: with image-superclass routing expert x is trained on
 * super-class x (Sec. 3.2), so it is labelled with that group's class names. */
static void expert_label(const mvmoe_report_ctx *c, const mvmoe_report_group *g, int x, char *buf, size_t cap) {
    int len = snprintf(buf, cap, "expert %d", x);
    if (strcmp(g->cfg->routing, "image-superclass") != 0) return;
    const int *map = NULL;
    int K = 0;
    const char *const *names = NULL;
    if (g->cfg->superclass_of) {
        map = g->cfg->superclass_of, K = g->cfg->K;
        names = g->cfg->class_names ? (const char *const *)g->cfg->class_names : NULL;
    } else if (c->map && c->map->E == g->E) {
        map = c->map->superclass_of, K = c->map->K;
    }
    if (!map) return;
    if (!names && c->K == K) names = c->class_names;
    const char *sep = ": ";
    for (int k = 0; k < K && len > 0 && (size_t)len < cap; k++) {
        if (map[k] != x) continue;
        char idx[16];
        snprintf(idx, sizeof idx, "%d", k);
        len += snprintf(buf + len, cap - (size_t)len, "%s%s", sep, names && names[k] ? names[k] : idx);
        sep = ", ";
    }
}

static int any_finite(const double *v, int n) {
    for (int i = 0; v && i < n; i++)
        if (isfinite(v[i])) return 1;
    return 0;
}

/* Returns whether there was anything to draw. */
static int expert_figure(mvmoe_rtext *t, const mvmoe_report_ctx *c, int gi, double *a, double *b) {
    const mvmoe_report_group *g = &c->st->groups[gi];
    int E = g->E, has_share = any_finite(g->share_mean, E), has_acc = any_finite(g->acc_mean, E);
    if (!has_share && !has_acc) return 0;
    double row = E <= 16 ? 26 : E <= 64 ? 16 : 8, ph = fmax(E * row, 60);
    mvmoe_svg_plot ps = {.left = 310, .top = 30, .width = 250, .height = ph, .y_categorical = 1};
    mvmoe_svg_plot pa = ps;
    pa.left = 620;
    ps.y.lo = pa.y.lo = 0, ps.y.hi = pa.y.hi = E;
    double hi = 100.0 / E;
    for (int i = 0; i < E; i++) {
        a[i] = 100 * g->share_mean[i], b[i] = 100 * g->share_std[i];
        double top = a[i] + (isfinite(b[i]) ? b[i] : 0);
        if (isfinite(top) && top > hi) hi = top;
    }
    ps.x.lo = 0, ps.x.hi = hi * 1.25;
    ps.x.label = g->share_is_images ? "share of images (%)" : "share of expert assignments (%)";
    pa.x.lo = 0, pa.x.hi = 100, pa.x.label = "top-1 accuracy of its images (%)";
    char id[32], title[300], desc[300], label[400];
    snprintf(id, sizeof id, "fig-exp-%d", gi);
    snprintf(title, sizeof title, "Experts of %s", g->name);
    snprintf(desc, sizeof desc, "Horizontal bar charts, one row per expert (%d): %s%s.", E,
             has_share ? "the share of images routed to it" : "", has_acc ? ", the accuracy on those images" : "");
    mvmoe_rtext_puts(t, "<figure>\n");
    mvmoe_svg_begin(t, id, 900, ps.top + ph + 48, title, desc);
    for (int i = 0; i < E; i++) {
        expert_label(c, g, i, label, sizeof label);
        mvmoe_rtext_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%.0f\">", ps.left - 8,
                           mvmoe_svg_row_y(&ps, E, i) + 4, row >= 16 ? 12.0 : row);
        mvmoe_rtext_escape_trunc(t, label, 44);
        mvmoe_rtext_puts(t, "</text>\n");
    }
    if (has_share) {
        mvmoe_svg_axes(t, &ps);
        mvmoe_svg_hbars(t, &ps, a, b, E, mvmoe_svg_color(2), "%.1f%%");
        mvmoe_svg_vline(t, &ps, 100.0 / E, "uniform");
    }
    if (has_acc) {
        if (!has_share) pa.left = ps.left;
        for (int i = 0; i < E; i++) a[i] = 100 * g->acc_mean[i], b[i] = 100 * g->acc_std[i];
        mvmoe_svg_axes(t, &pa);
        mvmoe_svg_hbars(t, &pa, a, b, E, mvmoe_svg_color(3), "%.1f%%");
        char lbl[48];
        snprintf(lbl, sizeof lbl, "model %.1f%%", 100 * g->top1_mean);
        mvmoe_svg_vline(t, &pa, 100 * g->top1_mean, lbl);
    }
    mvmoe_svg_end(t);
    mvmoe_rtext_puts(t, "<figcaption><b>Experts of ");
    mvmoe_rtext_escape(t, g->name);
    mvmoe_rtext_printf(t, "</b> (%s, %d experts; %d seed%s%s).", g->cfg->routing[0] ? g->cfg->routing : "routing unknown",
                       E, g->n, g->n == 1 ? "" : "s", g->n > 1 ? ": means, error bars \xC2\xB1 one std" : "");
    if (has_share)
        mvmoe_rtext_printf(t, " %s: the share of the %s; dashed: a uniform share (100/E %%).", has_acc ? "Left" : "Bars",
                           g->share_is_images ? "images whose first choice is each expert"
                                              : "expert assignments (every token or image, every MoE layer, all k choices)");
    if (has_acc)
        mvmoe_rtext_printf(t, " %s: top-1 accuracy of the images whose first choice is that expert; dashed: the "
                              "model's top-1.", has_share ? "Right" : "Bars");
    else
        mvmoe_rtext_puts(t, " No per-expert accuracy in the inputs.");
    mvmoe_rtext_puts(t, "</figcaption>\n</figure>\n");
    return 1;
}

void mvmoe_report_fig_experts(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    int any = 0;
    for (int gi = 0; gi < c->st->n_groups; gi++) {
        const mvmoe_report_group *g = &c->st->groups[gi];
        if (g->E <= 0) continue;
        double *a = calloc((size_t)g->E, sizeof *a), *b = calloc((size_t)g->E, sizeof *b);
        if (a && b) any |= expert_figure(t, c, gi, a, b);
        else t->oom = 1;
        free(a);
        free(b);
    }
    if (!any)
        note(t, "Experts: no run has expert counts or accuracies (\"moe\" in its eval JSON): dense models only, or older files.");
}

/* ---------------------------------------------------------------- learning curves */

/* y range of the curves' means (± std) over epochs [e0, e1). */
static void curve_range(const mvmoe_report_curves *cs, int e0, int e1, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < cs->n; i++)
        for (int e = e0; e < e1 && e < cs->curves[i].epochs; e++) {
            double m = 100 * cs->curves[i].val_mean[e], s = 100 * cs->curves[i].val_std[e];
            if (!isfinite(m)) continue;
            if (!isfinite(s)) s = 0;
            *lo = fmin(*lo, m - s), *hi = fmax(*hi, m + s);
        }
}

/* One panel: every curve over epochs [e0, e1). */
static void curve_panel(mvmoe_rtext *t, const mvmoe_report_curves *cs, mvmoe_svg_plot *p, int e0, int e1,
                        double *x, double *y, double *err) {
    double lo, hi;
    curve_range(cs, e0, e1, &lo, &hi);
    mvmoe_svg_axis_fit(&p->x, e0 + 1, e1, 0.03, 1.0);
    mvmoe_svg_axis_fit(&p->y, lo, hi, 0.06, 0.5);
    mvmoe_svg_axes(t, p);
    for (int i = 0; i < cs->n; i++) {
        const mvmoe_report_curve_stats *c = &cs->curves[i];
        int m = 0;
        for (int e = e0; e < e1 && e < c->epochs; e++, m++) {
            x[m] = e + 1;
            y[m] = 100 * c->val_mean[e];
            err[m] = 100 * c->val_std[e];
        }
        mvmoe_svg_series(t, p, x, y, err, NULL, m, mvmoe_svg_color(i), mvmoe_svg_shape(i));
    }
}

/* Is the MoE slower to start, lower at the end, or overtaking? The whole run on the left, the
 * second half on the right, where the curves are close and the comparison is decided. */
void mvmoe_report_fig_curves(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    const mvmoe_report_curves *cs = c->curves;
    if (!cs || cs->n == 0) {
        note(t, "Learning curves: no training metrics were given (mvmoe report --curve NAME=METRICS.jsonl).");
        return;
    }
    int epochs = 0, measured = 0;
    for (int i = 0; i < cs->n; i++) {
        if (cs->curves[i].epochs > epochs) epochs = cs->curves[i].epochs;
        for (int e = 0; e < cs->curves[i].epochs; e++) measured += isfinite(cs->curves[i].val_mean[e]);
    }
    if (measured == 0) {
        note(t, "Learning curves: the metrics files have no validation accuracy (train with a validation split "
                "and --eval-every 1).");
        return;
    }
    double *x = calloc((size_t)epochs, sizeof *x), *y = calloc((size_t)epochs, sizeof *y);
    double *err = calloc((size_t)epochs, sizeof *err);
    const char **names = calloc((size_t)cs->n, sizeof *names), **colors = calloc((size_t)cs->n, sizeof *colors);
    int *shapes = calloc((size_t)cs->n, sizeof *shapes);
    if (!x || !y || !err || !names || !colors || !shapes) {
        t->oom = 1;
        goto done;
    }
    for (int i = 0; i < cs->n; i++) {
        names[i] = cs->curves[i].name;
        colors[i] = mvmoe_svg_color(i);
        shapes[i] = mvmoe_svg_shape(i);
    }
    double h = 24 + 300 + 56 + 20.0 * cs->n + 10;
    char desc[256];
    snprintf(desc, sizeof desc,
             "Line plots of validation top-1 accuracy per epoch for %d model%s over %d epochs: all epochs on the "
             "left, the second half on the right.", cs->n, cs->n == 1 ? "" : "s", epochs);
    mvmoe_rtext_puts(t, "<figure>\n");
    mvmoe_svg_begin(t, "fig-curves", 900, h, "Validation accuracy per epoch", desc);
    mvmoe_svg_plot all = {.left = 64, .top = 24, .width = 360, .height = 300};
    all.x.label = "epoch";
    all.y.label = "validation top-1 (%)";
    curve_panel(t, cs, &all, 0, epochs, x, y, err);
    mvmoe_svg_plot late = all;
    late.left = 64 + 360 + 80;
    late.x.label = "epoch (second half)";
    curve_panel(t, cs, &late, epochs / 2, epochs, x, y, err);
    mvmoe_svg_legend(t, 64, 24 + 300 + 56, names, colors, shapes, cs->n);
    mvmoe_svg_end(t);
    char cap[400];
    snprintf(cap, sizeof cap,
             "Top-1 accuracy on the validation images held out of the training split, at the end of each epoch: "
             "mean over the seeds of each model, bars \xC2\xB1 sample std where there are two or more. Left: all %d "
             "epochs; right: epochs %d to %d, zoomed.", epochs, epochs / 2 + 1, epochs);
    caption(t, "Figure 3.", cap);
done:
    free(x), free(y), free(err), free(names), free(colors), free(shapes);
}
