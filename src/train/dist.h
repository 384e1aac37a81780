/* Data-parallel training across processes (docs/SCALING.md): the collectives the trainer and
 * the training step need. The process-wide state (rank, size) is set once by mvmoe_dist_init,
 * declared with the rest of the public part in include/mvmoe.h. One process (no mpirun, or a
 * build without MPI) is rank 0 of 1, and every collective below is then a no-op. */
#ifndef MVMOE_TRAIN_DIST_H
#define MVMOE_TRAIN_DIST_H

#include <stddef.h>

#include "mvmoe.h"

/* Element-wise sums over all ranks, in place; every rank gets the same bits. */
mvmoe_status mvmoe_dist_allreduce_sum_f32(float *x, size_t n);
mvmoe_status mvmoe_dist_allreduce_sum_f64(double *x, size_t n);
mvmoe_status mvmoe_dist_barrier(void);

/* Rank r's contiguous share [*off, *off + *n) of a global batch of B images over size ranks. */
void mvmoe_dist_share(int B, int rank, int size, int *off, int *n);

#endif
