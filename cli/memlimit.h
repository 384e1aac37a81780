/* --max-memory: refuse, before allocating, a model or batch that would not fit the memory the
 * command may use (estimated by mvmoe_model_memory_estimate), with a message that says how
 * much it needs and what to change, instead of being killed by the kernel or swapping. */
#ifndef MVMOE_CLI_MEMLIMIT_H
#define MVMOE_CLI_MEMLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "args.h"
#include "mvmoe.h"

/* Default limit without the flag: this share of the memory available when the check runs
 * (MemAvailable in /proc/meminfo, or the cgroup's limit minus its usage if that is lower). */
#define MVMOE_CLI_MEMORY_SHARE 0.8

typedef struct mvmoe_cli_memlimit {
    int given;      /* --max-memory was given */
    uint64_t bytes; /* its value; 0: no limit */
} mvmoe_cli_memlimit;

#define MVMOE_CLI_MEMLIMIT_HELP                                                                 \
    "  --max-memory SIZE   refuse to start if the model, its training state and activations\n" \
    "                      need more than SIZE (bytes, or with K/M/G/T: 512M, 4G; 0: no limit;\n" \
    "                      default: 80 percent of the memory available now)\n"

/* "4G" -> 4 << 30; K/M/G/T are powers of 1024 (an optional trailing "B"/"iB" is accepted).
 * 0 on success, -1 if s is not a size. */
int mvmoe_cli_parse_size(const char *s, uint64_t *out);

/* If the current flag is --max-memory: reads it into l, sets *rc (0 or MVMOE_EXIT_USAGE) and
 * returns 1. Otherwise returns 0. */
int mvmoe_cli_memlimit_flag(mvmoe_args *a, mvmoe_cli_memlimit *l, int *rc);

/* Bytes this process may still use by default (see MVMOE_CLI_MEMORY_SHARE), before the share
 * is applied; 0 if unknown. */
uint64_t mvmoe_cli_memory_available(void);

/* Checks a model of config c at `batch` (training: 1, training with --ema: 2, which keeps one
 * more copy of the weights; inference: 0) against the limit. When weights_allocated, the
 * model is already loaded: its weights are in use and not counted again. 0 if it fits (or there is no limit), else prints why on stderr and returns
 * MVMOE_EXIT_FAIL. */
int mvmoe_cli_memlimit_check(const char *cmd, const mvmoe_cli_memlimit *l, const mvmoe_config *c,
                             int batch, int training, int weights_allocated);

#endif
