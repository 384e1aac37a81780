/* Learning curves for the report: the training metrics (`mvmoe train --metrics`, JSON Lines,
 * one object per line) of each run, reduced to validation accuracy per epoch and averaged over
 * the runs (seeds) that share a name. Only epoch-end records ("event": 1) count; a run that
 * was stopped and resumed may repeat an epoch, and its last record wins. Lines that are not
 * epoch-end records are skipped unparsed beyond their event, so a file from a run still in
 * progress (a last line cut short) reads as far as it is complete. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status.h"
#include "report/report.h"

void mvmoe_report_curves_free(mvmoe_report_curves *cs) {
    for (int i = 0; cs->curves && i < cs->n; i++) {
        free(cs->curves[i].val_mean);
        free(cs->curves[i].val_std);
        free(cs->curves[i].n_at);
    }
    free(cs->curves);
    memset(cs, 0, sizeof *cs);
}

/* One number of an epoch-end record; NaN when absent, null or not a number. */
static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* val[e] (e = 0 .. epochs-1) of one metrics file; *epochs = the run's planned epochs. */
static mvmoe_status read_file(const char *path, double **val, int *epochs) {
    char *text;
    size_t len;
    MVMOE_TRY(mvmoe_file_read(path, "training metrics (JSON Lines)", MVMOE_REPORT_METRICS_MAX_BYTES, &text, &len));
    *val = NULL;
    *epochs = 0;
    mvmoe_status s = MVMOE_OK;
    int line_no = 0;
    for (char *line = text, *next; s == MVMOE_OK && line < text + len; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : text + len;
        if (nl) *nl = '\0';
        line_no++;
        if (!strstr(line, "\"event\":1")) continue; /* steps and the end record */
        cJSON *o = cJSON_Parse(line);
        if (!o) {
            if (!nl) break; /* the last line of a run still writing */
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s:%d: not a JSON object; give the metrics file mvmoe train writes (--metrics)", path,
                                line_no);
            break;
        }
        double ep = num(o, "epoch"), eps = num(o, "epochs"), acc = num(o, "val_acc");
        cJSON_Delete(o);
        if (!(eps >= 1 && eps <= MVMOE_REPORT_MAX_EPOCHS && ep >= 1 && ep <= eps && ep == floor(ep) && eps == floor(eps))) {
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s:%d: an epoch-end record needs \"epoch\" from 1 to \"epochs\" (at most %d)", path,
                                line_no, MVMOE_REPORT_MAX_EPOCHS);
            break;
        }
        if (*epochs == 0) {
            *epochs = (int)eps;
            if (!(*val = malloc(sizeof **val * (size_t)*epochs))) {
                s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__, "report: learning curve of '%s'", path);
                break;
            }
            for (int e = 0; e < *epochs; e++) (*val)[e] = NAN;
        } else if ((int)eps != *epochs) {
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s:%d: \"epochs\" is %d here but %d above; one metrics file per run", path, line_no,
                                (int)eps, *epochs);
            break;
        }
        if (acc >= 0 && acc <= 1) (*val)[(int)ep - 1] = acc; /* not measured: stays NaN */
    }
    free(text);
    if (s == MVMOE_OK && *epochs == 0)
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "'%s' has no epoch-end record (\"event\":1); was the run stopped in its first epoch?", path);
    if (s != MVMOE_OK) {
        free(*val);
        *val = NULL;
    }
    return s;
}

/* Adds one file's values to curve c (sums now; means and stds at the end). */
static mvmoe_status accumulate(mvmoe_report_curve_stats *c, const double *val, int epochs, const char *path) {
    if (c->epochs == 0) {
        c->epochs = epochs;
        c->val_mean = calloc((size_t)epochs, sizeof *c->val_mean);
        c->val_std = calloc((size_t)epochs, sizeof *c->val_std);
        c->n_at = calloc((size_t)epochs, sizeof *c->n_at);
        if (!c->val_mean || !c->val_std || !c->n_at)
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "report: learning curve '%s'", c->name);
    } else if (c->epochs != epochs) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "report: '%s' trained %d epochs, but other runs named '%s' trained %d; one "
                   "name is one training recipe over seeds", path, epochs, c->name, c->epochs);
    }
    for (int e = 0; e < epochs; e++)
        if (isfinite(val[e])) { /* Welford: mean and sum of squared deviations */
            int n = ++c->n_at[e];
            double d = val[e] - c->val_mean[e];
            c->val_mean[e] += d / n;
            c->val_std[e] += d * (val[e] - c->val_mean[e]);
        }
    c->n_files++;
    return MVMOE_OK;
}

mvmoe_status mvmoe_report_curves_load(mvmoe_report_curves *cs, const mvmoe_report_curve *in, int n) {
    memset(cs, 0, sizeof *cs);
    if (n <= 0) return MVMOE_OK;
    MVMOE_ALLOC(cs->curves, n, "report: learning curves");
    mvmoe_status s = MVMOE_OK;
    for (int i = 0; s == MVMOE_OK && i < n; i++) {
        if (!in[i].name || !in[i].name[0] || !in[i].metrics_path) {
            s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__, "report: curve %d has no name or no file", i + 1);
            break;
        }
        int c = 0;
        while (c < cs->n && strcmp(cs->curves[c].name, in[i].name) != 0) c++;
        if (c == cs->n) cs->curves[cs->n++].name = in[i].name;
        double *val;
        int epochs;
        s = read_file(in[i].metrics_path, &val, &epochs);
        if (s == MVMOE_OK) s = accumulate(&cs->curves[c], val, epochs, in[i].metrics_path);
        free(val);
    }
    for (int c = 0; s == MVMOE_OK && c < cs->n; c++) {
        mvmoe_report_curve_stats *cv = &cs->curves[c];
        for (int e = 0; e < cv->epochs; e++) {
            if (cv->n_at[e] == 0) cv->val_mean[e] = NAN;
            cv->val_std[e] = cv->n_at[e] > 1 ? sqrt(cv->val_std[e] / (cv->n_at[e] - 1)) : NAN;
        }
    }
    if (s != MVMOE_OK) mvmoe_report_curves_free(cs);
    return s;
}
