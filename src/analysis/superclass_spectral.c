/* Spectral clustering of the confusion graph, the alternative to METIS (paper Sec. 3.2 uses
 * METIS): Ng-Jordan-Weiss. The E leading eigenvectors of D^-1/2 A D^-1/2 (the E smallest of
 * the normalized Laplacian I - D^-1/2 A D^-1/2), rows normalized to unit length, clustered by
 * k-means with k-means++ seeding. The caller balances the result. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/superclass.h"
#include "core/rng.h"
#include "core/status.h"

/* LAPACK (OpenBLAS provides it) with gfortran's hidden string-length arguments. */
extern void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
                    const int *lda, const double *vl, const double *vu, const int *il,
                    const int *iu, const double *abstol, int *m, double *w, double *z,
                    const int *ldz, int *isuppz, double *work, const int *lwork, int *iwork,
                    const int *liwork, int *info, size_t len_jobz, size_t len_range,
                    size_t len_uplo);

/* k-means restarts from different k-means++ seeds; the lowest inertia wins. */
#define KMEANS_RESTARTS 10
#define KMEANS_MAX_ITERS 300
#define KMEANS_STREAM 0x5C1A5500ull

static double dist2(const double *a, const double *b, int d) {
    double s = 0;
    for (int k = 0; k < d; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return s;
}

static int nearest(const double *x, const double *centers, int E, int d, double *d2) {
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < E; c++) {
        double t = dist2(x, centers + (size_t)c * d, d);
        if (t < bd) {
            bd = t;
            best = c;
        }
    }
    *d2 = bd;
    return best;
}

/* k-means++ seeding: each next center drawn with probability proportional to the squared
 * distance to the nearest center chosen so far. */
static void kmeanspp(const double *x, int K, int E, mvmoe_rng *r, double *centers, double *mind) {
    int first = (int)mvmoe_rng_below(r, (uint32_t)K);
    memcpy(centers, x + (size_t)first * E, sizeof *centers * (size_t)E);
    for (int i = 0; i < K; i++) mind[i] = dist2(x + (size_t)i * E, centers, E);
    for (int c = 1; c < E; c++) {
        double sum = 0;
        for (int i = 0; i < K; i++) sum += mind[i];
        int pick = K - 1;
        if (sum > 0) {
            double u = (double)(mvmoe_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0) * sum;
            for (int i = 0; i < K; i++) {
                u -= mind[i];
                if (u < 0) {
                    pick = i;
                    break;
                }
            }
        } else {
            pick = (int)mvmoe_rng_below(r, (uint32_t)K); /* all points coincide */
        }
        double *cc = centers + (size_t)c * E;
        memcpy(cc, x + (size_t)pick * E, sizeof *cc * (size_t)E);
        for (int i = 0; i < K; i++) {
            double t = dist2(x + (size_t)i * E, cc, E);
            if (t < mind[i]) mind[i] = t;
        }
    }
}

/* Lloyd iterations; an empty cluster takes the point farthest from its center. Returns the
 * inertia (sum of squared distances). */
static double lloyd(const double *x, int K, int E, double *centers, int *assign, int *count,
                    double *d2) {
    for (int i = 0; i < K; i++) assign[i] = -1;
    double inertia = 0;
    for (int it = 0; it < KMEANS_MAX_ITERS; it++) {
        int changed = 0;
        for (int i = 0; i < K; i++) {
            int c = nearest(x + (size_t)i * E, centers, E, E, &d2[i]);
            if (c != assign[i]) {
                assign[i] = c;
                changed = 1;
            }
        }
        for (int c = 0; c < E; c++) count[c] = 0;
        for (int i = 0; i < K; i++) count[assign[i]]++;
        for (int c = 0; c < E; c++) {
            if (count[c] > 0) continue;
            int far = -1;
            for (int i = 0; i < K; i++)
                if (count[assign[i]] > 1 && (far < 0 || d2[i] > d2[far])) far = i;
            if (far < 0) break; /* E <= K, so unreachable */
            count[assign[far]]--;
            assign[far] = c;
            count[c] = 1;
            d2[far] = 0;
            changed = 1;
        }
        memset(centers, 0, sizeof *centers * (size_t)E * (size_t)E);
        for (int i = 0; i < K; i++)
            for (int k = 0; k < E; k++) centers[(size_t)assign[i] * E + k] += x[(size_t)i * E + k];
        for (int c = 0; c < E; c++)
            for (int k = 0; k < E; k++) centers[(size_t)c * E + k] /= count[c];
        inertia = 0;
        for (int i = 0; i < K; i++) inertia += dist2(x + (size_t)i * E, centers + (size_t)assign[i] * E, E);
        if (!changed) break;
    }
    return inertia;
}

/* The E leading eigenvectors of D^-1/2 A D^-1/2 into emb [K x E], rows unit length. */
static mvmoe_status embedding(const double *w, int K, int E, double *emb) {
    double *a = NULL, *deg = NULL, *ev = NULL, *z = NULL, *work = NULL;
    int *isuppz = NULL, *iwork = NULL;
    mvmoe_status s = MVMOE_OK;
    a = malloc(sizeof *a * (size_t)K * K);
    deg = malloc(sizeof *deg * (size_t)K);
    ev = malloc(sizeof *ev * (size_t)K);
    z = malloc(sizeof *z * (size_t)K * E);
    isuppz = malloc(sizeof *isuppz * 2 * (size_t)K);
    if (!a || !deg || !ev || !z || !isuppz) {
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                            "spectral clustering of %d classes: out of memory", K);
        goto done;
    }
    /* A tiny uniform affinity makes the graph connected, so the Laplacian has one zero
     * eigenvalue and isolated classes still get a well-defined embedding. */
    double total = 0;
    for (size_t i = 0; i < (size_t)K * K; i++) total += w[i];
    double eps = total > 0 ? 1e-6 * total / ((double)K * (K - 1)) : 1.0;
    for (int i = 0; i < K; i++) {
        deg[i] = 0;
        for (int j = 0; j < K; j++) {
            double x = i == j ? 0.0 : w[(size_t)i * K + j] + eps;
            a[(size_t)i * K + j] = x;
            deg[i] += x;
        }
    }
    for (int i = 0; i < K; i++) deg[i] = 1.0 / sqrt(deg[i]);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) a[(size_t)i * K + j] *= deg[i] * deg[j];

    int n = K, il = K - E + 1, iu = K, m = 0, info = 0, lwork = -1, liwork = -1, iwq = 0;
    double vl = 0, vu = 0, abstol = 0, wq = 0;
    dsyevr_("V", "I", "L", &n, a, &n, &vl, &vu, &il, &iu, &abstol, &m, ev, z, &n, isuppz, &wq,
            &lwork, &iwq, &liwork, &info, 1, 1, 1);
    if (info != 0) {
        s = mvmoe_error_set(MVMOE_ERR_NUMERIC, __FILE__, __LINE__,
                            "LAPACK dsyevr workspace query failed (info %d) for %d classes", info, K);
        goto done;
    }
    lwork = (int)wq;
    liwork = iwq;
    work = malloc(sizeof *work * (size_t)(lwork > 1 ? lwork : 1));
    iwork = malloc(sizeof *iwork * (size_t)(liwork > 1 ? liwork : 1));
    if (!work || !iwork) {
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                            "spectral clustering of %d classes: out of memory for LAPACK", K);
        goto done;
    }
    dsyevr_("V", "I", "L", &n, a, &n, &vl, &vu, &il, &iu, &abstol, &m, ev, z, &n, isuppz, work,
            &lwork, iwork, &liwork, &info, 1, 1, 1);
    if (info != 0 || m != E) {
        s = mvmoe_error_set(MVMOE_ERR_NUMERIC, __FILE__, __LINE__,
                            "LAPACK dsyevr failed (info %d, %d of %d eigenvectors) on the "
                            "%d-class confusion graph; try --method metis",
                            info, m, E, K);
        goto done;
    }
    /* z is column-major K x E (eigenvalues ascending); row i of the embedding is class i. */
    for (int i = 0; i < K; i++) {
        double nrm = 0;
        for (int k = 0; k < E; k++) {
            double v = z[(size_t)k * K + i];
            emb[(size_t)i * E + k] = v;
            nrm += v * v;
        }
        if (!(nrm > 0) || !isfinite(nrm)) {
            if (!isfinite(nrm)) {
                s = mvmoe_error_set(MVMOE_ERR_NUMERIC, __FILE__, __LINE__,
                                    "spectral embedding of class %d is not finite", i);
                goto done;
            }
            continue;
        }
        nrm = 1.0 / sqrt(nrm);
        for (int k = 0; k < E; k++) emb[(size_t)i * E + k] *= nrm;
    }
done:
    free(a);
    free(deg);
    free(ev);
    free(z);
    free(isuppz);
    free(work);
    free(iwork);
    return s;
}

mvmoe_status mvmoe_superclass_spectral(const double *w, int K, int E, uint64_t seed, int *part) {
    double *emb = NULL, *centers = NULL, *d2 = NULL;
    int *assign = NULL, *count = NULL;
    mvmoe_status s = MVMOE_OK;
    emb = malloc(sizeof *emb * (size_t)K * E);
    centers = malloc(sizeof *centers * (size_t)E * E);
    d2 = malloc(sizeof *d2 * (size_t)K);
    assign = malloc(sizeof *assign * (size_t)K);
    count = malloc(sizeof *count * (size_t)E);
    if (!emb || !centers || !d2 || !assign || !count) {
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                            "spectral clustering of %d classes: out of memory", K);
        goto done;
    }
    if ((s = embedding(w, K, E, emb)) != MVMOE_OK) goto done;
    /* Eigenvector signs are arbitrary, but flipping a coordinate of every row preserves all
     * distances, so the clusters do not depend on them. */
    double best = INFINITY;
    for (int r = 0; r < KMEANS_RESTARTS; r++) {
        mvmoe_rng rng;
        mvmoe_rng_init(&rng, seed, KMEANS_STREAM + (uint64_t)r);
        kmeanspp(emb, K, E, &rng, centers, d2);
        double inertia = lloyd(emb, K, E, centers, assign, count, d2);
        if (r == 0 || inertia < best) {
            best = inertia;
            memcpy(part, assign, sizeof *part * (size_t)K);
        }
    }
done:
    free(emb);
    free(centers);
    free(d2);
    free(assign);
    free(count);
    return s;
}
