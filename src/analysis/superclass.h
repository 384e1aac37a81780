/* Super-class partition internals (paper Sec. 3.2): the confusion graph as a dense symmetric
 * weight matrix, the balance bounds every method must meet, and the shared repair/refinement
 * pass that enforces them. */
#ifndef MVMOE_ANALYSIS_SUPERCLASS_H
#define MVMOE_ANALYSIS_SUPERCLASS_H

#include <stdint.h>

#include "mvmoe.h"

/* Largest class count accepted: the dense K x K weight matrix (and the spectral method's
 * O(K^3) eigen-decomposition) must stay affordable. */
#define MVMOE_SUPERCLASS_MAX_K 16384

/* Relative slack of the balance bounds: group sizes lie in [lo, hi] with
 * hi = max(ceil(K/E), floor(K/E * (1 + tol))), lo = min(floor(K/E), ceil(K/E * (1 - tol))),
 * so small K is as balanced as integers allow and large K gets METIS's usual 3 %. */
#define MVMOE_SUPERCLASS_TOL 0.03

void mvmoe_superclass_bounds(int K, int E, int *lo, int *hi);

/* Moves classes until every group size is in [lo, hi] (each move the one that loses the
 * least within-group weight), then improves the within-group weight by single moves and
 * pairwise swaps that keep the bounds. w: [K*K] symmetric, zero diagonal. part[i] in 0..E-1
 * on entry (groups may be empty). Deterministic. */
mvmoe_status mvmoe_superclass_balance(const double *w, int K, int E, int lo, int hi, int *part);

/* Spectral clustering (normalized Laplacian, first E eigenvectors, row-normalized, k-means++)
 * into part[K] (0..E-1; groups may come out empty or unbalanced: the caller balances). */
mvmoe_status mvmoe_superclass_spectral(const double *w, int K, int E, uint64_t seed, int *part);

/* Sum of w over pairs in the same group (each unordered pair once). */
double mvmoe_superclass_within(const double *w, int K, const int *part);

#endif
