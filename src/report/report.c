/* mvmoe_report_write: reads the eval JSON files of the pipeline's runs, groups repeats over
 * seeds, and writes one self-contained HTML page (inline SVG and CSS; no script, nothing
 * fetched) plus, optionally, the numbers as JSON. Both files are written to PATH.tmp and
 * renamed only when everything succeeded, so a failed run leaves no half-written report. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "report/report.h"

static const char CSS[] =
    "body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;color:#1a1a1a;background:#fff;margin:0;"
    "line-height:1.45}\n"
    "main{max-width:1120px;margin:0 auto;padding:1.5em 1em 3em}\n"
    "h1{font-size:1.7em;margin:.2em 0 .4em}h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #ccc}\n"
    "table{border-collapse:collapse;font-size:.9em;margin:.6em 0}\n"
    "th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}\n"
    "th{background:#eef1f5}tbody th,td.nw{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    "tr:nth-child(even) td{background:#f8f8f8}\n"
    ".n{color:#555;font-size:.85em}.pos{color:#006d2c}.neg{color:#a50f15}\n"
    "figure{margin:1.2em 0}figcaption{font-size:.92em;color:#333;max-width:900px}\n"
    "svg{max-width:100%;height:auto;display:block}\n"
    ".note{color:#555;font-style:italic}code{font-size:.9em;word-break:break-all}\n";

/* ---------------------------------------------------------------- formatting */

static void put_cell(mvmoe_rtext *t, const char *cls, const char *text) {
    mvmoe_rtext_printf(t, "<td%s%s%s>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
    mvmoe_rtext_escape(t, text);
    mvmoe_rtext_puts(t, "</td>");
}

static void fmt_int(int v, char *buf, size_t cap) {
    if (v >= 0) snprintf(buf, cap, "%d", v);
    else snprintf(buf, cap, "\xE2\x80\x94");
}

/* 12345 -> "12.3 k", 1234567 -> "1.23 M" */
static void fmt_count(double v, char *buf, size_t cap) {
    if (!isfinite(v)) snprintf(buf, cap, "\xE2\x80\x94");
    else if (v < 1e3) snprintf(buf, cap, "%.0f", v);
    else if (v < 1e6) snprintf(buf, cap, "%.1f k", v / 1e3);
    else snprintf(buf, cap, "%.2f M", v / 1e6);
}

/* A percentage with its spread over seeds: "85.23 ± 0.16". */
static void put_pct(mvmoe_rtext *t, double mean, double std, int n) {
    mvmoe_rtext_puts(t, "<td class=\"num\">");
    if (!isfinite(mean)) {
        mvmoe_rtext_puts(t, "\xE2\x80\x94</td>");
        return;
    }
    mvmoe_rtext_printf(t, "%.2f", 100 * mean);
    if (isfinite(std)) mvmoe_rtext_printf(t, " \xC2\xB1 %.2f", 100 * std);
    if (n > 0) mvmoe_rtext_printf(t, " <span class=\"n\">(n=%d)</span>", n);
    mvmoe_rtext_puts(t, "</td>");
}

/* ---------------------------------------------------------------- sections */

/* A distinct string field of all runs, "a, b" (at most a few), or NULL if none has it. */
static void distinct(const mvmoe_report_ctx *c, size_t offset, char *buf, size_t cap) {
    size_t len = 0;
    int shown = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->n_ev; i++) {
        const char *s = *(char *const *)((const char *)&c->ev[i] + offset);
        int seen = 0;
        for (int j = 0; s && j < i && !seen; j++) {
            const char *o = *(char *const *)((const char *)&c->ev[j] + offset);
            seen = o && strcmp(o, s) == 0;
        }
        if (!s || seen) continue;
        if (shown == 3) {
            snprintf(buf + len, cap - len, ", \xE2\x80\xA6");
            return;
        }
        int w = snprintf(buf + len, cap - len, "%s%s", shown ? ", " : "", s);
        if (w < 0 || (size_t)w >= cap - len) return;
        len += (size_t)w;
        shown++;
    }
}

/* Distinct positive ints of a config field, ascending: "64, 128". */
static void distinct_ints(const mvmoe_report_ctx *c, size_t offset, char *buf, size_t cap) {
    size_t len = 0;
    int last = 0;
    buf[0] = '\0';
    for (;;) {
        int next = -1;
        for (int i = 0; i < c->n_ev; i++) {
            int v = *(const int *)((const char *)&c->ev[i] + offset);
            if (v > last && (next < 0 || v < next)) next = v;
        }
        if (next < 0) return;
        int w = snprintf(buf + len, cap - len, "%s%d", len ? ", " : "", next);
        if (w < 0 || (size_t)w >= cap - len) return;
        len += (size_t)w;
        last = next;
    }
}

static void description(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    int dense = 0, moe = 0;
    for (int i = 0; i < c->st->n_groups; i++) {
        const mvmoe_report_group *g = &c->st->groups[i];
        if (mvmoe_report_group_is_dense(g)) dense++;
        else if (g->cfg->routing[0]) moe++;
    }
    char data[600], split[200], widths[200], depths[100], patches[100], sizes[100], images[100];
    distinct(c, offsetof(mvmoe_eval_json, data), data, sizeof data);
    distinct(c, offsetof(mvmoe_eval_json, split), split, sizeof split);
    distinct_ints(c, offsetof(mvmoe_eval_json, dim), widths, sizeof widths);
    distinct_ints(c, offsetof(mvmoe_eval_json, depth), depths, sizeof depths);
    distinct_ints(c, offsetof(mvmoe_eval_json, patch), patches, sizeof patches);
    distinct_ints(c, offsetof(mvmoe_eval_json, img_size), sizes, sizeof sizes);
    double n_lo = INFINITY, n_hi = -1;
    for (int i = 0; i < c->n_ev; i++)
        if (c->ev[i].n >= 0) n_lo = fmin(n_lo, c->ev[i].n), n_hi = fmax(n_hi, c->ev[i].n);
    if (n_hi < 0) images[0] = '\0';
    else if (n_lo == n_hi) snprintf(images, sizeof images, "%.0f images", n_hi);
    else snprintf(images, sizeof images, "%.0f to %.0f images", n_lo, n_hi);

    mvmoe_rtext_printf(t, "<p class=\"lead\">This report compares %d model%s (%d evaluation run%s; repeats of one "
                          "model over seeds share a name and count once): %d dense ViT%s and %d Mobile V-MoE%s",
                       c->st->n_groups, c->st->n_groups == 1 ? "" : "s", c->n_ev, c->n_ev == 1 ? "" : "s", dense,
                       dense == 1 ? "" : "s", moe, moe == 1 ? "" : "s");
    if (c->st->n_groups - dense - moe > 0)
        mvmoe_rtext_printf(t, ", and %d whose eval JSON has no config", c->st->n_groups - dense - moe);
    mvmoe_rtext_puts(t, ".");
    if (split[0] || data[0]) mvmoe_rtext_puts(t, " They were evaluated");
    else if (images[0] || c->K > 0) mvmoe_rtext_puts(t, " Evaluation data");
    if (split[0]) {
        mvmoe_rtext_puts(t, " on the ");
        mvmoe_rtext_escape(t, split);
        mvmoe_rtext_puts(t, " split");
    }
    if (data[0]) {
        mvmoe_rtext_puts(t, " of <code>");
        mvmoe_rtext_escape(t, data);
        mvmoe_rtext_puts(t, "</code>");
    }
    if (images[0] || c->K > 0) {
        mvmoe_rtext_printf(t, " (%s%s", images, images[0] && c->K > 0 ? ", " : "");
        if (c->K > 0) mvmoe_rtext_printf(t, "%d classes", c->K);
        mvmoe_rtext_puts(t, ")");
    }
    if (split[0] || data[0] || images[0] || c->K > 0) mvmoe_rtext_puts(t, ".");
    if (widths[0]) {
        mvmoe_rtext_printf(t, " Widths (embedding dimension): %s", widths);
        if (depths[0]) mvmoe_rtext_printf(t, "; depth %s", depths);
        if (patches[0]) mvmoe_rtext_printf(t, "; patch %s", patches);
        if (sizes[0]) mvmoe_rtext_printf(t, " on %s-pixel images", sizes);
        mvmoe_rtext_puts(t, ".");
    }
    mvmoe_rtext_puts(t, " Accuracies are means over seeds \xC2\xB1 the sample standard deviation (n\xE2\x80\x89\xE2\x88\x92\xE2\x80\x89" "1); "
                        "FLOPs count a multiply-add as two, per image, forward pass, router included; the MoE models "
                        "route each image to k of E experts in their last L blocks (Daxberger et al. 2023).</p>\n");
}

static void results_table(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    mvmoe_rtext_puts(t, "<table id=\"results\">\n<thead><tr><th>run</th><th>routing</th><th>width</th><th>E</th>"
                        "<th>k</th><th>L</th><th>top-1 (%)</th><th>top-5 (%)</th><th>MFLOPs / image</th>"
                        "<th>params total / active</th><th>router acc. (%)</th><th>\xCE\x94 top-1 vs dense (pp)</th>"
                        "</tr></thead>\n<tbody>\n");
    char a[64], b[64], buf[160];
    for (int i = 0; i < c->st->n_groups; i++) {
        const mvmoe_report_group *g = &c->st->groups[i];
        const mvmoe_eval_json *e = g->cfg;
        int dense = mvmoe_report_group_is_dense(g);
        mvmoe_rtext_puts(t, "<tr><th scope=\"row\">");
        mvmoe_rtext_escape(t, g->name);
        mvmoe_rtext_puts(t, "</th>");
        put_cell(t, "nw", e->routing[0] ? e->routing : "\xE2\x80\x94");
        fmt_int(e->dim, a, sizeof a);
        put_cell(t, "num", a);
        fmt_int(dense ? -1 : e->experts, a, sizeof a);
        put_cell(t, "num", a);
        fmt_int(dense ? -1 : e->top_k, a, sizeof a);
        put_cell(t, "num", a);
        fmt_int(dense ? -1 : e->moe_layers, a, sizeof a);
        put_cell(t, "num", a);
        put_pct(t, g->top1_mean, g->top1_std, g->n);
        put_pct(t, g->top5_mean, g->top5_std, 0);
        if (isfinite(g->flops)) snprintf(buf, sizeof buf, "%.2f", g->flops / 1e6);
        else snprintf(buf, sizeof buf, "\xE2\x80\x94");
        put_cell(t, "num", buf);
        fmt_count(g->params, a, sizeof a);
        fmt_count(g->active_params, b, sizeof b);
        snprintf(buf, sizeof buf, "%s / %s", a, b);
        put_cell(t, "num", buf);
        if (!dense && g->n_router > 0) snprintf(buf, sizeof buf, "%.1f", 100 * g->router_acc_mean);
        else snprintf(buf, sizeof buf, "\xE2\x80\x94");
        put_cell(t, "num", buf);
        if (isfinite(g->delta_vs_dense)) {
            double d = 100 * g->delta_vs_dense;
            mvmoe_rtext_printf(t, "<td class=\"num %s\">%+.2f <span class=\"n\">vs ", d >= 0 ? "pos" : "neg", d);
            mvmoe_rtext_escape(t, c->st->groups[g->dense_ref].name);
            mvmoe_rtext_puts(t, "</span></td>");
        } else {
            put_cell(t, "num", dense && e->dim > 0 ? "reference" : "\xE2\x80\x94");
        }
        mvmoe_rtext_puts(t, "</tr>\n");
    }
    mvmoe_rtext_puts(t, "</tbody></table>\n<p class=\"note\">E: experts; k: experts per image; L: MoE layers "
                        "(the last L blocks). Top-1/top-5: mean \xC2\xB1 sample std over the n seeds. Params: all "
                        "weights / those one image uses. Router accuracy: images whose first expert is the super-class "
                        "of their label. \xCE\x94: top-1 minus that of the dense model of the same width, in "
                        "percentage points. \xE2\x80\x94: not in the inputs.</p>\n");
}

/* Why a super-class-routed MoE errs: a misrouted image meets an expert that never trained on
 * its class, so its accuracy says what routing mistakes cost, and the routed images' accuracy
 * what the experts themselves reach. One row per MoE model that has the numbers. */
static void routing_table(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    int rows = 0;
    for (int i = 0; i < c->st->n_groups; i++) rows += isfinite(c->st->groups[i].routed_acc_mean) ||
                                                     isfinite(c->st->groups[i].misrouted_acc_mean);
    if (!rows) {
        mvmoe_rtext_puts(t, "<p class=\"note\">No run has routing-error numbers (they need image routing with a "
                            "super-class map, evaluated by a version of mvmoe that writes <code>moe.misrouted</code>).</p>\n");
        return;
    }
    mvmoe_rtext_puts(t, "<table id=\"routing\">\n<thead><tr><th>run</th><th>router acc. (%)</th>"
                        "<th>misrouted images (%)</th><th>top-1 of routed images (%)</th>"
                        "<th>top-1 of misrouted images (%)</th></tr></thead>\n<tbody>\n");
    for (int i = 0; i < c->st->n_groups; i++) {
        const mvmoe_report_group *g = &c->st->groups[i];
        if (!isfinite(g->routed_acc_mean) && !isfinite(g->misrouted_acc_mean)) continue;
        mvmoe_rtext_puts(t, "<tr><th scope=\"row\">");
        mvmoe_rtext_escape(t, g->name);
        mvmoe_rtext_puts(t, "</th>");
        put_pct(t, g->n_router > 0 ? g->router_acc_mean : NAN, NAN, 0);
        put_pct(t, g->misrouted_share_mean, NAN, 0);
        put_pct(t, g->routed_acc_mean, NAN, 0);
        put_pct(t, g->misrouted_acc_mean, NAN, 0);
        mvmoe_rtext_puts(t, "</tr>\n");
    }
    mvmoe_rtext_puts(t, "</tbody></table>\n<p class=\"note\">Means over seeds. Routed: the image's first "
                        "expert is its class's super-class; misrouted: any other expert.</p>\n");
}

/* One row per super-class; names from the map's groups, else from the class names. */
static void superclass_rows(mvmoe_rtext *t, const int *map, int K, int E,
                            char ***groups, const char *const *names) {
    mvmoe_rtext_puts(t, "<table id=\"superclasses\">\n<thead><tr><th>super-class (expert)</th><th>size</th>"
                        "<th>classes</th></tr></thead>\n<tbody>\n");
    for (int s = 0; s < E; s++) {
        int size = 0;
        for (int k = 0; k < K; k++) size += map[k] == s;
        mvmoe_rtext_printf(t, "<tr><td class=\"num\">%d</td><td class=\"num\">%d</td><td>", s, size);
        int first = 1;
        for (int k = 0, i = 0; k < K; k++) {
            if (map[k] != s) continue;
            const char *nm = groups && groups[s] ? groups[s][i] : names ? names[k] : NULL;
            mvmoe_rtext_puts(t, first ? "" : ", ");
            if (nm) mvmoe_rtext_escape(t, nm);
            else mvmoe_rtext_printf(t, "class %d", k);
            first = 0;
            i++;
        }
        mvmoe_rtext_puts(t, "</td></tr>\n");
    }
    mvmoe_rtext_puts(t, "</tbody></table>\n");
}

static void superclass_section(mvmoe_rtext *t, const mvmoe_report_ctx *c) {
    const mvmoe_superclass_map *m = c->map;
    if (m) {
        mvmoe_rtext_printf(t, "<p>%d classes in %d super-classes", m->K, m->E);
        if (m->method) {
            mvmoe_rtext_puts(t, ", method ");
            mvmoe_rtext_escape(t, m->method);
        }
        if (m->source) {
            mvmoe_rtext_puts(t, ", source: <code>");
            mvmoe_rtext_escape(t, m->source);
            mvmoe_rtext_puts(t, "</code>");
        }
        mvmoe_rtext_puts(t, " (map <code>");
        mvmoe_rtext_escape(t, m->path);
        mvmoe_rtext_puts(t, "</code>).</p>\n");
        superclass_rows(t, m->superclass_of, m->K, m->E, m->groups, c->K == m->K ? c->class_names : NULL);
        return;
    }
    for (int i = 0; i < c->st->n_groups; i++) {
        const mvmoe_eval_json *e = c->st->groups[i].cfg;
        if (!e->superclass_of) continue;
        int E = 0;
        for (int k = 0; k < e->K; k++)
            if (e->superclass_of[k] >= E) E = e->superclass_of[k] + 1;
        mvmoe_rtext_puts(t, "<p>No map was given (--superclasses); this is the one in the config of ");
        mvmoe_rtext_escape(t, c->st->groups[i].name);
        mvmoe_rtext_printf(t, ": %d classes in %d super-classes.</p>\n", e->K, E);
        superclass_rows(t, e->superclass_of, e->K, E, NULL,
                        e->class_names ? (const char *const *)e->class_names : c->K == e->K ? c->class_names : NULL);
        return;
    }
    mvmoe_rtext_puts(t, "<p class=\"note\">No super-class map was given (--superclasses) and no run's config has one.</p>\n");
}

static void inputs_section(mvmoe_rtext *t, const mvmoe_report_ctx *c, const char *confusion_path) {
    mvmoe_rtext_puts(t, "<h2>Inputs</h2>\n<ul>\n");
    for (int i = 0; i < c->st->n_groups; i++) {
        const mvmoe_report_group *g = &c->st->groups[i];
        mvmoe_rtext_puts(t, "<li>");
        mvmoe_rtext_escape(t, g->name);
        mvmoe_rtext_puts(t, ":");
        for (int m = 0; m < g->n; m++) {
            mvmoe_rtext_puts(t, " <code>");
            mvmoe_rtext_escape(t, c->ev[g->members[m]].path);
            mvmoe_rtext_puts(t, "</code>");
        }
        mvmoe_rtext_puts(t, "</li>\n");
    }
    if (confusion_path) {
        mvmoe_rtext_puts(t, "<li>confusion matrix: <code>");
        mvmoe_rtext_escape(t, confusion_path);
        mvmoe_rtext_puts(t, "</code></li>\n");
    }
    if (c->map) {
        mvmoe_rtext_puts(t, "<li>super-class map: <code>");
        mvmoe_rtext_escape(t, c->map->path);
        mvmoe_rtext_puts(t, "</code></li>\n");
    }
    mvmoe_rtext_puts(t, "</ul>\n");
}

static void build_page(mvmoe_rtext *t, const mvmoe_report_ctx *c, const char *confusion_path) {
    mvmoe_rtext_puts(t, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    mvmoe_rtext_escape(t, c->title);
    mvmoe_rtext_printf(t, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<main>\n<h1>", CSS);
    mvmoe_rtext_escape(t, c->title);
    mvmoe_rtext_puts(t, "</h1>\n");
    description(t, c);
    mvmoe_rtext_printf(t, "<p class=\"n\">Generated %s by <code>mvmoe report</code>.</p>\n", c->date);
    mvmoe_rtext_puts(t, "<h2>Results</h2>\n");
    results_table(t, c);
    mvmoe_rtext_puts(t, "<h2>Accuracy vs compute</h2>\n");
    mvmoe_report_fig_accuracy(t, c);
    mvmoe_rtext_puts(t, "<h2>Confusion matrix</h2>\n");
    mvmoe_report_fig_confusion(t, c);
    if (c->curves && c->curves->n > 0) {
        mvmoe_rtext_puts(t, "<h2>Learning curves</h2>\n");
        mvmoe_report_fig_curves(t, c);
    }
    mvmoe_rtext_puts(t, "<h2>Experts</h2>\n");
    mvmoe_report_fig_experts(t, c);
    mvmoe_rtext_puts(t, "<h2>Routing errors</h2>\n");
    routing_table(t, c);
    mvmoe_rtext_puts(t, "<h2>Super-classes</h2>\n");
    superclass_section(t, c);
    inputs_section(t, c, confusion_path);
    mvmoe_rtext_puts(t, "</main>\n</body>\n</html>\n");
}

/* ---------------------------------------------------------------- files */

static mvmoe_status write_tmp(const char *path, const char *text, size_t len, char **tmp_out) {
    size_t n = strlen(path) + sizeof ".tmp";
    char *tmp;
    MVMOE_ALLOC(tmp, n, "report: file name");
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int err = errno;
        free(tmp);
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot create '%s.tmp': %s; check that the folder exists and is writable", path,
                   strerror(err));
    }
    int ok = fwrite(text, 1, len, f) == len;
    int err = errno;
    if (fclose(f) != 0 && ok) ok = 0, err = errno;
    if (!ok) {
        remove(tmp);
        free(tmp);
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot write '%s.tmp': %s; check free disk space", path, strerror(err));
    }
    *tmp_out = tmp;
    return MVMOE_OK;
}

static void set_date(char *buf, size_t cap) {
    /* SOURCE_DATE_EPOCH (reproducible-builds.org) pins the date for byte-identical reports. */
    time_t now = time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        char *end;
        long long v = strtoll(sde, &end, 10);
        if (*end == '\0' && v >= 0) now = (time_t)v;
    }
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm) == 0) snprintf(buf, cap, "(unknown date)");
}

/* ---------------------------------------------------------------- entry point */

typedef struct report_inputs {
    mvmoe_eval_json *ev, conf;
    int n_ev, have_conf, have_map;
    mvmoe_superclass_map map;
    mvmoe_report_stats st;
    mvmoe_report_curves curves;
} report_inputs;

static void inputs_free(report_inputs *in) {
    for (int i = 0; in->ev && i < in->n_ev; i++) mvmoe_eval_json_free(&in->ev[i]);
    free(in->ev);
    if (in->have_conf) mvmoe_eval_json_free(&in->conf);
    if (in->have_map) mvmoe_superclass_map_free(&in->map);
    mvmoe_report_stats_free(&in->st);
    mvmoe_report_curves_free(&in->curves);
}

/* An eval JSON as the report needs it: with its top-1 accuracy at least. */
static mvmoe_status load_eval(mvmoe_eval_json *e, const char *name, const char *path) {
    MVMOE_TRY(mvmoe_eval_json_load(e, name, path));
    if (isnan(e->top1)) {
        mvmoe_eval_json_free(e);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "eval JSON '%s' has no field \"top1\"; give files written by mvmoe eval --json",
                   path);
    }
    return MVMOE_OK;
}

static mvmoe_status load_inputs(report_inputs *in, const mvmoe_report_run *runs, int n_runs,
                                const mvmoe_report_options *o) {
    MVMOE_ALLOC(in->ev, n_runs, "report: runs");
    for (int i = 0; i < n_runs; i++) {
        if (!runs[i].name || !runs[i].name[0] || !runs[i].eval_path)
            MVMOE_FAIL(MVMOE_ERR_INVALID, "report: run %d has no name or no file", i + 1);
        MVMOE_TRY(load_eval(&in->ev[i], runs[i].name, runs[i].eval_path));
        in->n_ev++;
    }
    if (o->confusion_path) {
        MVMOE_TRY(load_eval(&in->conf, "--confusion", o->confusion_path));
        in->have_conf = 1;
        if (!in->conf.confusion)
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "eval JSON '%s' (--confusion) has no field \"confusion\"; give the output of mvmoe eval --json",
                       o->confusion_path);
    }
    if (o->superclass_path) {
        MVMOE_TRY(mvmoe_superclass_map_read(o->superclass_path, 0, &in->map));
        in->have_map = 1;
    }
    if (o->n_curves > 0) MVMOE_TRY(mvmoe_report_curves_load(&in->curves, o->curves, o->n_curves));
    return mvmoe_report_stats_build(&in->st, in->ev, in->n_ev);
}

/* The matrix to draw and the best class names known. */
static mvmoe_status fill_ctx(mvmoe_report_ctx *c, const report_inputs *in, const mvmoe_report_options *o) {
    memset(c, 0, sizeof *c);
    c->title = o->title && o->title[0] ? o->title : "Mobile V-MoE report";
    set_date(c->date, sizeof c->date);
    c->ev = in->ev;
    c->n_ev = in->n_ev;
    c->st = &in->st;
    c->map = in->have_map ? &in->map : NULL;
    c->curves = &in->curves;
    if (in->have_conf) c->confusion = &in->conf;
    for (int i = 0; !c->confusion && i < in->n_ev; i++)
        if (mvmoe_eval_json_is_dense(&in->ev[i]) && in->ev[i].confusion) c->confusion = &in->ev[i];
    const mvmoe_eval_json *named = c->confusion && c->confusion->class_names ? c->confusion : NULL;
    for (int i = 0; !named && i < in->n_ev; i++)
        if (in->ev[i].class_names) named = &in->ev[i];
    if (named) c->class_names = (const char *const *)named->class_names, c->K = named->K;
    else if (c->confusion) c->K = c->confusion->K;
    else if (c->map) c->K = c->map->K;
    if (c->map && c->confusion && c->confusion->K != c->map->K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class map '%s' has %d classes, but the confusion matrix of '%s' has %d; "
                   "give the map computed for this dataset", c->map->path, c->map->K, c->confusion->path, c->confusion->K);
    return MVMOE_OK;
}

mvmoe_status mvmoe_report_write(const mvmoe_report_run *runs, int n_runs, const mvmoe_report_options *o) {
    if (!o || !o->html_path || !runs || n_runs < 1)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "report: give at least one run and the HTML path");
    MVMOE_TRY(mvmoe_output_check(o->html_path, NULL));
    if (o->json_path) MVMOE_TRY(mvmoe_output_check(o->json_path, NULL));
    report_inputs in;
    memset(&in, 0, sizeof in);
    mvmoe_rtext page = {0};
    char *json = NULL, *tmp_html = NULL, *tmp_json = NULL;
    mvmoe_report_ctx c;
    mvmoe_status s = load_inputs(&in, runs, n_runs, o);
    if (s == MVMOE_OK) s = fill_ctx(&c, &in, o);
    if (s == MVMOE_OK) {
        build_page(&page, &c, o->confusion_path);
        s = mvmoe_rtext_status(&page, "the HTML report");
    }
    if (s == MVMOE_OK && o->json_path) s = mvmoe_report_json(&c, &json);
    if (s == MVMOE_OK) s = write_tmp(o->html_path, page.p, page.len, &tmp_html);
    if (s == MVMOE_OK && json) s = write_tmp(o->json_path, json, strlen(json), &tmp_json);
    if (s == MVMOE_OK && rename(tmp_html, o->html_path) != 0)
        s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__, "cannot rename '%s' to '%s': %s", tmp_html,
                            o->html_path, strerror(errno));
    if (s == MVMOE_OK && tmp_json && rename(tmp_json, o->json_path) != 0)
        s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__, "cannot rename '%s' to '%s': %s", tmp_json,
                            o->json_path, strerror(errno));
    if (s != MVMOE_OK) {
        if (tmp_html) remove(tmp_html);
        if (tmp_json) remove(tmp_json);
    }
    free(tmp_html);
    free(tmp_json);
    free(json);
    mvmoe_rtext_free(&page);
    inputs_free(&in);
    return s;
}
