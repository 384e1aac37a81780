/* --precision fp32|bf16|int8: the precision of the layers' products (mvmoe_set_precision), shared
 * by the commands that run a model (train, eval, predict, bench). */
#ifndef MVMOE_CLI_PRECISION_H
#define MVMOE_CLI_PRECISION_H

#include "args.h"

#define MVMOE_CLI_PRECISION_HELP                                                               \
    "  --precision P       fp32 (default), bf16 or int8. bf16: the layers' products with\n"       \
    "                      bfloat16 operands and fp32 sums, on AMX / AVX-512 BF16 (faster;\n"    \
    "                      results are no longer fp32's: docs/PERFORMANCE.md, \"bf16\n"         \
    "                      products\"). int8 (eval, predict; bench times inference only;\n"  \
    "                      train refuses it): int8 weights per output channel, activations\n"  \
    "                      per token, int32 sums\n"                                            \
    "                      (docs/EDGE.md, \"int8\")\n"

/* If the current flag is --precision: reads it and applies it to the process, sets *rc (0,
 * MVMOE_EXIT_USAGE for an unknown name, MVMOE_EXIT_FAIL if this CPU has no bf16 kernel) and
 * returns 1. Otherwise returns 0. */
int mvmoe_cli_precision_flag(mvmoe_args *a, const char *cmd, int *rc);

#endif
