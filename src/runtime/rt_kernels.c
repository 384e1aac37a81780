/* The choice of the runtime's kernels (rt_kernels.h): the fastest set this CPU runs, found
 * once; MVMOE_ISA=plain forces the reference (tests compare the two); on x86-64, avx2-vnni and
 * avx2 skip the sets above them (to measure or test those on a bigger CPU). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt_kernels.h"

static const mvmoe_rt_kernels *choose(void) {
    const char *isa = getenv("MVMOE_ISA");
    if (isa && strcmp(isa, "plain") == 0) return mvmoe_rt_kernels_plain();
    const mvmoe_rt_kernels *k = NULL;
#if defined(__x86_64__)
    const int only_avx2 = isa && strcmp(isa, "avx2") == 0, no_512 = only_avx2 || (isa && strcmp(isa, "avx2-vnni") == 0);
    if (!no_512) k = mvmoe_rt_kernels_avx512();
    if (!k && !only_avx2) k = mvmoe_rt_kernels_avx2_vnni();
    if (!k) k = mvmoe_rt_kernels_avx2();
#elif defined(__aarch64__)
    if (!(isa && strcmp(isa, "neon") == 0)) k = mvmoe_rt_kernels_neon_dotprod();
    if (!k) k = mvmoe_rt_kernels_neon();
#endif
    return k ? k : mvmoe_rt_kernels_plain();
}

const mvmoe_rt_kernels *mvmoe_rt_kernels_get(void) {
    /* every thread that races here computes the same pointer */
    static _Atomic(const mvmoe_rt_kernels *) chosen;
    const mvmoe_rt_kernels *k = atomic_load_explicit(&chosen, memory_order_acquire);
    if (!k) {
        k = choose();
        atomic_store_explicit(&chosen, k, memory_order_release);
    }
    return k;
}
