/* Data-parallel collectives (dist.h). MPI is started only when the process was launched by
 * mpirun (its environment says so): a plain `mvmoe train`, the tests, valgrind and ASan runs
 * never touch MPI. Built with MVMOE_MPI=0 (no MPI headers), every launch is one process and a
 * launch by mpirun with more than one rank is refused, so no rank trains alone by mistake. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "train/dist.h"

#ifndef MVMOE_MPI
#define MVMOE_MPI 0
#endif
#if MVMOE_MPI
#include <mpi.h>
#endif

static int dist_rank = 0, dist_size = 1, dist_on = 0;

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
}

void mvmoe_dist_share(int B, int rank, int size, int *off, int *n) {
    const long long lo = (long long)rank * B / size, hi = (long long)(rank + 1) * B / size;
    *off = (int)lo;
    *n = (int)(hi - lo);
}

#if MVMOE_MPI
/* MPI counts are int: large arenas go in buckets of at most INT_MAX / 2 elements. */
static mvmoe_status allreduce(void *x, size_t n, size_t elem, MPI_Datatype t, const char *what) {
    const size_t bucket = INT_MAX / 2;
    for (size_t i = 0; i < n; i += bucket) {
        const int c = (int)(n - i < bucket ? n - i : bucket);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * elem, c, t, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Allreduce of %s failed (code %d)", dist_rank, what, rc);
    }
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

mvmoe_status mvmoe_dist_barrier(void) {
#if MVMOE_MPI
    if (dist_size > 1 && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        MVMOE_FAIL(MVMOE_ERR_IO, "rank %d: MPI_Barrier failed", dist_rank);
#endif
    return MVMOE_OK;
}
