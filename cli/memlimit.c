/* --max-memory: size parsing, the memory available by default, and the check itself. */
#include "memlimit.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int mvmoe_cli_parse_size(const char *s, uint64_t *out) {
    if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+') return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v) || v < 0) return -1;
    double mult = 1;
    const char *u = end;
    switch (toupper((unsigned char)*u)) {
    case 'K': mult = 0x1p10; u++; break;
    case 'M': mult = 0x1p20; u++; break;
    case 'G': mult = 0x1p30; u++; break;
    case 'T': mult = 0x1p40; u++; break;
    default: break;
    }
    if (mult > 1 && (u[0] == 'i' || u[0] == 'I') && (u[1] == 'B' || u[1] == 'b')) u += 2;
    else if (u[0] == 'B' || u[0] == 'b') u++;
    if (*u != '\0') return -1;
    double bytes = v * mult;
    if (bytes >= 0x1p63) return -1;
    *out = (uint64_t)bytes;
    return 0;
}

int mvmoe_cli_memlimit_flag(mvmoe_args *a, mvmoe_cli_memlimit *l, int *rc) {
    if (!mvmoe_args_is(a, "--max-memory")) return 0;
    const char *s = NULL;
    *rc = mvmoe_args_str(a, &s);
    if (*rc == 0 && mvmoe_cli_parse_size(s, &l->bytes) != 0)
        *rc = mvmoe_args_error(a, "invalid value '%s' for --max-memory: expected a size such as "
                               "512M, 4G or 1.5T (or bytes; 0: no limit)", s);
    if (*rc == 0) l->given = 1;
    return 1;
}

/* First number in the file, or -1 ("max" and unreadable files also give -1). */
static long long read_ll(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

uint64_t mvmoe_cli_memory_available(void) {
    uint64_t avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (uint64_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    /* a container's cgroup (v2) limit can be far below what the machine has free */
    long long max = read_ll("/sys/fs/cgroup/memory.max"),
              cur = read_ll("/sys/fs/cgroup/memory.current");
    if (max > 0 && cur >= 0) {
        uint64_t cg = max > cur ? (uint64_t)(max - cur) : 0;
        if (avail == 0 || cg < avail) avail = cg;
    }
    return avail;
}

static void human(char *buf, size_t n, double bytes) {
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024 && u < 6) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

int mvmoe_cli_memlimit_check(const char *cmd, const mvmoe_cli_memlimit *l, const mvmoe_config *c,
                             int batch, int training, int weights_allocated) {
    size_t total = mvmoe_model_memory_estimate(c, batch, training != 0);
    size_t weights = mvmoe_model_memory_estimate(c, 0, 0);
    size_t state = training ? mvmoe_model_memory_estimate(c, 0, 1) - weights : 0;
    if (training == 2 && total != SIZE_MAX) { /* --ema: the EMA of the weights, one more copy */
        total = total > SIZE_MAX - weights ? SIZE_MAX : total + weights;
        state += weights;
    }
    if (total == SIZE_MAX) {
        fprintf(stderr, "mvmoe %s: error: the model (%s) at batch %d needs more memory than can "
                "even be addressed; lower --batch or choose a smaller model\n", cmd,
                c ? mvmoe_routing_name(c->routing) : "?", batch);
        return MVMOE_EXIT_FAIL;
    }
    uint64_t limit;
    char why[96];
    if (l && l->given) {
        if (l->bytes == 0) return 0;
        limit = l->bytes;
        snprintf(why, sizeof why, "--max-memory");
    } else {
        uint64_t avail = mvmoe_cli_memory_available();
        if (avail == 0) return 0; /* unknown: nothing to compare with */
        limit = (uint64_t)((double)avail * MVMOE_CLI_MEMORY_SHARE);
        char a[32];
        human(a, sizeof a, (double)avail);
        snprintf(why, sizeof why, "%.0f%% of the %s available now", 100 * MVMOE_CLI_MEMORY_SHARE, a);
    }
    size_t need = weights_allocated ? total - weights : total;
    if (need <= limit) return 0;
    char t[32], w[32], st[32], act[32], lim[32], parts[224];
    human(t, sizeof t, (double)need);
    human(w, sizeof w, (double)weights);
    human(st, sizeof st, (double)state);
    human(act, sizeof act, (double)(total - weights - state));
    human(lim, sizeof lim, (double)limit);
    if (training)
        snprintf(parts, sizeof parts, "weights %s%s, gradients + AdamW%s %s, activations for batch %d: %s",
                 w, weights_allocated ? " (loaded)" : "", training == 2 ? " + EMA" : "", st, batch, act);
    else
        snprintf(parts, sizeof parts, "weights %s%s, activations for batch %d: %s", w,
                 weights_allocated ? " (loaded)" : "", batch, act);
    fprintf(stderr, "mvmoe %s: error: not enough memory: this needs about %s%s (%s), above the "
            "limit of %s (%s); lower --batch, choose a smaller model, or set --max-memory SIZE "
            "(0: no limit)\n", cmd, t, weights_allocated ? " more" : "", parts, lim, why);
    return MVMOE_EXIT_FAIL;
}
