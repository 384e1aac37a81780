/* A tiny SVG writer for the report's figures: axes with 1-2-5 ticks (linear or log), lines
 * with markers and error bars, bars, a heatmap, a legend. Output is plain SVG 1.1 inlined in
 * HTML: no script, no external resources. Every text from the inputs is escaped. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report/report.h"

/* Okabe & Ito's palette (colour-blind safe) without its yellow, which is unreadable on white;
 * shapes repeat with a different period, so neighbours differ in shape as well. */
static const char *const PALETTE[] = {"#000000", "#E69F00", "#0072B2", "#009E73",
                                      "#D55E00", "#56B4E9", "#CC79A7", "#7f7f7f"};
#define N_PALETTE ((int)(sizeof PALETTE / sizeof PALETTE[0]))

const char *mvmoe_svg_color(int i) { return PALETTE[((i % N_PALETTE) + N_PALETTE) % N_PALETTE]; }
int mvmoe_svg_shape(int i) { return ((i % MVMOE_SVG_SHAPES) + MVMOE_SVG_SHAPES) % MVMOE_SVG_SHAPES; }

/* ColorBrewer "Blues", white to dark blue: ordered by lightness, so it reads in grey too. */
static const unsigned char SEQ[][3] = {{247, 251, 255}, {222, 235, 247}, {198, 219, 239},
                                       {158, 202, 225}, {107, 174, 214}, {66, 146, 198},
                                       {33, 113, 181},  {8, 81, 156},    {8, 48, 107}};
#define N_SEQ ((int)(sizeof SEQ / sizeof SEQ[0]))

void mvmoe_svg_seq_color(double v, char out[8]) {
    if (!(v >= 0)) v = 0; /* NaN too */
    if (v > 1) v = 1;
    double f = v * (N_SEQ - 1);
    int i = (int)f;
    if (i >= N_SEQ - 1) i = N_SEQ - 2;
    double w = f - i;
    int rgb[3];
    for (int c = 0; c < 3; c++) rgb[c] = (int)lround(SEQ[i][c] * (1 - w) + SEQ[i + 1][c] * w);
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* Above this the blue is dark enough that white text has the better contrast. */
int mvmoe_svg_seq_dark(double v) { return v >= 0.62; }

void mvmoe_svg_begin(mvmoe_rtext *t, const char *id, double w, double h, const char *title,
                     const char *desc) {
    mvmoe_rtext_printf(t,
                       "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" viewBox=\"0 0 %.0f %.0f\" "
                       "width=\"%.0f\" height=\"%.0f\" role=\"img\" aria-labelledby=\"%s-t %s-d\" "
                       "font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\" font-size=\"12\">\n"
                       "<title id=\"%s-t\">",
                       id, w, h, w, h, id, id, id);
    mvmoe_rtext_escape(t, title);
    mvmoe_rtext_printf(t, "</title>\n<desc id=\"%s-d\">", id);
    mvmoe_rtext_escape(t, desc);
    mvmoe_rtext_puts(t, "</desc>\n<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
}

void mvmoe_svg_end(mvmoe_rtext *t) { mvmoe_rtext_puts(t, "</svg>\n"); }

void mvmoe_svg_text(mvmoe_rtext *t, double x, double y, const char *anchor, double size,
                    double rotate, const char *extra, const char *text) {
    mvmoe_rtext_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%.1f\"", x, y,
                       anchor, size);
    if (rotate != 0) mvmoe_rtext_printf(t, " transform=\"rotate(%.1f %.1f %.1f)\"", rotate, x, y);
    if (extra) mvmoe_rtext_printf(t, " %s", extra);
    mvmoe_rtext_puts(t, ">");
    mvmoe_rtext_escape(t, text);
    mvmoe_rtext_puts(t, "</text>\n");
}

/* ---------------------------------------------------------------- axes */

void mvmoe_svg_axis_fit(mvmoe_svg_axis *a, double lo, double hi, double pad, double min_span) {
    if (!isfinite(lo) || !isfinite(hi) || lo > hi) lo = 0, hi = 1;
    if (a->log && lo > 0) {
        double l = log10(lo), h = log10(hi), span = h - l;
        if (span < 0.3) { /* less than a factor of two: centre a factor-of-two window */
            double c = (l + h) / 2;
            l = c - 0.15, h = c + 0.15, span = 0.3;
        }
        a->lo = pow(10, l - pad * span);
        a->hi = pow(10, h + pad * span);
        return;
    }
    a->log = 0;
    double span = hi - lo;
    if (span < min_span) {
        double c = (lo + hi) / 2;
        lo = c - min_span / 2, hi = c + min_span / 2, span = min_span;
    }
    a->lo = lo - pad * span;
    a->hi = hi + pad * span;
}

static double nice_step(double raw) {
    if (!(raw > 0)) return 1;
    double mag = pow(10, floor(log10(raw))), norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * mag;
}

int mvmoe_svg_ticks(const mvmoe_svg_axis *a, double *ticks, int max) {
    int n = 0;
    if (a->log) {
        static const int steps[2][9] = {{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
        static const int n_steps[2] = {3, 9};
        /* 1-2-5 per decade, or every integer multiple when that gives fewer than 3 ticks */
        for (int dense = 0; dense < 2; dense++) {
            n = 0;
            for (int d = (int)floor(log10(a->lo)); d <= (int)ceil(log10(a->hi)) && n < max; d++)
                for (int m = 0; m < n_steps[dense] && n < max; m++) {
                    double v = steps[dense][m] * pow(10, d);
                    if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9)) ticks[n++] = v;
                }
            if (n >= 3) break;
        }
        return n;
    }
    double step = nice_step((a->hi - a->lo) / 5);
    for (double v = ceil(a->lo / step - 1e-9) * step; v <= a->hi + 1e-9 * step && n < max; v += step)
        ticks[n++] = fabs(v) < 1e-12 * step ? 0 : v;
    return n;
}

static double frac(const mvmoe_svg_axis *a, double v) {
    if (a->log) return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return (v - a->lo) / (a->hi - a->lo);
}

double mvmoe_svg_px(const mvmoe_svg_plot *p, double x) { return p->left + frac(&p->x, x) * p->width; }
double mvmoe_svg_py(const mvmoe_svg_plot *p, double y) {
    return p->top + (1 - frac(&p->y, y)) * p->height;
}

/* Decimals that make ticks `step` apart distinct. */
static void tick_label(const mvmoe_svg_axis *a, const double *ticks, int n, int i, char *buf, size_t cap) {
    if (a->log) {
        snprintf(buf, cap, "%g", ticks[i]);
        return;
    }
    double step = n > 1 ? ticks[1] - ticks[0] : 1;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    snprintf(buf, cap, "%.*f", dec, ticks[i]);
}

void mvmoe_svg_axes(mvmoe_rtext *t, const mvmoe_svg_plot *p) {
    double ticks[64];
    char buf[32];
    double bottom = p->top + p->height, right = p->left + p->width;
    int n = mvmoe_svg_ticks(&p->x, ticks, 64);
    mvmoe_rtext_puts(t, "<g stroke=\"#d9d9d9\" stroke-width=\"1\">\n");
    for (int i = 0; i < n; i++) {
        double x = mvmoe_svg_px(p, ticks[i]);
        mvmoe_rtext_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, p->top, x, bottom);
    }
    int m = p->y_categorical ? 0 : mvmoe_svg_ticks(&p->y, ticks + n, 64 - n);
    for (int i = 0; i < m; i++) {
        double y = mvmoe_svg_py(p, ticks[n + i]);
        mvmoe_rtext_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p->left, y, right, y);
    }
    mvmoe_rtext_puts(t, "</g>\n");
    mvmoe_rtext_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
                       p->left, p->top, p->width, p->height);
    for (int i = 0; i < n; i++) {
        tick_label(&p->x, ticks, n, i, buf, sizeof buf);
        mvmoe_svg_text(t, mvmoe_svg_px(p, ticks[i]), bottom + 16, "middle", 12, 0, NULL, buf);
    }
    for (int i = 0; i < m; i++) {
        tick_label(&p->y, ticks + n, m, i, buf, sizeof buf);
        mvmoe_svg_text(t, p->left - 6, mvmoe_svg_py(p, ticks[n + i]) + 4, "end", 12, 0, NULL, buf);
    }
    if (p->x.label)
        mvmoe_svg_text(t, p->left + p->width / 2, bottom + 36, "middle", 13, 0, NULL, p->x.label);
    if (p->y.label)
        mvmoe_svg_text(t, p->left - 46, p->top + p->height / 2, "middle", 13, -90, NULL, p->y.label);
}

/* ---------------------------------------------------------------- marks */

void mvmoe_svg_marker(mvmoe_rtext *t, double x, double y, int shape, const char *color) {
    const char *style = "stroke=\"#ffffff\" stroke-width=\"1\"";
    switch (mvmoe_svg_shape(shape)) {
    case MVMOE_SVG_SQUARE:
        mvmoe_rtext_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\" %s/>\n",
                           x - 5, y - 5, color, style);
        break;
    case MVMOE_SVG_TRIANGLE:
        mvmoe_rtext_printf(t, "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" fill=\"%s\" %s/>\n", x, y - 6.5,
                           x + 6, y + 4.5, x - 6, y + 4.5, color, style);
        break;
    case MVMOE_SVG_DIAMOND:
        mvmoe_rtext_printf(t, "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" fill=\"%s\" %s/>\n", x,
                           y - 7, x + 6, y, x, y + 7, x - 6, y, color, style);
        break;
    default:
        mvmoe_rtext_printf(t, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5.5\" fill=\"%s\" %s/>\n", x, y, color, style);
    }
}

static int finite_point(const mvmoe_svg_plot *p, double x, double y) {
    return isfinite(x) && isfinite(y) && (!p->x.log || x > 0) && (!p->y.log || y > 0);
}

void mvmoe_svg_series(mvmoe_rtext *t, const mvmoe_svg_plot *p, const double *x, const double *y,
                      const double *yerr, const char *const *labels, int n, const char *color,
                      int shape) {
    int shown = 0;
    for (int i = 0; i < n; i++) shown += finite_point(p, x[i], y[i]);
    if (shown > 1) {
        mvmoe_rtext_printf(t, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (int i = 0; i < n; i++)
            if (finite_point(p, x[i], y[i]))
                mvmoe_rtext_printf(t, "%.1f,%.1f ", mvmoe_svg_px(p, x[i]), mvmoe_svg_py(p, y[i]));
        mvmoe_rtext_puts(t, "\"/>\n");
    }
    for (int i = 0; i < n; i++) {
        if (!finite_point(p, x[i], y[i])) continue;
        double px = mvmoe_svg_px(p, x[i]), py = mvmoe_svg_py(p, y[i]);
        if (yerr && isfinite(yerr[i]) && yerr[i] > 0) {
            double y0 = mvmoe_svg_py(p, y[i] - yerr[i]), y1 = mvmoe_svg_py(p, y[i] + yerr[i]);
            mvmoe_rtext_printf(t,
                               "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"%s\" "
                               "stroke-width=\"1.5\" fill=\"none\"/>\n",
                               px, y0, y1, px - 4, y0, px + 4, px - 4, y1, px + 4, color);
        }
        mvmoe_svg_marker(t, px, py, shape, color);
        if (labels && labels[i])
            mvmoe_svg_text(t, px + 8, py - 8, "start", 11, 0,
                           "fill=\"#333\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\"", labels[i]);
    }
}

double mvmoe_svg_row_y(const mvmoe_svg_plot *p, int n, int i) {
    return p->top + (i + 0.5) * p->height / (n > 0 ? n : 1);
}

void mvmoe_svg_hbars(mvmoe_rtext *t, const mvmoe_svg_plot *p, const double *v, const double *err,
                     int n, const char *color, const char *value_fmt) {
    double bh = 0.68 * p->height / (n > 0 ? n : 1);
    double base = mvmoe_svg_px(p, p->x.lo > 0 ? p->x.lo : 0);
    double fs = bh < 11 ? (bh < 7 ? 7 : bh) : 11;
    for (int i = 0; i < n; i++) {
        double cy = mvmoe_svg_row_y(p, n, i);
        if (!isfinite(v[i])) {
            mvmoe_svg_text(t, base + 4, cy + fs * 0.36, "start", fs, 0, "fill=\"#555\"", "no data");
            continue;
        }
        double end = mvmoe_svg_px(p, v[i]);
        char val[64];
        snprintf(val, sizeof val, value_fmt, v[i]);
        mvmoe_rtext_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>",
                           end < base ? end : base, cy - bh / 2, fabs(end - base), bh, color);
        mvmoe_rtext_escape(t, val);
        mvmoe_rtext_puts(t, "</title></rect>\n");
        double label_x = end;
        if (err && isfinite(err[i]) && err[i] > 0) {
            double x0 = mvmoe_svg_px(p, v[i] - err[i] > p->x.lo ? v[i] - err[i] : p->x.lo);
            double x1 = mvmoe_svg_px(p, v[i] + err[i]);
            mvmoe_rtext_printf(t,
                               "<path d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f\" stroke=\"#222\" "
                               "stroke-width=\"1.2\" fill=\"none\"/>\n",
                               x0, cy, x1, x0, cy - 4, cy + 4, x1, cy - 4, cy + 4);
            if (x1 > label_x) label_x = x1;
        }
        /* a white halo keeps the number readable where it crosses a reference line */
        mvmoe_svg_text(t, label_x + 4, cy + fs * 0.36, "start", fs, 0,
                       "stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\"", val);
    }
}

void mvmoe_svg_vline(mvmoe_rtext *t, const mvmoe_svg_plot *p, double x, const char *label) {
    if (!isfinite(x) || x < p->x.lo || x > p->x.hi) return;
    double px = mvmoe_svg_px(p, x);
    mvmoe_rtext_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#D55E00\" "
                          "stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n",
                       px, p->top, px, p->top + p->height);
    if (label) mvmoe_svg_text(t, px, p->top - 5, "middle", 11, 0, "fill=\"#a04000\"", label);
}

void mvmoe_svg_legend(mvmoe_rtext *t, double x, double y, const char *const *names,
                      const char *const *colors, const int *shapes, int n) {
    for (int i = 0; i < n; i++) {
        double cy = y + 20 * i;
        mvmoe_rtext_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                           x, cy, x + 22, cy, colors[i]);
        mvmoe_svg_marker(t, x + 11, cy, shapes[i], colors[i]);
        mvmoe_svg_text(t, x + 30, cy + 4, "start", 12, 0, NULL, names[i]);
    }
}

/* ---------------------------------------------------------------- heatmap */

static int utf8_chars(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Labels are cut at 22 characters; a character is ~0.6 em wide; column labels at 45 degrees
 * reach sin(45) of their length below the cells. */
#define LABEL_MAX_CHARS 22

static double label_size(const mvmoe_svg_heatmap *h) { return h->cell < 12 ? h->cell : 12; }

/* Column labels run at 45 degrees while that leaves them room; closer columns get vertical
 * labels, which need only one font height of spacing. */
static int label_angle(const mvmoe_svg_heatmap *h) { return h->cell >= 20 ? 45 : 90; }

double mvmoe_svg_heatmap_label_extent(const mvmoe_svg_heatmap *h) {
    if (!h->labels || label_size(h) < 6) return 8; /* too small to draw: none */
    int longest = 1;
    for (int i = 0; h->labels && i < h->K; i++) {
        int n = utf8_chars(h->labels[i]);
        if (n > longest) longest = n;
    }
    if (longest > LABEL_MAX_CHARS) longest = LABEL_MAX_CHARS + 1;
    return 8 + longest * label_size(h) * 0.6 * (label_angle(h) == 90 ? 1 : 0.7071) + label_size(h);
}

void mvmoe_svg_heatmap_draw(mvmoe_rtext *t, const mvmoe_svg_heatmap *h, const char *id) {
    int K = h->K;
    double c = h->cell, size = K * c, fs = c * 0.34 < 12 ? c * 0.34 : 12;
    char color[8];
    mvmoe_rtext_printf(t, "<g id=\"%s-cells\">\n", id);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double v = h->value[(size_t)i * K + j];
            mvmoe_svg_seq_color(v, color);
            mvmoe_rtext_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\">",
                               h->left + j * c, h->top + i * c, c + 0.05, c + 0.05, color);
            if (h->tips && h->count) {
                mvmoe_rtext_puts(t, "<title>");
                mvmoe_rtext_escape(t, h->labels ? h->labels[i] : "");
                mvmoe_rtext_puts(t, " \xE2\x86\x92 ");
                mvmoe_rtext_escape(t, h->labels ? h->labels[j] : "");
                mvmoe_rtext_printf(t, ": %lld (%.1f%%)</title>", (long long)h->count[(size_t)i * K + j], 100 * v);
            }
            mvmoe_rtext_puts(t, "</rect>\n");
            if (h->show_counts && h->count) {
                char num[24];
                snprintf(num, sizeof num, "%lld", (long long)h->count[(size_t)i * K + j]);
                mvmoe_svg_text(t, h->left + (j + 0.5) * c, h->top + (i + 0.5) * c + fs * 0.36, "middle", fs, 0,
                               mvmoe_svg_seq_dark(v) ? "fill=\"#ffffff\"" : "fill=\"#111111\"", num);
            }
        }
    mvmoe_rtext_puts(t, "</g>\n");
    if (h->after_group) {
        mvmoe_rtext_puts(t, "<g stroke=\"#E69F00\" stroke-width=\"3\">\n");
        for (int i = 0; i + 1 < K; i++) {
            if (!h->after_group[i]) continue;
            double o = (i + 1) * c;
            mvmoe_rtext_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", h->left,
                               h->top + o, h->left + size, h->top + o);
            mvmoe_rtext_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", h->left + o,
                               h->top, h->left + o, h->top + size);
        }
        mvmoe_rtext_puts(t, "</g>\n");
    }
    mvmoe_rtext_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
                       h->left, h->top, size, size);
    double lfs = label_size(h);
    if (h->labels && lfs >= 6) {
        for (int i = 0; i < K; i++) {
            mvmoe_rtext_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%.1f\">",
                               h->left - 6, h->top + (i + 0.5) * c + lfs * 0.36, lfs);
            mvmoe_rtext_escape_trunc(t, h->labels[i], LABEL_MAX_CHARS);
            mvmoe_rtext_puts(t, "</text>\n");
            double x = h->left + (i + 0.5) * c, y = h->top + size + 8;
            mvmoe_rtext_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%.1f\" "
                                  "transform=\"rotate(-%d %.1f %.1f)\">",
                               x + lfs * 0.3, y, lfs, label_angle(h), x + lfs * 0.3, y);
            mvmoe_rtext_escape_trunc(t, h->labels[i], LABEL_MAX_CHARS);
            mvmoe_rtext_puts(t, "</text>\n");
        }
    }
    if (h->row_title)
        mvmoe_svg_text(t, 16, h->top + size / 2, "middle", 13, -90, "font-weight=\"bold\"", h->row_title);
    if (h->col_title)
        mvmoe_svg_text(t, h->left + size / 2, h->top + size + mvmoe_svg_heatmap_label_extent(h) + 18, "middle", 13, 0,
                       "font-weight=\"bold\"", h->col_title);
}

void mvmoe_svg_colorbar(mvmoe_rtext *t, double x, double y, double w, double h, const char *id,
                        const char *lo_label, const char *hi_label) {
    char color[8];
    mvmoe_rtext_printf(t, "<defs><linearGradient id=\"%s-grad\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n", id);
    for (int i = 0; i <= 8; i++) {
        mvmoe_svg_seq_color(i / 8.0, color);
        mvmoe_rtext_printf(t, "<stop offset=\"%.3f\" stop-color=\"%s\"/>\n", i / 8.0, color);
    }
    mvmoe_rtext_puts(t, "</linearGradient></defs>\n");
    mvmoe_rtext_printf(t, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"url(#%s-grad)\" stroke=\"#444\"/>\n",
                       x, y, w, h, id);
    mvmoe_svg_text(t, x + w + 6, y + 10, "start", 12, 0, NULL, hi_label);
    mvmoe_svg_text(t, x + w + 6, y + h, "start", 12, 0, NULL, lo_label);
}
