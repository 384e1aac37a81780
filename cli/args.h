/* Command-line flag parsing for the mvmoe commands.
 *
 * Every command walks its argv with mvmoe_args_next and converts values with the checked
 * readers below. A bad value never gets through silently: the readers print one line naming
 * the command, the flag and the offending value, and return MVMOE_EXIT_USAGE, which the
 * command returns to main (the only place that exits). Flags take "--flag VALUE" or
 * "--flag=VALUE"; "--" ends the flags. */
#ifndef MVMOE_CLI_ARGS_H
#define MVMOE_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

/* Process exit codes of every command. 130 = 128 + SIGINT, the shell's convention. */
enum {
    MVMOE_EXIT_OK = 0,
    MVMOE_EXIT_FAIL = 1,
    MVMOE_EXIT_USAGE = 2,
    MVMOE_EXIT_INTERRUPTED = 130
};

/* Range bounds for the float reader: open (exclusive) lower / upper bound. */
enum { MVMOE_ARGS_LO_OPEN = 1, MVMOE_ARGS_HI_OPEN = 2 };

typedef struct mvmoe_args {
    const char *cmd;      /* command name for messages, e.g. "train" */
    const char *synopsis; /* one-paragraph usage printed under an unknown-flag error */
    int argc;
    char **argv;
    int i;                /* next argv index */
    int flags_done;       /* "--" seen: everything after is positional */
    const char *flag;     /* the current flag without any "=value", e.g. "--epochs" */
    const char *inline_value; /* the text after '=' or NULL */
    char name[64];        /* storage for `flag` when it came with "=value" */
} mvmoe_args;

/* argv[0] is the command name itself; parsing starts at argv[1]. */
void mvmoe_args_init(mvmoe_args *a, const char *cmd, const char *synopsis, int argc, char **argv);

/* Next argument: 1 = a flag (a->flag set), 0 = a positional (*positional set), -1 = done. */
int mvmoe_args_next(mvmoe_args *a, const char **positional);

/* Whether the current flag is `name` (e.g. "--epochs"). */
int mvmoe_args_is(const mvmoe_args *a, const char *name);

/* Value readers for the current flag: 0 on success, else MVMOE_EXIT_USAGE after printing. */
int mvmoe_args_str(mvmoe_args *a, const char **out);
int mvmoe_args_int(mvmoe_args *a, long lo, long hi, int *out);
int mvmoe_args_u64(mvmoe_args *a, uint64_t *out);
int mvmoe_args_float(mvmoe_args *a, double lo, double hi, int open, float *out);
/* Comma-separated list of 1..max floats in [lo, hi] (e.g. --mean 0.5,0.5,0.5). */
int mvmoe_args_floats(mvmoe_args *a, double lo, double hi, int max, float *out, int *n);
/* Exactly n comma-separated integers, element i in [lo[i], hi[i]] (e.g. --randaug 2,9). */
int mvmoe_args_ints(mvmoe_args *a, int n, const long *lo, const long *hi, int *out);
/* A switch (e.g. --json): 0, or MVMOE_EXIT_USAGE if it was written as "--json=VALUE". */
int mvmoe_args_switch(mvmoe_args *a);

/* "unknown flag" + synopsis on stderr; returns MVMOE_EXIT_USAGE. */
int mvmoe_args_unknown(const mvmoe_args *a);
/* Any other usage error: "mvmoe CMD: <message>" + a --help hint; returns MVMOE_EXIT_USAGE. */
int mvmoe_args_error(const mvmoe_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether the command's argv asks for help (-h / --help anywhere before "--"). */
int mvmoe_args_wants_help(int argc, char **argv);

#endif
