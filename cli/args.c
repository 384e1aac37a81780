#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void mvmoe_args_init(mvmoe_args *a, const char *cmd, const char *synopsis, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->synopsis = synopsis;
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
}

int mvmoe_args_next(mvmoe_args *a, const char **positional) {
    a->flag = NULL;
    a->inline_value = NULL;
    while (a->i < a->argc) {
        const char *s = a->argv[a->i++];
        /* "-" alone is an ordinary argument (conventionally stdin), never a flag. */
        if (a->flags_done || s[0] != '-' || s[1] == '\0') {
            *positional = s;
            return 0;
        }
        if (strcmp(s, "--") == 0) {
            a->flags_done = 1;
            continue;
        }
        const char *eq = strchr(s, '=');
        if (eq && s[1] == '-') {
            size_t len = (size_t)(eq - s);
            if (len >= sizeof a->name) len = sizeof a->name - 1; /* too long to be ours anyway */
            memcpy(a->name, s, len);
            a->name[len] = '\0';
            a->flag = a->name;
            a->inline_value = eq + 1;
        } else {
            a->flag = s;
        }
        return 1;
    }
    return -1;
}

int mvmoe_args_is(const mvmoe_args *a, const char *name) {
    return a->flag && strcmp(a->flag, name) == 0;
}

int mvmoe_args_error(const mvmoe_args *a, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "mvmoe %s: ", a->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'mvmoe %s --help' for the list of flags.\n", a->cmd);
    return MVMOE_EXIT_USAGE;
}

int mvmoe_args_unknown(const mvmoe_args *a) {
    fprintf(stderr, "mvmoe %s: unknown flag '%s'\n", a->cmd, a->flag ? a->flag : "?");
    if (a->synopsis) fprintf(stderr, "%s", a->synopsis);
    fprintf(stderr, "Try 'mvmoe %s --help' for the list of flags.\n", a->cmd);
    return MVMOE_EXIT_USAGE;
}

int mvmoe_args_switch(mvmoe_args *a) {
    if (a->inline_value)
        return mvmoe_args_error(a, "%s takes no value (got '%s=%s')", a->flag, a->flag,
                                a->inline_value);
    return 0;
}

int mvmoe_args_str(mvmoe_args *a, const char **out) {
    if (a->inline_value) {
        if (a->inline_value[0] == '\0') return mvmoe_args_error(a, "%s needs a value (got '%s=')", a->flag, a->flag);
        *out = a->inline_value;
        return 0;
    }
    /* A following "--flag" is almost surely a forgotten value, not a value starting with "--". */
    if (a->i >= a->argc || strncmp(a->argv[a->i], "--", 2) == 0 || a->argv[a->i][0] == '\0')
        return mvmoe_args_error(a, "%s needs a value", a->flag);
    *out = a->argv[a->i++];
    return 0;
}

/* Full-string strtol: no leading space, no trailing junk, no overflow. */
static int parse_long(const char *s, long *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0') return -1;
    *out = v;
    return 0;
}

/* Full-string strtod, finite values only (rejects "nan", "inf", "1e999"). */
static int parse_double(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE && fabs(v) > 1.0) return -1; /* overflow; underflow to ~0 is fine */
    if (*end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int mvmoe_args_int(mvmoe_args *a, long lo, long hi, int *out) {
    const char *s = "";
    int rc = mvmoe_args_str(a, &s);
    if (rc) return rc;
    long v;
    if (parse_long(s, &v) != 0 || v < lo || v > hi || v < INT_MIN || v > INT_MAX)
        return mvmoe_args_error(a, "invalid value '%s' for %s: expected an integer from %ld to %ld",
                                s, a->flag, lo, hi);
    *out = (int)v;
    return 0;
}

int mvmoe_args_u64(mvmoe_args *a, uint64_t *out) {
    const char *s = "";
    int rc = mvmoe_args_str(a, &s);
    if (rc) return rc;
    char *end;
    errno = 0;
    /* strtoull quietly negates "-1" into 2^64-1, so a sign is rejected up front. */
    unsigned long long v = isdigit((unsigned char)s[0]) ? strtoull(s, &end, 10) : 0;
    if (!isdigit((unsigned char)s[0]) || errno != 0 || *end != '\0')
        return mvmoe_args_error(a, "invalid value '%s' for %s: expected an integer from 0 to %llu",
                                s, a->flag, (unsigned long long)UINT64_MAX);
    *out = (uint64_t)v;
    return 0;
}

static int in_range(double v, double lo, double hi, int open) {
    if ((open & MVMOE_ARGS_LO_OPEN) ? !(v > lo) : !(v >= lo)) return 0;
    if ((open & MVMOE_ARGS_HI_OPEN) ? !(v < hi) : !(v <= hi)) return 0;
    return 1;
}

static int range_error(const mvmoe_args *a, const char *s, double lo, double hi, int open,
                       const char *what) {
    return mvmoe_args_error(a, "invalid value '%s' for %s: expected %s %s %g and %s %g", s,
                            a->flag, what, (open & MVMOE_ARGS_LO_OPEN) ? ">" : ">=", lo,
                            (open & MVMOE_ARGS_HI_OPEN) ? "<" : "<=", hi);
}

int mvmoe_args_float(mvmoe_args *a, double lo, double hi, int open, float *out) {
    const char *s = "";
    int rc = mvmoe_args_str(a, &s);
    if (rc) return rc;
    double v;
    if (parse_double(s, &v) != 0 || !in_range(v, lo, hi, open))
        return range_error(a, s, lo, hi, open, "a finite number");
    *out = (float)v;
    return 0;
}

/* Splits s at commas into at most max items copied into buf-backed strings; -1 if too many
 * items or an item is empty. */
static int split_commas(const char *s, char *buf, size_t cap, char **items, int max) {
    size_t len = strlen(s);
    if (len + 1 > cap) return -1;
    memcpy(buf, s, len + 1);
    int n = 0;
    char *p = buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (n == max || *p == '\0') return -1;
        items[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}

int mvmoe_args_floats(mvmoe_args *a, double lo, double hi, int max, float *out, int *n) {
    const char *s = "";
    int rc = mvmoe_args_str(a, &s);
    if (rc) return rc;
    char buf[256], *items[16];
    if (max > 16) max = 16;
    int k = split_commas(s, buf, sizeof buf, items, max);
    if (k < 1)
        return mvmoe_args_error(a, "invalid value '%s' for %s: expected 1 to %d comma-separated numbers",
                                s, a->flag, max);
    for (int j = 0; j < k; j++) {
        double v;
        if (parse_double(items[j], &v) != 0 || v < lo || v > hi)
            return mvmoe_args_error(a, "invalid value '%s' for %s: item '%s' is not a number from %g to %g",
                                    s, a->flag, items[j], lo, hi);
        out[j] = (float)v;
    }
    *n = k;
    return 0;
}

int mvmoe_args_ints(mvmoe_args *a, int n, const long *lo, const long *hi, int *out) {
    const char *s = "";
    int rc = mvmoe_args_str(a, &s);
    if (rc) return rc;
    char buf[256], *items[16];
    int k = n <= 16 ? split_commas(s, buf, sizeof buf, items, n) : -1;
    if (k != n)
        return mvmoe_args_error(a, "invalid value '%s' for %s: expected %d comma-separated integers",
                                s, a->flag, n);
    for (int j = 0; j < n; j++) {
        long v;
        if (parse_long(items[j], &v) != 0 || v < lo[j] || v > hi[j])
            return mvmoe_args_error(a, "invalid value '%s' for %s: item %d ('%s') must be an integer from %ld to %ld",
                                    s, a->flag, j + 1, items[j], lo[j], hi[j]);
        out[j] = (int)v;
    }
    return 0;
}

int mvmoe_args_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}
