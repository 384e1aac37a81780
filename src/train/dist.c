/* Data-parallel collectives (dist.h). MPI is started only when the process was launched by
 * mpirun (its environment says so): a plain `mvmoe train`, the tests, valgrind and ASan runs
 * never touch MPI. Built with MVMOE_MPI=0 (no MPI headers), every launch is one process and a
 * launch by mpirun with more than one rank is refused, so no rank trains alone by mistake. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "train/dist.h"

#ifndef MVMOE_MPI
#define MVMOE_MPI 0
#endif
#if MVMOE_MPI
#include <mpi.h>
#endif

static int dist_rank = 0, dist_size = 1, dist_on = 0;
static int dist_overlap = 0; /* MVMOE_OVERLAP_ALLREDUCE=1 (mvmoe_dist_overlap) */
/* set when every rank failed the same check with the same message (mvmoe_dist_check_same and
 * the checks after it): nobody waits in a collective, so no abort and one message suffices */
static int dist_failed_together = 0;
/* what the collectives cost since mvmoe_dist_comm_take last read them */
static double comm_seconds = 0, comm_bytes = 0;
/* the bytes this rank sent to other ranks in all-to-alls (expert parallelism) since the last
 * mvmoe_dist_a2a_take */
static double a2a_bytes = 0;

/* The world size mpirun announces (OpenMPI; PMIx launchers), or 0 when not launched by one. */
static int launched_size(void) {
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v) v = getenv("PMIX_SIZE");
    return v ? atoi(v) : 0;
}

mvmoe_status mvmoe_dist_init(void) {
    if (dist_on) return MVMOE_OK;
    const int n = launched_size();
    if (n <= 0) return MVMOE_OK;
#if MVMOE_MPI
    int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
        MVMOE_FAIL(MVMOE_ERR_IO, "MPI_Init_thread failed (code %d) under mpirun; check the "
                   "OpenMPI installation (mpirun --version) on every host", rc);
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_size);
    const char *ov = getenv("MVMOE_OVERLAP_ALLREDUCE");
    dist_overlap = ov && strcmp(ov, "1") == 0;
    dist_on = 1;
    return MVMOE_OK;
#else
    if (n > 1)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "launched by mpirun with %d ranks, but this mvmoe was built "
                   "without MPI (MVMOE_MPI=0); install libopenmpi-dev and rebuild, or run one process", n);
    return MVMOE_OK;
#endif
}

int mvmoe_dist_rank(void) { return dist_rank; }
int mvmoe_dist_size(void) { return dist_size; }

void mvmoe_dist_fail_together(void) { dist_failed_together = 1; }
int mvmoe_dist_failed_together(void) { return dist_failed_together; }

void mvmoe_dist_comm_take(double *seconds, double *bytes) {
    *seconds = comm_seconds;
    *bytes = comm_bytes;
    comm_seconds = comm_bytes = 0;
}

double mvmoe_dist_a2a_take(void) {
    const double b = a2a_bytes;
    a2a_bytes = 0;
    return b;
}

void mvmoe_dist_abort(int code) {
#if MVMOE_MPI
    if (dist_on) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    }
#endif
    (void)code;
}

void mvmoe_dist_finalize(void) {
#if MVMOE_MPI
    if (dist_on) MPI_Finalize();
#endif
    dist_on = 0;
    dist_rank = 0;
    dist_size = 1;
    dist_overlap = 0;
}

int mvmoe_dist_overlap(void) { return dist_overlap && dist_size > 1; }

void mvmoe_dist_share(int B, int rank, int size, int *off, int *n) {
    const long long lo = (long long)rank * B / size, hi = (long long)(rank + 1) * B / size;
    *off = (int)lo;
    *n = (int)(hi - lo);
}

#if MVMOE_MPI
/* MPI counts are int: large arenas go in buckets of at most INT_MAX / 2 elements. */
static mvmoe_status allreduce(void *x, size_t n, size_t elem, MPI_Datatype t, const char *what) {
    const size_t bucket = INT_MAX / 2;
    /* what a bandwidth-optimal (ring) all-reduce sends from each rank: n·elem·2(N−1)/N; the
     * time includes waiting for the slowest rank to arrive (load imbalance shows up here) */
    comm_bytes += 2.0 * (dist_size - 1) / dist_size * (double)n * (double)elem;
    const double t0 = MPI_Wtime();
    for (size_t i = 0; i < n; i += bucket) {
        const int c = (int)(n - i < bucket ? n - i : bucket);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * elem, c, t, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Allreduce of %s failed (code %d)", dist_rank, what, rc);
    }
    comm_seconds += MPI_Wtime() - t0;
    return MVMOE_OK;
}
#endif

mvmoe_status mvmoe_dist_allreduce_sum_f32(float *x, size_t n) {
#if MVMOE_MPI
    if (dist_size > 1) return allreduce(x, n, sizeof(float), MPI_FLOAT, "float sums");
#endif
    (void)x, (void)n;
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_allreduce_sum_f64(double *x, size_t n) {
#if MVMOE_MPI
    if (dist_size > 1) return allreduce(x, n, sizeof(double), MPI_DOUBLE, "double sums");
#endif
    (void)x, (void)n;
    return MVMOE_OK;
}

#if MVMOE_MPI
/* The sums started and not yet waited for: a fixed table, so the step allocates nothing (a
 * 12-block model starts about 12 per block, one per tensor, plus about 10 outside the blocks) */
#define MAX_PENDING 1024
static MPI_Request pending[MAX_PENDING];
static int n_pending = 0;
#endif

mvmoe_status mvmoe_dist_wait(void) {
#if MVMOE_MPI
    if (n_pending == 0) return MVMOE_OK;
    const double t0 = MPI_Wtime();
    int rc = MPI_Waitall(n_pending, pending, MPI_STATUSES_IGNORE);
    n_pending = 0;
    comm_seconds += MPI_Wtime() - t0;
    if (rc != MPI_SUCCESS)
        MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Waitall of the gradient sums failed (code %d)", dist_rank, rc);
#endif
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_progress(void) {
#if MVMOE_MPI
    if (n_pending == 0) return MVMOE_OK;
    int done = 0;
    const double t0 = MPI_Wtime();
    int rc = MPI_Testall(n_pending, pending, &done, MPI_STATUSES_IGNORE);
    comm_seconds += MPI_Wtime() - t0;
    if (rc != MPI_SUCCESS)
        MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Testall of the gradient sums failed (code %d)", dist_rank, rc);
    if (done) n_pending = 0;
#endif
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_isum_f32(float *x, size_t n) {
#if MVMOE_MPI
    if (dist_size <= 1) return MVMOE_OK;
    const size_t bucket = INT_MAX / 2;
    comm_bytes += 2.0 * (dist_size - 1) / dist_size * (double)n * sizeof(float);
    for (size_t i = 0; i < n; i += bucket) {
        if (n_pending == MAX_PENDING) MVMOE_TRY(mvmoe_dist_wait());
        const int c = (int)(n - i < bucket ? n - i : bucket);
        const double t0 = MPI_Wtime();
        int rc = MPI_Iallreduce(MPI_IN_PLACE, x + i, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending[n_pending]);
        comm_seconds += MPI_Wtime() - t0;
        if (rc != MPI_SUCCESS)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Iallreduce of float sums failed (code %d)", dist_rank, rc);
        n_pending++;
    }
#else
    (void)x, (void)n;
#endif
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_barrier(void) {
#if MVMOE_MPI
    if (dist_size > 1 && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Barrier failed", dist_rank);
#endif
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_check_same(const char *const *names, const uint64_t *mine, int n) {
#if MVMOE_MPI
    if (dist_size <= 1 || n <= 0) return MVMOE_OK;
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)n * (size_t)dist_size);
    if (!all) MVMOE_FAIL(MVMOE_ERR_NOMEM, "rank %d: out of memory for %d x %d fingerprints", dist_rank, n, dist_size);
    int rc = MPI_Allgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        free(all);
        MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Allgather of the input fingerprints failed (code %d)", dist_rank, rc);
    }
    /* every rank holds every fingerprint, so every rank finds the same first difference */
    for (int r = 1; r < dist_size; r++)
        for (int f = 0; f < n; f++)
            if (all[(size_t)r * n + f] != all[f]) {
                free(all);
                dist_failed_together = 1;
                MVMOE_FAIL(MVMOE_ERR_INVALID, "rank %d of %d does not train what rank 0 trains: %s: not "
                           "the same as rank 0's (maybe more differs); every rank must get the same flags, the same "
                           "data and the same checkpoint (check the command line, the paths and the "
                           "files on every host)", r, dist_size, names[f]);
            }
    free(all);
#else
    (void)names, (void)mine, (void)n;
#endif
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_alltoall_int(const int *send, int *recv) {
#if MVMOE_MPI
    if (dist_size > 1) {
        a2a_bytes += (double)(dist_size - 1) * sizeof(int);
        const double t0 = MPI_Wtime();
        int rc = MPI_Alltoall(send, 1, MPI_INT, recv, 1, MPI_INT, MPI_COMM_WORLD);
        comm_seconds += MPI_Wtime() - t0;
        if (rc != MPI_SUCCESS)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Alltoall of the exchange counts failed (code %d)", dist_rank, rc);
        return MVMOE_OK;
    }
#endif
    recv[0] = send[0];
    return MVMOE_OK;
}

mvmoe_status mvmoe_dist_alltoallv_f32(const float *send, const int *scount, const int *sdispl, float *recv,
                                      const int *rcount, const int *rdispl) {
#if MVMOE_MPI
    if (dist_size > 1) {
        for (int r = 0; r < dist_size; r++)
            if (r != dist_rank) a2a_bytes += (double)scount[r] * sizeof(float);
        const double t0 = MPI_Wtime();
        int rc = MPI_Alltoallv(send, scount, sdispl, MPI_FLOAT, recv, rcount, rdispl, MPI_FLOAT, MPI_COMM_WORLD);
        comm_seconds += MPI_Wtime() - t0;
        if (rc != MPI_SUCCESS)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Alltoallv of the images' activations failed (code %d)", dist_rank, rc);
        return MVMOE_OK;
    }
#endif
    (void)rcount;
    memcpy(recv + rdispl[0], send + sdispl[0], sizeof(float) * (size_t)scount[0]);
    return MVMOE_OK;
}
