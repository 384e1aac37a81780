/* mvmoe-run's parts (cli/run): the parsed command line and the three ways it runs. */
#ifndef MVMOE_RUN_CLI_H
#define MVMOE_RUN_CLI_H

#include <stdio.h>

#include "mvmoe_run.h"

enum { RUN_EXIT_OK = 0, RUN_EXIT_FAIL = 1, RUN_EXIT_USAGE = 2 };

typedef struct {
    const char *model, *data, *split, *logits, *routes;
    const char **images;
    int n_images, json, int8, threads, batch, max_images, latency, page_image, split_image;
    float adaptive_k;
} run_args;

/* eval.c */
int run_eval(const run_args *a, mvmoe_run *rt);
int run_predict(const run_args *a, mvmoe_run *rt);
int run_latency(const run_args *a, mvmoe_run *rt);
/* paging.c */
int run_page_report(const run_args *a);
/* util.c: seconds of a monotonic clock */
double run_now(void);
/* util.c: a JSON string literal of s on f */
void run_json_str(FILE *f, const char *s);

#endif
