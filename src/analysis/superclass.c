/* Super-class partition (paper Sec. 3.2): the classes a dense model confuses with each other
 * are grouped together, so that each MoE expert specializes on one group of look-alikes.
 * The confusion graph has an edge i-j weighted by how often i and j are mistaken for each
 * other in either direction; it is cut into E balanced groups by METIS (the paper's tool) or,
 * as an alternative, by spectral clustering. Both end in the same balance pass, which
 * guarantees non-empty groups of near-equal size whatever the graph looks like. */
#include <math.h>
#include <metis.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/superclass.h"
#include "core/status.h"

/* METIS's idx_t is 32-bit here; the sum of all (both-direction) edge weights is kept below
 * this so its internal degree and cut sums cannot overflow. */
#define METIS_WEIGHT_BUDGET (double)(1 << 29)
/* METIS tries this many partitions from different random starts and keeps the best cut:
 * cheap for graphs of a few thousand vertices, and less dependent on one lucky seed. */
#define METIS_NCUTS 8

void mvmoe_superclass_bounds(int K, int E, int *lo, int *hi) {
    double avg = (double)K / E;
    int fl = K / E, ce = (K + E - 1) / E;
    int h = (int)floor(avg * (1.0 + MVMOE_SUPERCLASS_TOL));
    int l = (int)ceil(avg * (1.0 - MVMOE_SUPERCLASS_TOL));
    *hi = h > ce ? h : ce;
    *lo = l < fl ? l : fl;
    if (*lo < 1) *lo = 1;
}

double mvmoe_superclass_within(const double *w, int K, const int *part) {
    double s = 0;
    for (int i = 0; i < K; i++)
        for (int j = i + 1; j < K; j++)
            if (part[i] == part[j]) s += w[(size_t)i * K + j];
    return s;
}

/* ---------------------------------------------------------------- balance + refinement */

static void move_vertex(const double *w, int K, int E, int *part, int *size, double *conn, int v,
                        int to) {
    int from = part[v];
    const double *wv = w + (size_t)v * K;
    for (int u = 0; u < K; u++) {
        conn[(size_t)u * E + from] -= wv[u];
        conn[(size_t)u * E + to] += wv[u];
    }
    part[v] = to;
    size[from]--;
    size[to]++;
}

/* One repair move: from a group outside the bounds (or able to give) to one that can take,
 * the move losing the least within-group weight. Returns 0 when all sizes are in bounds. */
static int repair_step(const double *w, int K, int E, int lo, int hi, int *part, int *size,
                       double *conn) {
    int over = 0, under = 0;
    for (int g = 0; g < E; g++) {
        over |= size[g] > hi;
        under |= size[g] < lo;
    }
    if (!over && !under) return 0;
    int best_v = -1, best_t = -1;
    double best = -INFINITY;
    for (int v = 0; v < K; v++) {
        int a = part[v];
        /* too full groups give first; then any group above lo gives to one below lo */
        if (over ? size[a] <= hi : size[a] <= lo) continue;
        for (int t = 0; t < E; t++) {
            if (t == a) continue;
            if (over ? (size[t] >= hi || (under && size[t] >= lo)) : size[t] >= lo) continue;
            double gain = conn[(size_t)v * E + t] - conn[(size_t)v * E + a];
            if (gain > best) {
                best = gain;
                best_v = v;
                best_t = t;
            }
        }
    }
    if (best_v < 0) return 0; /* cannot happen when lo*E <= K <= hi*E; the caller re-checks */
    move_vertex(w, K, E, part, size, conn, best_v, best_t);
    return 1;
}

/* Local refinement: moves and swaps that raise the within-group weight and keep the bounds.
 * The weights are integer counts (exact in double), so every accepted step gains >= 1 and
 * the loop ends; the pass cap only bounds the time on huge graphs. */
static void refine(const double *w, int K, int E, int lo, int hi, int *part, int *size,
                   double *conn) {
    const double min_gain = 0.5;
    for (int pass = 0; pass < 100; pass++) {
        int improved = 0;
        for (int v = 0; v < K; v++) {
            int a = part[v], bt = -1;
            double best = min_gain;
            if (size[a] > lo) {
                for (int t = 0; t < E; t++) {
                    if (t == a || size[t] >= hi) continue;
                    double gain = conn[(size_t)v * E + t] - conn[(size_t)v * E + a];
                    if (gain > best) {
                        best = gain;
                        bt = t;
                    }
                }
            }
            if (bt >= 0) {
                move_vertex(w, K, E, part, size, conn, v, bt);
                improved = 1;
                continue;
            }
            int bu = -1;
            best = min_gain;
            const double *cv = conn + (size_t)v * E;
            for (int u = v + 1; u < K; u++) {
                int b = part[u];
                if (b == a) continue;
                const double *cu = conn + (size_t)u * E;
                double gain = cv[b] - cv[a] + cu[a] - cu[b] - 2.0 * w[(size_t)v * K + u];
                if (gain > best) {
                    best = gain;
                    bu = u;
                }
            }
            if (bu >= 0) {
                int b = part[bu];
                move_vertex(w, K, E, part, size, conn, v, b);
                move_vertex(w, K, E, part, size, conn, bu, a);
                improved = 1;
            }
        }
        if (!improved) break;
    }
}

mvmoe_status mvmoe_superclass_balance(const double *w, int K, int E, int lo, int hi, int *part) {
    if ((int64_t)lo * E > K || (int64_t)hi * E < K || lo < 1)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class sizes in [%d, %d] cannot hold %d classes in %d groups",
                   lo, hi, K, E);
    int *size;
    double *conn;
    MVMOE_ALLOC(size, E, "super-class sizes");
    conn = mvmoe_calloc_checked((size_t)K * (size_t)E, sizeof *conn, "super-class connection table",
                                __FILE__, __LINE__);
    if (!conn) {
        free(size);
        return MVMOE_ERR_NOMEM;
    }
    for (int v = 0; v < K; v++) {
        size[part[v]]++;
        for (int u = 0; u < K; u++) conn[(size_t)v * E + part[u]] += w[(size_t)v * K + u];
    }
    while (repair_step(w, K, E, lo, hi, part, size, conn)) {
    }
    refine(w, K, E, lo, hi, part, size, conn);
    mvmoe_status s = MVMOE_OK;
    for (int g = 0; g < E; g++)
        if (size[g] < lo || size[g] > hi)
            s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                                "super-class balance: group %d has %d classes, outside [%d, %d] "
                                "(internal error; please report)", g, size[g], lo, hi);
    free(conn);
    free(size);
    return s;
}

/* ---------------------------------------------------------------- METIS */

/* One METIS run: recursive bisection or direct k-way, with load imbalance tolerance
 * `ufactor` (thousandths). */
static mvmoe_status metis_partition(const double *w, int K, int E, int kway, int ufactor,
                                    uint64_t seed, int *part) {
    size_t nadj = 0;
    double total = 0;
    for (size_t i = 0; i < (size_t)K * K; i++)
        if (w[i] > 0) {
            nadj++;
            total += w[i];
        }
    /* Scaling keeps the structure; a tiny positive weight stays an edge (weight 1). */
    double scale = total > METIS_WEIGHT_BUDGET ? METIS_WEIGHT_BUDGET / total : 1.0;
    idx_t *xadj = NULL, *adjncy = NULL, *adjwgt = NULL, *mpart = NULL;
    xadj = calloc((size_t)K + 1, sizeof *xadj);
    adjncy = calloc(nadj ? nadj : 1, sizeof *adjncy);
    adjwgt = calloc(nadj ? nadj : 1, sizeof *adjwgt);
    mpart = calloc((size_t)K, sizeof *mpart);
    if (!xadj || !adjncy || !adjwgt || !mpart) {
        free(xadj);
        free(adjncy);
        free(adjwgt);
        free(mpart);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "METIS graph of %d classes and %zu edges: out of memory", K, nadj / 2);
    }
    size_t e = 0;
    for (int i = 0; i < K; i++) {
        for (int j = 0; j < K; j++) {
            double x = w[(size_t)i * K + j];
            if (x <= 0) continue;
            double sx = nearbyint(x * scale);
            adjncy[e] = j;
            adjwgt[e] = sx < 1 ? 1 : (idx_t)sx;
            e++;
        }
        xadj[i + 1] = (idx_t)e;
    }
    idx_t options[METIS_NOPTIONS];
    METIS_SetDefaultOptions(options);
    options[METIS_OPTION_NUMBERING] = 0;
    options[METIS_OPTION_SEED] = (idx_t)((seed ^ (seed >> 32)) & 0x7fffffff);
    options[METIS_OPTION_NCUTS] = METIS_NCUTS;
    options[METIS_OPTION_UFACTOR] = ufactor;
    idx_t nvtxs = K, ncon = 1, nparts = E, objval = 0;
    int rc = (kway ? METIS_PartGraphKway : METIS_PartGraphRecursive)(
        &nvtxs, &ncon, xadj, adjncy, NULL, NULL, adjwgt, &nparts, NULL, NULL, options, &objval, mpart);
    mvmoe_status s = MVMOE_OK;
    if (rc != METIS_OK) {
        const char *why = rc == METIS_ERROR_INPUT    ? "rejected the input"
                          : rc == METIS_ERROR_MEMORY ? "ran out of memory"
                                                     : "failed";
        s = mvmoe_error_set(rc == METIS_ERROR_MEMORY ? MVMOE_ERR_NOMEM : MVMOE_ERR_INVALID, __FILE__,
                            __LINE__,
                            "METIS %s (code %d) partitioning the confusion graph of %d classes "
                            "into %d super-classes; try --method spectral",
                            why, rc, K, E);
    } else {
        for (int i = 0; i < K; i++) {
            if (mpart[i] < 0 || mpart[i] >= E) {
                s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                                    "METIS put class %d in part %d of %d; try --method spectral", i,
                                    (int)mpart[i], E);
                break;
            }
            part[i] = (int)mpart[i];
        }
    }
    free(xadj);
    free(adjncy);
    free(adjwgt);
    free(mpart);
    return s;
}

/* On graphs of a few dozen vertices METIS is brittle: which variant finds the best balanced
 * cut changes with the graph (measured on Fashion-MNIST's 10 classes: recursive bisection with
 * a loose tolerance splits {Sandal, Sneaker, Ankle boot} at E = 4 where the strict one does
 * not; k-way leaves parts empty at E = 5). So four variants run, each is balanced and
 * refined, and the largest within-group confusion wins (the first on ties): deterministic,
 * and never worse than any single variant. */
static mvmoe_status metis_best(const double *w, int K, int E, int lo, int hi, uint64_t seed,
                               int *part) {
    /* the tolerance that allows groups of up to hi classes, in thousandths */
    double u = ceil(1000.0 * ((double)hi * E / K - 1.0));
    int uf_hi = (int)(u < 1 ? 1 : u > 1000 ? 1000 : u);
    /* {k-way?, ufactor}: METIS's own defaults (1 for recursive, 30 for k-way) and uf_hi */
    const int variants[4][2] = {{0, uf_hi}, {0, 1}, {1, uf_hi}, {1, 30}};
    int *cand;
    MVMOE_ALLOC(cand, K, "METIS candidate partition");
    double best = -1;
    mvmoe_status s = MVMOE_OK, metis_err = MVMOE_OK;
    for (int v = 0; v < 4 && s == MVMOE_OK; v++) {
        /* a variant METIS refuses is skipped; the message of the first is kept */
        mvmoe_status ms = metis_partition(w, K, E, variants[v][0], variants[v][1], seed, cand);
        if (ms != MVMOE_OK) {
            if (metis_err == MVMOE_OK) metis_err = ms;
            continue;
        }
        if ((s = mvmoe_superclass_balance(w, K, E, lo, hi, cand)) != MVMOE_OK) break;
        double within = mvmoe_superclass_within(w, K, cand);
        if (within > best) {
            best = within;
            memcpy(part, cand, sizeof *part * (size_t)K);
        }
    }
    free(cand);
    if (s == MVMOE_OK && best < 0) s = metis_err;
    return s;
}

/* ---------------------------------------------------------------- the partition */

/* Groups renumbered by first appearance (class 0 is in group 0, ...): a canonical form, so
 * equal partitions print equal maps whatever labels a method happened to use. */
static void canonical_labels(int K, int E, int *part, int *out, int *relabel) {
    for (int g = 0; g < E; g++) relabel[g] = -1;
    int next = 0;
    for (int i = 0; i < K; i++) {
        if (relabel[part[i]] < 0) relabel[part[i]] = next++;
        out[i] = relabel[part[i]];
    }
}

mvmoe_status mvmoe_superclass_partition(const int64_t *confusion, int K, int E,
                                        mvmoe_partition_method method, uint64_t seed,
                                        int *superclass_of) {
    if (!confusion || !superclass_of)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class partition: confusion matrix or output is NULL");
    if (K < 1 || K > MVMOE_SUPERCLASS_MAX_K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class partition: %d classes; 1 to %d are supported", K,
                   MVMOE_SUPERCLASS_MAX_K);
    if (E < 1 || E > K)
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "cannot partition %d classes into %d super-classes: the number of super-classes "
                   "(experts) must be between 1 and %d",
                   K, E, K);
    if (method != MVMOE_PARTITION_METIS && method != MVMOE_PARTITION_SPECTRAL)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class partition: unknown method %d", (int)method);
    for (size_t i = 0; i < (size_t)K * K; i++)
        if (confusion[i] < 0)
            MVMOE_FAIL(MVMOE_ERR_INVALID,
                       "confusion matrix entry [%zu][%zu] is %lld; counts cannot be negative",
                       i / (size_t)K, i % (size_t)K, (long long)confusion[i]);
    if (E == 1 || E == K) {
        for (int i = 0; i < K; i++) superclass_of[i] = E == 1 ? 0 : i;
        return MVMOE_OK;
    }

    double *w;
    MVMOE_ALLOC(w, (size_t)K * K, "confusion graph");
    int *part = calloc((size_t)K, sizeof *part), *relabel = calloc((size_t)E, sizeof *relabel);
    if (!part || !relabel) {
        free(w);
        free(part);
        free(relabel);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "super-class partition of %d classes: out of memory", K);
    }
    /* w(i,j) = C[i][j] + C[j][i]: confusion in either direction links the two classes; the
     * diagonal (correct predictions) says nothing about which classes look alike. */
    double total = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double x = i == j ? 0.0
                              : (double)confusion[(size_t)i * K + j] + (double)confusion[(size_t)j * K + i];
            w[(size_t)i * K + j] = x;
            total += x;
        }
    int lo, hi;
    mvmoe_superclass_bounds(K, E, &lo, &hi);
    mvmoe_status s = MVMOE_OK;
    if (total == 0) {
        /* No confusion at all: nothing to learn; contiguous balanced blocks. */
        for (int i = 0; i < K; i++) part[i] = (int)((int64_t)i * E / K);
    } else if (method == MVMOE_PARTITION_METIS) {
        s = metis_best(w, K, E, lo, hi, seed, part);
    } else {
        s = mvmoe_superclass_spectral(w, K, E, seed, part);
    }
    if (s == MVMOE_OK) s = mvmoe_superclass_balance(w, K, E, lo, hi, part);
    if (s == MVMOE_OK) canonical_labels(K, E, part, superclass_of, relabel);
    free(w);
    free(part);
    free(relabel);
    return s;
}
