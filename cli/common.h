/* Helpers shared by several commands: error reporting, config printing, load flags. */
#ifndef MVMOE_CLI_COMMON_H
#define MVMOE_CLI_COMMON_H

#include <stdio.h>

#include "args.h"
#include "mvmoe.h"

/* "mvmoe CMD: error: <mvmoe_last_error()>" on stderr; returns MVMOE_EXIT_FAIL. */
/* A flag whose value is an int written at `offset` of a struct, in [lo, hi]. */
typedef struct mvmoe_cli_int_flag {
    const char *flag;
    size_t offset;
    long lo, hi;
} mvmoe_cli_int_flag;
/* If a's current flag is one of table[n]: parses it into base (*rc: its status) and returns
 * that entry; else NULL. */
const mvmoe_cli_int_flag *mvmoe_cli_int_flag_parse(mvmoe_args *a, const mvmoe_cli_int_flag *table,
                                                   size_t n, void *base, int *rc);

/* Model-shape flags shared by train and bench; -1: not given (the preset's value stays). */
typedef struct mvmoe_cli_shape {
    int img_size, in_chans, classes, patch, dim, depth, heads, mlp_dim, experts, top_k, moe_layers;
} mvmoe_cli_shape;
void mvmoe_cli_shape_init(mvmoe_cli_shape *s);
/* 1 if a's current flag is a shape flag (*rc: its parse status); --classes only with_classes. */
int mvmoe_cli_shape_flag(mvmoe_args *a, mvmoe_cli_shape *s, int with_classes, int *rc);
/* Whether any shape flag was given (--img-size counted only if with_img_size). */
int mvmoe_cli_shape_given(const mvmoe_cli_shape *s, int with_img_size);
/* The given sizes (image, channels, classes, patch, dim, depth, heads, mlp) into c ... */
void mvmoe_cli_shape_apply_sizes(const mvmoe_cli_shape *s, mvmoe_config *c);
/* ... and the given MoE shape (experts, top-k, MoE blocks), after the routing is settled. */
void mvmoe_cli_shape_apply_moe(const mvmoe_cli_shape *s, mvmoe_config *c);

/* `mvmoe --verbose` or MVMOE_VERBOSE=1: failures also print mvmoe_last_error_where(). */
extern int mvmoe_cli_verbose;
int mvmoe_cli_fail(const char *cmd);
/* The same for a failure of the file or folder a flag gave: "mvmoe CMD: error: FLAG: <message>",
 * so the user knows which argument to fix. */
int mvmoe_cli_fail_flag(const char *cmd, const char *flag);

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
