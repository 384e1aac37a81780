/* Helpers shared by several commands: error reporting, config printing, load flags. */
#ifndef MVMOE_CLI_COMMON_H
#define MVMOE_CLI_COMMON_H

#include <stdio.h>

#include "args.h"
#include "mvmoe.h"

#define MVMOE_CLI_VERSION "0.1.0"

/* "mvmoe CMD: error: <mvmoe_last_error()>" on stderr; returns MVMOE_EXIT_FAIL. */
/* `mvmoe --verbose` or MVMOE_VERBOSE=1: failures also print mvmoe_last_error_where(). */
extern int mvmoe_cli_verbose;
int mvmoe_cli_fail(const char *cmd);

/* "12.3 MFLOPs" / "4.56 GFLOPs" / "789 kFLOPs". */
void mvmoe_cli_format_flops(double flops, char *buf, size_t cap);

/* Every config field, one "name value" line each (names as in the checkpoint's JSON), then
 * parameters, FLOPs and tokens per image. compact: a three-line summary instead. */
void mvmoe_cli_print_config(FILE *f, const mvmoe_config *c, int compact);

/* Whether DIR/SPLIT is a directory, i.e. an image-folder dataset (DIR/SPLIT/CLASS/img):
 * those are resized to the model's size when loaded; IDX and CIFAR have a fixed size. */
int mvmoe_cli_is_image_folder(const char *dir, const char *split);

/* The flags that say how to read a plain timm checkpoint (no config in the file):
 * --heads N, --mean a,b,c, --std a,b,c, --img-size N. */
typedef struct mvmoe_cli_load {
    mvmoe_load_options o;
    int n_mean, n_std;
} mvmoe_cli_load;

#define MVMOE_CLI_LOAD_FLAGS                                                                  \
    "  --img-size N        run at this image size (position embeddings resampled)\n"          \
    "  --heads N           attention heads, for plain timm checkpoints (no config inside)\n"  \
    "  --mean a,b,c        per-channel input mean (0..1), for plain timm checkpoints\n"       \
    "  --std a,b,c         per-channel input std, for plain timm checkpoints\n"          \
    "  --adaptive-k P      MoE with top_k >= 2: an image uses its 2nd..k-th experts only when\n" \
    "                      its top router probability is below P (docs/MOE.md, Adaptive k)\n"

void mvmoe_cli_load_init(mvmoe_cli_load *l);
/* If the current flag is one of the load flags: reads it into l, sets *rc (0 or
 * MVMOE_EXIT_USAGE) and returns 1. Otherwise returns 0. */
int mvmoe_cli_load_flag(mvmoe_args *a, mvmoe_cli_load *l, int *rc);
/* After all flags: checks --mean/--std agree; 0 or MVMOE_EXIT_USAGE. */
int mvmoe_cli_load_finish(const mvmoe_args *a, mvmoe_cli_load *l);

#endif
