/* Private interface of the report module (`mvmoe report`): a growable text buffer with
 * HTML/XML escaping, a tiny SVG writer, the readers of the training metrics, the per-name
 * statistics, and the figures. The public entry point is mvmoe_report_write (mvmoe.h). */
#ifndef MVMOE_REPORT_REPORT_H
#define MVMOE_REPORT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/superclass_map.h"
#include "io/eval_json.h"
#include "mvmoe.h"

/* ---------------------------------------------------------------- text buffer (text.c) */

/* Appends never fail at the call site: an allocation failure (or growth past
 * MVMOE_RTEXT_MAX) sets `oom` and later appends do nothing; mvmoe_rtext_status reports it
 * once, at the end. That keeps the drawing code free of error plumbing. */
#define MVMOE_RTEXT_MAX ((size_t)512 << 20)

typedef struct mvmoe_rtext {
    char *p;
    size_t len, cap;
    int oom;
} mvmoe_rtext;

void mvmoe_rtext_puts(mvmoe_rtext *t, const char *s);
void mvmoe_rtext_printf(mvmoe_rtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` escaped for HTML/XML text and attribute values (& < > " '). Control bytes
 * (invalid in XML) become '?'; tab and newline become a space. NULL appends nothing. */
void mvmoe_rtext_escape(mvmoe_rtext *t, const char *s);
/* Like mvmoe_rtext_escape, but at most `max_chars` UTF-8 characters, then "…". */
void mvmoe_rtext_escape_trunc(mvmoe_rtext *t, const char *s, int max_chars);
/* MVMOE_OK, or MVMOE_ERR_NOMEM with a message naming `what`. */
mvmoe_status mvmoe_rtext_status(const mvmoe_rtext *t, const char *what);
void mvmoe_rtext_free(mvmoe_rtext *t);

/* ---------------------------------------------------------------- SVG writer (svg.c) */

typedef struct mvmoe_svg_axis {
    double lo, hi; /* data range shown */
    int log;       /* 1: log10 scale (lo > 0) */
    const char *label;
} mvmoe_svg_axis;

/* A plot area in pixels and the data ranges mapped onto it. */
typedef struct mvmoe_svg_plot {
    double left, top, width, height;
    mvmoe_svg_axis x, y;
    int y_categorical; /* rows of bars: no y ticks or grid (the caller labels the rows) */
} mvmoe_svg_plot;

enum { MVMOE_SVG_CIRCLE = 0, MVMOE_SVG_SQUARE, MVMOE_SVG_TRIANGLE, MVMOE_SVG_DIAMOND, MVMOE_SVG_SHAPES };

/* Colour-blind-safe categorical colours (Okabe & Ito), black first, and a shape per index. */
const char *mvmoe_svg_color(int i);
int mvmoe_svg_shape(int i);
/* A sequential white-to-dark-blue colour for v in [0, 1] ("#rrggbb"), and whether text on it
 * must be white to stay readable. */
void mvmoe_svg_seq_color(double v, char out[8]);
int mvmoe_svg_seq_dark(double v);

/* <svg> with role="img", a <title> and a <desc> (both escaped); ids derive from `id`. */
void mvmoe_svg_begin(mvmoe_rtext *t, const char *id, double w, double h, const char *title,
                     const char *desc);
void mvmoe_svg_end(mvmoe_rtext *t);
/* Escaped text. anchor: "start", "middle", "end"; rotate in degrees about (x, y); `extra`
 * is a trusted attribute string (e.g. "font-weight='bold'") or NULL. */
void mvmoe_svg_text(mvmoe_rtext *t, double x, double y, const char *anchor, double size,
                    double rotate, const char *extra, const char *text);

/* Widens [lo, hi] to a readable range: a margin of `pad` times the span, at least `min_span`
 * wide; a log axis keeps lo > 0. */
void mvmoe_svg_axis_fit(mvmoe_svg_axis *a, double lo, double hi, double pad, double min_span);
/* Tick positions within the axis range (1-2-5 steps; on a log axis 1-2-5 per decade). */
int mvmoe_svg_ticks(const mvmoe_svg_axis *a, double *ticks, int max);
double mvmoe_svg_px(const mvmoe_svg_plot *p, double x);
double mvmoe_svg_py(const mvmoe_svg_plot *p, double y);
/* Frame, grid lines, tick labels and axis labels. */
void mvmoe_svg_axes(mvmoe_rtext *t, const mvmoe_svg_plot *p);
void mvmoe_svg_marker(mvmoe_rtext *t, double x, double y, int shape, const char *color);
/* Points joined by a line in the given order; yerr (may be NULL, entries may be NaN): error
 * bars of ± yerr; labels (may be NULL): small text beside each point. */
void mvmoe_svg_series(mvmoe_rtext *t, const mvmoe_svg_plot *p, const double *x, const double *y,
                      const double *yerr, const char *const *labels, int n, const char *color,
                      int shape);
/* Horizontal bars, one per row: n equal rows top to bottom, bar i's length v[i] on the x
 * axis; err may be NULL (entries NaN: none); NaN values draw no bar. The value is printed
 * after each bar (value_fmt, e.g. "%.1f%%") and is its tooltip. */
void mvmoe_svg_hbars(mvmoe_rtext *t, const mvmoe_svg_plot *p, const double *v, const double *err,
                     int n, const char *color, const char *value_fmt);
/* The y pixel of row i's centre for mvmoe_svg_hbars. */
double mvmoe_svg_row_y(const mvmoe_svg_plot *p, int n, int i);
/* A vertical dashed reference line at x, labelled at its top. */
void mvmoe_svg_vline(mvmoe_rtext *t, const mvmoe_svg_plot *p, double x, const char *label);
/* Legend rows (marker + name) from (x, y) downward. */
void mvmoe_svg_legend(mvmoe_rtext *t, double x, double y, const char *const *names,
                      const char *const *colors, const int *shapes, int n);

/* A K x K heatmap (a confusion matrix): value[i*K+j] in [0, 1] picks the colour; count
 * (or NULL) holds the numbers, printed in the cells when show_counts and, with tips, put in
 * each cell's tooltip ("ROW -> COL: count (value %)"); labels are drawn left of and below
 * the cells; after_group[i] != 0 draws a boundary after row/column i (after_group NULL: none). */
typedef struct mvmoe_svg_heatmap {
    double left, top, cell;
    int K;
    const double *value;
    const int64_t *count;
    int show_counts, tips;
    const char *const *labels;
    const unsigned char *after_group;
    const char *row_title, *col_title;
} mvmoe_svg_heatmap;
void mvmoe_svg_heatmap_draw(mvmoe_rtext *t, const mvmoe_svg_heatmap *h, const char *id);
/* How far the rotated column labels reach below the cells, in pixels; the horizontal row
 * labels need at most about 1.4 times that left of the cells. */
double mvmoe_svg_heatmap_label_extent(const mvmoe_svg_heatmap *h);
/* A vertical colour bar for mvmoe_svg_seq_color, 0 at the bottom, 1 at the top. */
void mvmoe_svg_colorbar(mvmoe_rtext *t, double x, double y, double w, double h, const char *id,
                        const char *lo_label, const char *hi_label);

/* The eval JSON files (`mvmoe eval --json`) are read by io/eval_json.c, the super-class map
 * (--superclasses) by analysis/superclass_map.c, the reader training uses too. */

/* ---------------------------------------------------------------- statistics (summary.c) */

/* The runs sharing one name (repeats over seeds), in order of first appearance. */
typedef struct mvmoe_report_group {
    const char *name;
    int n;                  /* seeds (files) */
    int *members;           /* [n] indices into the eval array */
    const mvmoe_eval_json *cfg; /* the first member with a config, or the first member */
    double top1_mean, top1_std;   /* std: sample std (n - 1), NaN when n < 2 */
    double top5_mean, top5_std;
    int n_top5;
    double flops, params, active_params;
    double router_acc_mean;
    int n_router;
    /* image-superclass: top-1 accuracy of the images routed to their super-class's expert and
     * of the others, and the others' share of the images (means over seeds; NaN: unknown) */
    double routed_acc_mean, misrouted_acc_mean, misrouted_share_mean;
    int dense_ref;          /* group index of the dense run of the same width, or -1 */
    double delta_vs_dense;  /* top1_mean - dense top1_mean, NaN when there is none */
    /* MoE: per-expert means over seeds (NaN where no seed has the number). */
    int E;
    int share_is_images;    /* 1: share of images (top-1 expert), 0: share of assignments */
    double *share_mean, *share_std, *acc_mean, *acc_std;
} mvmoe_report_group;

typedef struct mvmoe_report_stats {
    mvmoe_report_group *groups;
    int n_groups;
} mvmoe_report_stats;

/* Groups the evals by name and computes every statistic; runs of one name whose configs
 * disagree (routing, width, experts, top_k, MoE layers) are an error. */
mvmoe_status mvmoe_report_stats_build(mvmoe_report_stats *s, const mvmoe_eval_json *ev, int n);
void mvmoe_report_stats_free(mvmoe_report_stats *s);
int mvmoe_report_group_is_dense(const mvmoe_report_group *g);
/* Mean and sample standard deviation of the finite entries of v[n]; returns how many. */
int mvmoe_report_mean_std(const double *v, int n, double *mean, double *std);

/* ---------------------------------------------------------------- learning curves (curves.c) */

/* A metrics file holds ~10 short lines per 10 steps: 64 MiB is years of training. */
#define MVMOE_REPORT_METRICS_MAX_BYTES ((size_t)64 << 20)
#define MVMOE_REPORT_MAX_EPOCHS 100000

/* Validation accuracy per epoch of the runs sharing one name: mean and sample std over the
 * runs that measured it that epoch (NaN: none / fewer than two). */
typedef struct mvmoe_report_curve_stats {
    const char *name;      /* the caller's string */
    int epochs, n_files;
    double *val_mean, *val_std; /* [epochs] */
    int *n_at;                  /* [epochs] runs with a value */
} mvmoe_report_curve_stats;

typedef struct mvmoe_report_curves {
    mvmoe_report_curve_stats *curves; /* names in order of first appearance */
    int n;
} mvmoe_report_curves;

mvmoe_status mvmoe_report_curves_load(mvmoe_report_curves *cs, const mvmoe_report_curve *in, int n);
void mvmoe_report_curves_free(mvmoe_report_curves *cs);

/* ---------------------------------------------------------------- the page (figures.c, report.c) */

typedef struct mvmoe_report_ctx {
    const char *title;
    char date[32];
    const mvmoe_eval_json *ev;
    int n_ev;
    const mvmoe_report_stats *st;
    const mvmoe_eval_json *confusion;  /* the matrix to draw, or NULL */
    const mvmoe_superclass_map *map;     /* or NULL */
    const char *const *class_names;      /* [K] best names known, or NULL */
    int K;
    const mvmoe_report_curves *curves;   /* n == 0: no --curve given */
} mvmoe_report_ctx;

/* Each appends one <figure> (or a short note why there is none). */
void mvmoe_report_fig_accuracy(mvmoe_rtext *t, const mvmoe_report_ctx *c);
void mvmoe_report_fig_confusion(mvmoe_rtext *t, const mvmoe_report_ctx *c);
void mvmoe_report_fig_experts(mvmoe_rtext *t, const mvmoe_report_ctx *c);
void mvmoe_report_fig_curves(mvmoe_rtext *t, const mvmoe_report_ctx *c);

/* The JSON summary (--json): title, date, runs, superclasses. Caller frees *out. */
mvmoe_status mvmoe_report_json(const mvmoe_report_ctx *c, char **out);

#endif
