/* Tiny test harness shared by the C tests: CHECK records failures, TEST_MAIN_END prints the
 * closing "N passed, N failed" line and returns non-zero if anything failed, or if no check
 * ran at all (a test that checked nothing has not passed). TEST_SKIP ends a test that cannot
 * run here with exit status 77, which tests/run_all.sh counts as skipped, never as passed. */
#ifndef MVMOE_TEST_UTIL_H
#define MVMOE_TEST_UTIL_H

#include <math.h>
#include <stdio.h>

static int tu_passed, tu_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            tu_passed++;                                                        \
        } else {                                                                \
            tu_failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* max |a-b| / max(max |b|, floor) over n elements */
static inline double tu_rel_err(const float *a, const float *b, size_t n, double floor_) {
    double md = 0, mb = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

#define TEST_MAIN_END(name)                                                      \
    do {                                                                         \
        if (tu_passed + tu_failed == 0) {                                        \
            fprintf(stderr, "FAIL %s: no check ran\n", (name));                  \
            tu_failed = 1;                                                       \
        }                                                                        \
        printf("%s: %d passed, %d failed\n", (name), tu_passed, tu_failed);      \
        return tu_failed ? 1 : 0;                                                \
    } while (0)

/* Exit status of a skipped test (the automake convention tests/run_all.sh reads). */
#define TEST_SKIP_STATUS 77
#define TEST_SKIP(name, ...)                                                     \
    do {                                                                         \
        printf("SKIP %s: ", (name));                                             \
        printf(__VA_ARGS__);                                                     \
        putchar('\n');                                                           \
        return TEST_SKIP_STATUS;                                                 \
    } while (0)

#endif
