/* peak: this machine's FP32 FMA peak (GFLOP/s) and STREAM-triad memory bandwidth at the given
 * thread counts, the denominators of every benchmark's "fraction of peak" (MFU).
 *
 *   build/bench/peak [--threads 1,2] [--seconds 1] [--triad-mib 256] [--json]
 *
 * The measuring is in the library (mvmoe_bench_peak_gflops, mvmoe_bench_triad_gbs) so that
 * `mvmoe bench` divides by exactly the same number. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvmoe.h"

#define MAX_SETTINGS 8

static const char USAGE[] =
    "usage: peak [--threads N,N,...] [--seconds S] [--triad-mib M] [--json]\n"
    "  --threads    thread counts to measure at [1,2]\n"
    "  --seconds    duration of each FMA measurement [1]\n"
    "  --triad-mib  size of each of the 3 triad arrays, MiB (0: skip the triad) [256]\n"
    "  --json       one JSON object instead of text\n";

static int usage_error(const char *what, const char *value) {
    fprintf(stderr, "peak: invalid %s '%s'\n%s", what, value ? value : "(missing)", USAGE);
    return 2;
}

static int parse_num(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    int threads[MAX_SETTINGS] = {1, 2}, n_threads = 2, json = 0;
    double seconds = 1.0, triad_mib = 256;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            printf("%s", USAGE);
            return 0;
        } else if (strcmp(f, "--json") == 0) {
            json = 1;
        } else if (strcmp(f, "--seconds") == 0) {
            if (parse_num(v, 0.01, 600, &seconds)) return usage_error("--seconds", v);
            i++;
        } else if (strcmp(f, "--triad-mib") == 0) {
            if (parse_num(v, 0, 65536, &triad_mib)) return usage_error("--triad-mib", v);
            i++;
        } else if (strcmp(f, "--threads") == 0) {
            if (!v) return usage_error("--threads", v);
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            n_threads = 0;
            for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                double t;
                if (n_threads == MAX_SETTINGS || parse_num(tok, 1, 4096, &t) || t != (int)t)
                    return usage_error("--threads", v);
                threads[n_threads++] = (int)t;
            }
            if (n_threads == 0) return usage_error("--threads", v);
            i++;
        } else {
            return usage_error("flag", f);
        }
    }

    cJSON *root = cJSON_CreateObject(), *runs = cJSON_AddArrayToObject(root, "runs");
    if (!root || !runs) return 1;
    const char *isa = "";
    for (int i = 0; i < n_threads; i++) {
        double gf = 0, gbs = 0;
        if (mvmoe_bench_peak_gflops(threads[i], seconds, &gf, &isa) != MVMOE_OK) {
            fprintf(stderr, "peak: %s\n", mvmoe_last_error());
            return 1;
        }
        if (triad_mib > 0 &&
            mvmoe_bench_triad_gbs(threads[i], (size_t)(triad_mib * 1024 * 1024), 5, &gbs) != MVMOE_OK) {
            fprintf(stderr, "peak: %s\n", mvmoe_last_error());
            return 1;
        }
        cJSON *r = cJSON_CreateObject();
        if (!r) return 1;
        cJSON_AddItemToArray(runs, r);
        cJSON_AddNumberToObject(r, "threads", threads[i]);
        cJSON_AddNumberToObject(r, "fma_gflops", gf);
        if (triad_mib > 0) cJSON_AddNumberToObject(r, "triad_gb_s", gbs);
        if (!json) {
            printf("threads %d: FP32 FMA peak %8.1f GFLOP/s (%s)", threads[i], gf, isa);
            if (triad_mib > 0) printf("   triad %6.1f GB/s", gbs);
            printf("\n");
        }
    }
    cJSON_AddStringToObject(root, "isa", isa);
    cJSON_AddNumberToObject(root, "seconds", seconds);
    cJSON_AddNumberToObject(root, "triad_mib", triad_mib);
    if (json) {
        char *text = cJSON_PrintUnformatted(root);
        if (!text) return 1;
        printf("%s\n", text);
        free(text);
    }
    cJSON_Delete(root);
    return fflush(stdout) == 0 ? 0 : 1;
}
