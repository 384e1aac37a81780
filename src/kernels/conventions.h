/* Types shared by the kernel headers (kernels.h states the conventions they serve). */
#ifndef MVMOE_KERNELS_CONVENTIONS_H
#define MVMOE_KERNELS_CONVENTIONS_H

#include <stddef.h>
#include <stdint.h>

/* How a backward writes the gradient its mvmoe_grad_write argument names. */
typedef enum mvmoe_grad_write {
    MVMOE_GRAD_ACCUMULATE = 0, /* += (the default, as for every other gradient) */
    MVMOE_GRAD_OVERWRITE = 1   /* = : the bits of zeroing it first, without that pass */
} mvmoe_grad_write;

/* Who runs a kernel's threads. */
typedef enum mvmoe_team {
    MVMOE_TEAM_OWN = 0,   /* the kernel runs its own threads (alone inside a parallel region) */
    MVMOE_TEAM_CALLER = 1 /* every thread of the caller's parallel region calls it with the same
                           * arguments and the work is shared among them (an orphaned `omp for`,
                           * with its barrier at the end) */
} mvmoe_team;

#endif
