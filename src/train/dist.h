/* Data-parallel training across processes (docs/SCALING.md): the collectives the trainer and
 * the training step need. The process-wide state (rank, size) is set once by mvmoe_dist_init,
 * declared with the rest of the public part in include/mvmoe.h. One process (no mpirun, or a
 * build without MPI) is rank 0 of 1, and every collective below is then a no-op. */
#ifndef MVMOE_TRAIN_DIST_H
#define MVMOE_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "mvmoe.h"

/* Element-wise sums over all ranks, in place; every rank gets the same bits. */
mvmoe_status mvmoe_dist_allreduce_sum_f32(float *x, size_t n);
mvmoe_status mvmoe_dist_allreduce_sum_f64(double *x, size_t n);
mvmoe_status mvmoe_dist_barrier(void);

/* Overlapped gradient sums (mvmoe_dist_overlap, in mvmoe.h). Starts the sum of x[0, n) over all ranks, in place (MPI_Iallreduce): x holds it after
 * mvmoe_dist_wait, and must not be touched before. A collective: every rank starts the same
 * sums in the same order. At most a fixed number are pending; beyond, this first waits for
 * them. One process: nothing to do. */
mvmoe_status mvmoe_dist_isum_f32(float *x, size_t n);
/* Lets the started sums progress (MPI_Testall); call it between pieces of work. */
mvmoe_status mvmoe_dist_progress(void);
/* Waits until every started sum is done. */
mvmoe_status mvmoe_dist_wait(void);

/* Rank r's contiguous share [*off, *off + *n) of a global batch of B images over size ranks. */
void mvmoe_dist_share(int B, int rank, int size, int *off, int *n);

/* Collective: compares n fingerprints (names[i]: what fingerprint i covers, for the message)
 * across all ranks; fails on every rank alike, naming the first rank that differs from rank 0
 * and the first field, and marks the failure as shared (mvmoe_dist_failed_together). */
mvmoe_status mvmoe_dist_check_same(const char *const *names, const uint64_t *mine, int n);

/* Collective, before training (dist_check.c): fingerprints of this rank's inputs — settings
 * (one per flag), --max-steps, dataset size, labels and a sample of images, the split, the model
 * config and initial weights (with_state 0), or the optimizer step, moments and EMA after a
 * resume (with_state 1; every rank calls both), or the weights and moments during training
 * (with_state 2: at epoch ends, a check that the ranks still hold the same state) — compared
 * with rank 0's by mvmoe_dist_check_same. One process: nothing to do. */
mvmoe_status mvmoe_dist_check_inputs(const mvmoe_model *m, const mvmoe_dataset *ds,
                                     const int32_t *train_idx, int n_train, const int32_t *val_idx,
                                     int n_val, const mvmoe_train_options *o, const char *settings,
                                     int with_state);

/* Marks the current error as one every rank has (the same check on the same inputs). */
void mvmoe_dist_fail_together(void);

/* The seconds spent in (and the bytes a ring all-reduce sends from this rank for) the sums
 * since the last call; resets both. */
void mvmoe_dist_comm_take(double *seconds, double *bytes);

/* Expert parallelism (train/ep.c): one int to and from every rank (send[r] goes to rank r,
 * recv[r] comes from rank r), then a variable all-to-all of floats (counts and displacements
 * in floats, per rank, as MPI_Alltoallv). One process: its own part is copied. Both count
 * their time in the comm seconds and the bytes sent to other ranks in mvmoe_dist_a2a_take. */
mvmoe_status mvmoe_dist_alltoall_int(const int *send, int *recv);
mvmoe_status mvmoe_dist_alltoallv_f32(const float *send, const int *scount, const int *sdispl, float *recv,
                                      const int *rcount, const int *rdispl);
/* The bytes this rank sent to other ranks in all-to-alls since the last call; resets. */
double mvmoe_dist_a2a_take(void);

#endif
