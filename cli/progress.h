/* Training progress for `mvmoe train`, driven by the library's mvmoe_progress callbacks.
 *
 * On a terminal (stderr is a TTY): one line redrawn in place with '\r', at most ~10 times
 * a second. Otherwise (logs, pipes): a plain line every `log_every` steps. Either way one
 * summary line per epoch, and, if a metrics file is open, one JSON object per line (JSON
 * Lines) for every 10th step, the last step of each epoch, each epoch end and the end. */
#ifndef MVMOE_CLI_PROGRESS_H
#define MVMOE_CLI_PROGRESS_H

#include <stdio.h>

#include "mvmoe.h"

typedef struct mvmoe_cli_progress {
    FILE *out;             /* where the bar / log lines go (stderr) */
    int tty;               /* out is a terminal: single redrawn line */
    int width;             /* terminal columns (bar lines are cut to fit) */
    int bar_shown;         /* a bar is on screen and must be cleared before other output */
    double last_draw;      /* monotonic seconds of the last redraw */
    double epoch_start;    /* elapsed_s at the previous epoch end */
    int log_every;         /* plain mode: steps between log lines */
    int metrics_every;     /* steps between metrics lines */
    FILE *metrics;         /* JSON Lines file, or NULL */
    const char *metrics_path;
    int metrics_failed;    /* a write failed: warned once, no more lines */
    long long last_step;   /* global step of the latest step event (0: none yet) */
} mvmoe_cli_progress;

/* Opens the metrics file (NULL: none; append: keep earlier lines, for --resume).
 * Returns 0, or -1 with errno set if the file cannot be opened. */
int mvmoe_cli_progress_open(mvmoe_cli_progress *p, const char *metrics_path, int append);

/* The mvmoe_progress_fn; user is the mvmoe_cli_progress. */
void mvmoe_cli_progress_fn(const mvmoe_progress *pr, void *user);

/* Erases the bar line (call before printing anything else to the terminal). */
void mvmoe_cli_progress_clear(mvmoe_cli_progress *p);

/* Clears the bar and closes the metrics file. Returns 0, or -1 if any metrics write or the
 * close failed (a message has been printed). */
int mvmoe_cli_progress_close(mvmoe_cli_progress *p);

#endif
