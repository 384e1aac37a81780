#include "progress.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BAR_CELLS 10
#define REDRAW_S 0.1 /* at most ~10 redraws a second: more only costs terminal time */

int mvmoe_cli_progress_open(mvmoe_cli_progress *p, const char *metrics_path, int append) {
    memset(p, 0, sizeof *p);
    p->out = stderr;
    p->tty = isatty(fileno(stderr));
    p->width = 80;
    if (p->tty) {
        struct winsize ws;
        if (ioctl(fileno(stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) p->width = ws.ws_col;
    }
    p->log_every = 50;
    p->metrics_every = 10;
    p->last_draw = -1.0;
    if (metrics_path) {
        p->metrics = fopen(metrics_path, append ? "a" : "w");
        if (!p->metrics) return -1;
        p->metrics_path = metrics_path;
    }
    return 0;
}

/* "12:34" or "1:02:03"; "--:--" when unknown. */
static void format_duration(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0 || s > 1e8) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

void mvmoe_cli_progress_clear(mvmoe_cli_progress *p) {
    if (p->tty && p->bar_shown) {
        fputs("\r\033[K", p->out); /* carriage return, erase to end of line (ECMA-48 EL) */
        fflush(p->out);
        p->bar_shown = 0;
    }
}

/* "epoch 3/30 [#####.....] step 120/422 loss 0.8123 lr 9.8e-04 1234 img/s ETA 12:34" */
static void draw_step(mvmoe_cli_progress *p, const mvmoe_progress *pr) {
    char eta[32], line[256];
    format_duration(pr->eta_s, eta, sizeof eta);
    int cells = 0;
    if (pr->steps_per_epoch > 0) {
        cells = (int)((long long)pr->step_in_epoch * BAR_CELLS / pr->steps_per_epoch);
        cells = cells < 0 ? 0 : cells > BAR_CELLS ? BAR_CELLS : cells;
    }
    char bar[BAR_CELLS + 1];
    for (int i = 0; i < BAR_CELLS; i++) bar[i] = i < cells ? '#' : '.';
    bar[BAR_CELLS] = '\0';
    if (p->tty) {
        snprintf(line, sizeof line, "epoch %d/%d [%s] step %d/%d loss %.4f lr %.1e %.0f img/s ETA %s",
                 pr->epoch, pr->epochs, bar, pr->step_in_epoch, pr->steps_per_epoch, pr->loss,
                 pr->lr, pr->images_per_s, eta);
        /* A line wider than the terminal wraps and '\r' would then redraw only its tail. */
        if ((int)strlen(line) > p->width - 1) line[p->width - 1] = '\0';
        fprintf(p->out, "\r%s\033[K", line);
        p->bar_shown = 1;
    } else {
        fprintf(p->out, "epoch %d/%d step %d/%d (global %lld/%lld) loss %.4f lr %.1e grad-norm %.3f %.0f img/s ETA %s",
                pr->epoch, pr->epochs, pr->step_in_epoch, pr->steps_per_epoch, (long long)pr->step,
                (long long)pr->steps_total, pr->loss, pr->lr, pr->grad_norm, pr->images_per_s, eta);
        if (pr->comm_bytes > 0) /* data parallel: what rank 0's sums of this step cost */
            fprintf(p->out, " | comm %.1f ms %.2f MB/rank", 1e3 * pr->comm_s, pr->comm_bytes / 1e6);
        if (pr->a2a_bytes > 0) /* expert parallel: the images' all-to-alls of this step */
            fprintf(p->out, " | all-to-all %.2f MB/rank", pr->a2a_bytes / 1e6);
        fputc('\n', p->out);
    }
    fflush(p->out);
}

/* Short spans in seconds ("5.3 s"), longer ones as a clock ("12:34"). */
static void format_span(double s, char *buf, size_t cap) {
    if (isfinite(s) && s >= 0 && s < 60) snprintf(buf, cap, "%.1f s", s);
    else format_duration(s, buf, cap);
}

static void draw_epoch(mvmoe_cli_progress *p, const mvmoe_progress *pr) {
    char took[32];
    format_span(pr->elapsed_s - p->epoch_start, took, sizeof took);
    p->epoch_start = pr->elapsed_s;
    mvmoe_cli_progress_clear(p);
    fprintf(p->out, "epoch %d/%d done: train loss %.4f", pr->epoch, pr->epochs, pr->loss);
    if (pr->train_acc >= 0) fprintf(p->out, " acc %.2f%%", 100.0 * pr->train_acc);
    if (pr->val_acc >= 0) fprintf(p->out, " | val loss %.4f acc %.2f%%", pr->val_loss, 100.0 * pr->val_acc);
    fprintf(p->out, " | %.0f img/s | %s\n", pr->images_per_s, took);
    fflush(p->out);
}

/* JSON has no NaN/Inf: those become null. %.7g keeps float precision without noise digits. */
static void json_num(FILE *f, const char *name, double v) {
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.7g", name, v);
    else
        fprintf(f, ",\"%s\":null", name);
}

static void write_metrics(mvmoe_cli_progress *p, const mvmoe_progress *pr) {
    FILE *f = p->metrics;
    fprintf(f, "{\"event\":%d,\"epoch\":%d,\"epochs\":%d,\"step\":%lld,\"steps_total\":%lld,"
               "\"step_in_epoch\":%d,\"steps_per_epoch\":%d",
            pr->event, pr->epoch, pr->epochs, (long long)pr->step, (long long)pr->steps_total,
            pr->step_in_epoch, pr->steps_per_epoch);
    json_num(f, "loss", pr->loss);
    json_num(f, "lr", pr->lr);
    json_num(f, "grad_norm", pr->grad_norm);
    json_num(f, "images_per_s", pr->images_per_s);
    json_num(f, "eta_s", pr->eta_s);
    json_num(f, "elapsed_s", pr->elapsed_s);
    if (pr->event == 0 && pr->comm_bytes > 0) { /* data parallel: this step's sums */
        json_num(f, "comm_s", pr->comm_s);
        json_num(f, "comm_bytes", pr->comm_bytes);
    }
    if (pr->event == 0 && pr->a2a_bytes > 0) json_num(f, "a2a_bytes", pr->a2a_bytes);
    if (pr->event != 0) {
        json_num(f, "train_acc", pr->train_acc >= 0 ? pr->train_acc : NAN);
        json_num(f, "val_acc", pr->val_acc >= 0 ? pr->val_acc : NAN);
        json_num(f, "val_loss", pr->val_acc >= 0 ? pr->val_loss : NAN);
    }
    fputs("}\n", f);
    /* Flushed per line so that a crash or Ctrl-C loses at most the line being written, and
     * `tail -f` shows progress live. */
    if (fflush(f) != 0 || ferror(f)) {
        int e = errno;
        p->metrics_failed = 1;
        mvmoe_cli_progress_clear(p);
        fprintf(p->out, "mvmoe train: warning: cannot write metrics file '%s': %s; no more metrics will be written (training goes on)\n",
                p->metrics_path, strerror(e));
    }
}

void mvmoe_cli_progress_fn(const mvmoe_progress *pr, void *user) {
    mvmoe_cli_progress *p = user;
    int last_of_epoch = pr->step_in_epoch >= pr->steps_per_epoch;
    if (pr->event == 0) {
        p->last_step = (long long)pr->step;
        double t = mvmoe_clock_seconds();
        if (p->tty) {
            if (p->last_draw < 0 || t - p->last_draw >= REDRAW_S || last_of_epoch) {
                draw_step(p, pr);
                p->last_draw = t;
            }
        } else if (pr->step_in_epoch == 1 || pr->step_in_epoch % p->log_every == 0) {
            draw_step(p, pr);
        }
    } else if (pr->event == 1) {
        draw_epoch(p, pr);
    } else {
        char took[32];
        format_span(pr->elapsed_s, took, sizeof took);
        mvmoe_cli_progress_clear(p);
        fprintf(p->out, "training done: step %lld of %lld, %s\n", (long long)pr->step,
                (long long)pr->steps_total, took);
        fflush(p->out);
    }
    if (p->metrics && !p->metrics_failed &&
        (pr->event != 0 || pr->step % p->metrics_every == 0 || last_of_epoch))
        write_metrics(p, pr);
}

int mvmoe_cli_progress_close(mvmoe_cli_progress *p) {
    mvmoe_cli_progress_clear(p);
    int rc = p->metrics_failed ? -1 : 0;
    if (p->metrics) {
        if (fclose(p->metrics) != 0) {
            fprintf(p->out, "mvmoe train: warning: cannot finish metrics file '%s': %s\n",
                    p->metrics_path, strerror(errno));
            rc = -1;
        }
        p->metrics = NULL;
    }
    return rc;
}
