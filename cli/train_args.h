/* Flags of `mvmoe train`: the help text and the parser that fills a train_args. */
#ifndef MVMOE_CLI_TRAIN_ARGS_H
#define MVMOE_CLI_TRAIN_ARGS_H

#include "common.h"
#include "memlimit.h"
#include "mvmoe.h"

#define MVMOE_TRAIN_DEFAULT_PRESET "vit-12x64"

/* Everything the flags say. Model fields are -1 when not given (the preset's value stays). */
typedef struct train_args {
    const char *data, *out, *preset, *metrics, *init, *superclasses, *upcycle;
    int resume, max_images, threads_given;
    int metrics_every; /* --metrics-every: steps between metrics lines (0: the default) */
    mvmoe_cli_shape shape;
    int routing_given;
    mvmoe_routing routing;
    mvmoe_train_options o;
    mvmoe_cli_memlimit mem; /* --max-memory */
} train_args;

/* Prints `mvmoe train --help` (defaults read from mvmoe_train_options_default). */
void mvmoe_train_args_help(void);
/* Fills *t from argv (argv[0] = "train"): 0, or MVMOE_EXIT_USAGE after printing why. */
int mvmoe_train_args_parse(train_args *t, int argc, char **argv);

#endif
