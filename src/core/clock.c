/* The one clock of the library and the CLI: seconds on CLOCK_MONOTONIC, which never jumps
 * with the wall clock, for step times, progress and benchmarks. */
#include <time.h>

#include "mvmoe.h"

double mvmoe_clock_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
