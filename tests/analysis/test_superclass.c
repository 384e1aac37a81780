/* Super-class partition (paper Sec. 3.2) and map files: planted confusion blocks recovered
 * exactly by METIS and spectral clustering, balanced non-empty groups on any graph (random,
 * all-zero, disconnected, K = 1000), the E = 1 / E = K / invalid-E cases, determinism, and
 * map save -> load round trips plus hostile map files, read by the one map reader that both
 * training (K known) and `mvmoe report` (K from the file, every field) use. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analysis/superclass.h"
#include "analysis/superclass_map.h"
#include "core/rng.h"
#include "mvmoe.h"
#include "test_util.h"

static const mvmoe_partition_method METHODS[2] = {MVMOE_PARTITION_METIS, MVMOE_PARTITION_SPECTRAL};
static const char *METHOD_NAMES[2] = {"metis", "spectral"};

/* Confusion with planted blocks: `group[i]` is class i's true group; heavy confusion inside a
 * group, light noise across. */
static void planted(int64_t *C, int K, const int *group, uint64_t seed, int inside, int across) {
    mvmoe_rng r;
    mvmoe_rng_init(&r, seed, 7);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            int64_t v;
            if (i == j) v = 500;
            else if (group[i] == group[j]) v = inside + (int64_t)mvmoe_rng_below(&r, (uint32_t)inside + 1);
            else v = (int64_t)mvmoe_rng_below(&r, (uint32_t)across + 1);
            C[(size_t)i * K + j] = v;
        }
}

/* Same partition up to the labels of the groups. */
static int same_partition(const int *a, const int *b, int K) {
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            if ((a[i] == a[j]) != (b[i] == b[j])) return 0;
    return 1;
}

/* Every label in 0..E-1, every group non-empty, sizes within [lo, hi]. */
static int check_groups(const int *p, int K, int E, int lo, int hi, const char *what) {
    int *n = calloc((size_t)E, sizeof *n), ok = 1;
    for (int i = 0; i < K; i++) {
        if (p[i] < 0 || p[i] >= E) {
            fprintf(stderr, "%s: class %d in group %d of %d\n", what, i, p[i], E);
            free(n);
            return 0;
        }
        n[p[i]]++;
    }
    for (int g = 0; g < E; g++)
        if (n[g] < lo || n[g] > hi) {
            fprintf(stderr, "%s: group %d has %d classes, want %d..%d\n", what, g, n[g], lo, hi);
            ok = 0;
        }
    free(n);
    return ok;
}

static double within_weight(const int64_t *C, int K, const int *p) {
    double s = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            if (i != j && p[i] == p[j]) s += (double)C[(size_t)i * K + j];
    return s;
}

static void test_planted_small(void) {
    enum { K = 10 };
    const int truth[K] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2};
    int64_t C[K * K];
    int p[K];
    for (int m = 0; m < 2; m++)
        for (uint64_t seed = 0; seed < 5; seed++) {
            planted(C, K, truth, 100 + seed, 20, 3);
            mvmoe_status s = mvmoe_superclass_partition(C, K, 3, METHODS[m], seed, p);
            CHECK(s == MVMOE_OK, "%s: %s", METHOD_NAMES[m], mvmoe_last_error());
            CHECK(same_partition(p, truth, K), "%s seed %llu: planted 3/4/3 blocks not recovered",
                  METHOD_NAMES[m], (unsigned long long)seed);
            /* canonical labels: numbered by first appearance */
            CHECK(p[0] == 0 && p[3] == 1 && p[7] == 2, "%s: labels not canonical (%d %d %d)",
                  METHOD_NAMES[m], p[0], p[3], p[7]);
        }
}

/* 100 classes in 10 shuffled blocks of 10, like CIFAR-100's super-classes. */
static void test_planted_shuffled(void) {
    enum { K = 100, E = 10 };
    int truth[K];
    int32_t perm[K];
    for (int i = 0; i < K; i++) perm[i] = i;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 5, 1);
    mvmoe_rng_shuffle_i32(&r, perm, K);
    for (int i = 0; i < K; i++) truth[perm[i]] = i / 10;
    int64_t *C = malloc(sizeof *C * K * K);
    int p[K];
    planted(C, K, truth, 9, 6, 2);
    for (int m = 0; m < 2; m++) {
        mvmoe_status s = mvmoe_superclass_partition(C, K, E, METHODS[m], 0, p);
        CHECK(s == MVMOE_OK, "%s: %s", METHOD_NAMES[m], mvmoe_last_error());
        CHECK(same_partition(p, truth, K), "%s: 10 shuffled blocks of 10 not recovered", METHOD_NAMES[m]);
    }
    free(C);
}

/* Random confusion (no structure): balance is all that can be asked, plus beating a random
 * balanced assignment on within-group weight. */
static void test_balance_random(void) {
    const int Ks[4] = {10, 10, 37, 1000}, Es[4] = {4, 3, 5, 10};
    const int lo[4] = {2, 3, 7, 97}, hi[4] = {3, 4, 8, 103};
    for (int t = 0; t < 4; t++) {
        int K = Ks[t], E = Es[t];
        int64_t *C = malloc(sizeof *C * (size_t)K * K);
        int *p = malloc(sizeof *p * (size_t)K), *base = malloc(sizeof *base * (size_t)K);
        mvmoe_rng r;
        mvmoe_rng_init(&r, 3 + (uint64_t)t, 2);
        for (int i = 0; i < K * K; i++) C[i] = mvmoe_rng_below(&r, 4) == 0 ? mvmoe_rng_below(&r, 50) : 0;
        for (int i = 0; i < K; i++) base[i] = i % E;
        for (int m = 0; m < 2; m++) {
            char what[64];
            snprintf(what, sizeof what, "%s K=%d E=%d", METHOD_NAMES[m], K, E);
            clock_t t0 = clock();
            mvmoe_status s = mvmoe_superclass_partition(C, K, E, METHODS[m], 1, p);
            double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
            CHECK(s == MVMOE_OK, "%s: %s", what, mvmoe_last_error());
            CHECK(check_groups(p, K, E, lo[t], hi[t], what), "%s: unbalanced", what);
            CHECK(within_weight(C, K, p) > within_weight(C, K, base),
                  "%s: within-group confusion %.0f not above a round-robin split's %.0f", what,
                  within_weight(C, K, p), within_weight(C, K, base));
            if (K >= 1000) printf("%s: %.2f s CPU\n", what, sec);
        }
        free(C);
        free(p);
        free(base);
    }
}

/* Exhaustive search over balanced partitions of a small graph: the best within-group
 * confusion any partition with sizes in [lo, hi] reaches. */
typedef struct {
    const int64_t *C;
    int K, E, lo, hi, p[12], size[12];
    double best;
} brute;

static void brute_rec(brute *b, int i, int used) {
    if (used + (b->K - i) < b->E) return; /* too few classes left to open every group */
    if (i == b->K) {
        for (int g = 0; g < b->E; g++)
            if (b->size[g] < b->lo) return;
        double w = within_weight(b->C, b->K, b->p);
        if (w > b->best) b->best = w;
        return;
    }
    for (int g = 0; g < (used < b->E ? used + 1 : b->E); g++) {
        if (b->size[g] >= b->hi) continue;
        b->p[i] = g;
        b->size[g]++;
        brute_rec(b, i + 1, g == used ? used + 1 : used);
        b->size[g]--;
    }
}

/* Random sparse confusion on 8..11 classes into 3 or 4 groups, against the exhaustive
 * optimum. Measured when written (200 graphs, seed 0): METIS optimal on 185, mean ratio
 * 0.998, worst 0.934; spectral optimal on 162, mean 0.992, worst 0.823. The bounds below
 * leave margin; a broken refinement or balance pass falls far below them. */
static void test_quality(void) {
    enum { N = 100 };
    double sum[2] = {0, 0}, worst[2] = {1, 1};
    int optimal[2] = {0, 0};
    for (int t = 0; t < N; t++) {
        brute b = {0};
        int64_t C[11 * 11];
        mvmoe_rng r;
        mvmoe_rng_init(&r, (uint64_t)t, 99);
        b.K = 8 + t % 4;
        b.E = 3 + t % 2;
        b.C = C;
        for (int i = 0; i < b.K * b.K; i++) C[i] = mvmoe_rng_below(&r, 3) == 0 ? mvmoe_rng_below(&r, 40) : 0;
        b.lo = b.K / b.E;                  /* the library's bounds at this size: */
        b.hi = (b.K + b.E - 1) / b.E;      /* as even as integers allow */
        b.best = -1;
        brute_rec(&b, 0, 0);
        for (int m = 0; m < 2; m++) {
            int p[11];
            CHECK(mvmoe_superclass_partition(C, b.K, b.E, METHODS[m], 0, p) == MVMOE_OK, "%s", mvmoe_last_error());
            CHECK(check_groups(p, b.K, b.E, b.lo, b.hi, "quality"), "graph %d unbalanced", t);
            double f = b.best > 0 ? within_weight(C, b.K, p) / b.best : 1.0;
            sum[m] += f;
            if (f < worst[m]) worst[m] = f;
            optimal[m] += f >= 1.0;
        }
    }
    for (int m = 0; m < 2; m++)
        printf("%s vs exhaustive search, %d graphs: optimal %d, mean ratio %.4f, worst %.4f\n",
               METHOD_NAMES[m], N, optimal[m], sum[m] / N, worst[m]);
    CHECK(sum[0] / N >= 0.99 && worst[0] >= 0.90 && optimal[0] >= N * 8 / 10,
          "METIS: mean %.4f worst %.4f optimal %d of %d", sum[0] / N, worst[0], optimal[0], N);
    CHECK(sum[1] / N >= 0.98 && worst[1] >= 0.75 && optimal[1] >= N * 7 / 10,
          "spectral: mean %.4f worst %.4f optimal %d of %d", sum[1] / N, worst[1], optimal[1], N);
}

static void test_degenerate_graphs(void) {
    enum { K = 10 };
    int64_t C[K * K];
    int p[K];
    /* no confusion at all: only the diagonal */
    memset(C, 0, sizeof C);
    for (int i = 0; i < K; i++) C[i * K + i] = 100;
    for (int m = 0; m < 2; m++) {
        mvmoe_status s = mvmoe_superclass_partition(C, K, 3, METHODS[m], 0, p);
        CHECK(s == MVMOE_OK && check_groups(p, K, 3, 3, 4, "zero graph"), "%s zero graph: %s",
              METHOD_NAMES[m], mvmoe_last_error());
    }
    /* two disconnected components of 5, into 4 groups: a zero cut exists (3+2 per side) */
    const int comp[K] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    planted(C, K, comp, 4, 10, 0);
    for (int m = 0; m < 2; m++) {
        mvmoe_status s = mvmoe_superclass_partition(C, K, 4, METHODS[m], 0, p);
        CHECK(s == MVMOE_OK && check_groups(p, K, 4, 2, 3, "disconnected"), "%s disconnected: %s",
              METHOD_NAMES[m], mvmoe_last_error());
        int mixed = 0;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) mixed |= p[i] == p[j] && comp[i] != comp[j];
        CHECK(!mixed, "%s: a group spans both disconnected components", METHOD_NAMES[m]);
    }
    /* one isolated class (no confusion either way) among a confused clique */
    for (int i = 0; i < K * K; i++) C[i] = (i / K == 9 || i % K == 9) ? 0 : 5;
    for (int m = 0; m < 2; m++) {
        mvmoe_status s = mvmoe_superclass_partition(C, K, 5, METHODS[m], 0, p);
        CHECK(s == MVMOE_OK && check_groups(p, K, 5, 2, 2, "isolated"), "%s isolated class: %s",
              METHOD_NAMES[m], mvmoe_last_error());
    }
}

static void test_edge_cases(void) {
    enum { K = 6 };
    int64_t C[K * K];
    int p[K];
    for (int i = 0; i < K * K; i++) C[i] = i % 7;
    for (int m = 0; m < 2; m++) {
        for (int i = 0; i < K; i++) p[i] = -5;
        CHECK(mvmoe_superclass_partition(C, K, 1, METHODS[m], 0, p) == MVMOE_OK, "E=1");
        int zeros = 1, ident = 1;
        for (int i = 0; i < K; i++) zeros &= p[i] == 0;
        CHECK(zeros, "%s: E=1 must put every class in super-class 0", METHOD_NAMES[m]);
        CHECK(mvmoe_superclass_partition(C, K, K, METHODS[m], 0, p) == MVMOE_OK, "E=K");
        for (int i = 0; i < K; i++) ident &= p[i] == i;
        CHECK(ident, "%s: E=K must be the identity", METHOD_NAMES[m]);
        const int bad[3] = {0, -1, K + 1};
        for (int b = 0; b < 3; b++) {
            mvmoe_status s = mvmoe_superclass_partition(C, K, bad[b], METHODS[m], 0, p);
            CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "super-classes"),
                  "E=%d: status %d, message '%s'", bad[b], (int)s, mvmoe_last_error());
        }
    }
    CHECK(mvmoe_superclass_partition(C, 0, 1, MVMOE_PARTITION_METIS, 0, p) == MVMOE_ERR_INVALID, "K=0");
    CHECK(mvmoe_superclass_partition(NULL, K, 2, MVMOE_PARTITION_METIS, 0, p) == MVMOE_ERR_INVALID, "NULL");
    CHECK(mvmoe_superclass_partition(C, K, 2, (mvmoe_partition_method)7, 0, p) == MVMOE_ERR_INVALID,
          "unknown method");
    C[3] = -1;
    mvmoe_status s = mvmoe_superclass_partition(C, K, 2, MVMOE_PARTITION_METIS, 0, p);
    CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "negative"), "negative count: '%s'",
          mvmoe_last_error());
    /* counts near INT64_MAX must not overflow the edge weights */
    for (int i = 0; i < K * K; i++) C[i] = (i % 5 == 0) ? INT64_MAX / 2 : 1;
    for (int m = 0; m < 2; m++) {
        s = mvmoe_superclass_partition(C, K, 2, METHODS[m], 0, p);
        CHECK(s == MVMOE_OK && check_groups(p, K, 2, 3, 3, "huge counts"), "%s huge counts: %s",
              METHOD_NAMES[m], mvmoe_last_error());
    }
}

static void test_determinism(void) {
    enum { K = 30, E = 4 };
    int64_t C[K * K];
    int a[K], b[K];
    mvmoe_rng r;
    mvmoe_rng_init(&r, 11, 3);
    for (int i = 0; i < K * K; i++) C[i] = mvmoe_rng_below(&r, 20);
    for (int m = 0; m < 2; m++)
        for (uint64_t seed = 0; seed < 3; seed++) {
            CHECK(mvmoe_superclass_partition(C, K, E, METHODS[m], seed, a) == MVMOE_OK, "run 1");
            CHECK(mvmoe_superclass_partition(C, K, E, METHODS[m], seed, b) == MVMOE_OK, "run 2");
            CHECK(memcmp(a, b, sizeof a) == 0, "%s seed %llu: two runs differ", METHOD_NAMES[m],
                  (unsigned long long)seed);
        }
}

/* ---------------------------------------------------------------- map files */

static char tmpdir[] = "/tmp/test_superclass_XXXXXX";

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_map_round_trip(void) {
    enum { K = 5 };
    const int map[K] = {0, 2, 1, 2, 0};
    const char *names[K] = {"cat", NULL, "dog", "tiger \"stripes\"", "lynx"};
    char path[256];
    snprintf(path, sizeof path, "%s/map.json", tmpdir);
    mvmoe_status s = mvmoe_superclass_map_save(path, map, K, 3, names, "metis", "unit test");
    CHECK(s == MVMOE_OK, "save: %s", mvmoe_last_error());
    int back[K], E = 0;
    s = mvmoe_superclass_map_load(path, K, back, &E);
    CHECK(s == MVMOE_OK && E == 3 && memcmp(back, map, sizeof map) == 0, "round trip: %s",
          mvmoe_last_error());
    char *text = slurp(path);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    CHECK(o != NULL, "saved map is not JSON");
    if (o) {
        const cJSON *g = cJSON_GetObjectItem(o, "groups"), *sz = cJSON_GetObjectItem(o, "sizes");
        const cJSON *g2 = cJSON_GetArrayItem(g, 2), *g0 = cJSON_GetArrayItem(g, 0);
        CHECK(cJSON_GetArraySize(g) == 3 && cJSON_GetArraySize(sz) == 3, "groups/sizes length");
        CHECK(cJSON_GetArrayItem(sz, 0)->valueint == 2 && cJSON_GetArrayItem(sz, 2)->valueint == 2,
              "sizes");
        CHECK(g2 && strcmp(cJSON_GetArrayItem(g2, 0)->valuestring, "1") == 0 &&
                  strcmp(cJSON_GetArrayItem(g2, 1)->valuestring, "tiger \"stripes\"") == 0,
              "group 2 names (NULL name -> index)");
        CHECK(g0 && strcmp(cJSON_GetArrayItem(g0, 1)->valuestring, "lynx") == 0, "group 0 names");
        CHECK(cJSON_GetObjectItem(o, "experts")->valueint == 3, "experts");
        CHECK(strcmp(cJSON_GetObjectItem(o, "method")->valuestring, "metis") == 0, "method");
        cJSON_Delete(o);
    }
    /* all names NULL, no method/source */
    s = mvmoe_superclass_map_save(path, map, K, 3, NULL, NULL, NULL);
    CHECK(s == MVMOE_OK && mvmoe_superclass_map_load(path, K, back, &E) == MVMOE_OK && E == 3,
          "save without names: %s", mvmoe_last_error());
    /* no temp file left behind */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temporary file left behind");

    /* plain text of K integers */
    const char *tp = write_tmp("map.txt", "0 1\n 1\t2  0\n");
    s = mvmoe_superclass_map_load(tp, K, back, &E);
    CHECK(s == MVMOE_OK && E == 3 && back[0] == 0 && back[3] == 2, "text map: %s", mvmoe_last_error());

    /* save rejects bad maps and unwritable places, leaving nothing */
    const int bad[K] = {0, 3, 1, 2, 0};
    CHECK(mvmoe_superclass_map_save(path, bad, K, 3, NULL, NULL, NULL) == MVMOE_ERR_INVALID, "range");
    const int gap[K] = {0, 2, 0, 2, 0};
    CHECK(mvmoe_superclass_map_save(path, gap, K, 3, NULL, NULL, NULL) == MVMOE_ERR_INVALID, "unused");
    CHECK(mvmoe_superclass_map_save(path, map, K, 6, NULL, NULL, NULL) == MVMOE_ERR_INVALID, "E > K");
    char nodir[300];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/map.json", tmpdir);
    s = mvmoe_superclass_map_save(nodir, map, K, 3, NULL, NULL, NULL);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), nodir), "unwritable: %d '%s'", (int)s,
          mvmoe_last_error());
}

typedef struct {
    const char *name, *text, *needle;
} hostile;

static void test_map_hostile(void) {
    enum { K = 5 };
    const hostile cases[] = {
        {"count.json", "{\"superclass_of\": [0, 1, 1, 0]}", "4 classes"},
        {"count.txt", "0 1 1 0", "4 entries"},
        {"many.txt", "0 1 1 0 1 0", "more than 5"},
        {"range.json", "{\"superclass_of\": [0, 1, 9, 0, 1]}", "superclass_of[2]"},
        {"neg.json", "{\"superclass_of\": [0, -1, 1, 0, 1]}", "superclass_of[1]"},
        {"frac.json", "{\"superclass_of\": [0, 1.5, 1, 0, 1]}", "1.5"},
        {"str.json", "{\"superclass_of\": [0, \"1\", 1, 0, 1]}", "superclass_of[1]"},
        {"range.txt", "0 1 5 0 1", "entry 2"},
        {"neg.txt", "0 1 -2 0 1", "entry 2"},
        {"unused.json", "{\"superclass_of\": [0, 0, 2, 2, 2]}", "super-class 1"},
        {"unused.txt", "3 3 0 1 1", "super-class 2"},
        {"experts.json", "{\"experts\": 3, \"superclass_of\": [0, 0, 1, 1, 1]}", "\"experts\": 3"},
        {"notjson.json", "{\"superclass_of\": [0, 1, 1", "not valid JSON"},
        {"noarray.json", "{\"map\": [0, 1, 1, 0, 1]}", "superclass_of"},
        {"garbage.txt", "0 1 x 0 1", "'x'"},
        {"array.json", "[0, 1, 1, 0, 1]", "not an integer"},
        {"empty.txt", "", "0 entries"},
        {"big.txt", "0 1 99999999999999999999 0 1", "entry 2"},
        /* the extras `mvmoe report` reads are checked for training too: one reader */
        {"trailing.json", "{\"superclass_of\": [0, 1, 1, 0, 1]} x", "not valid JSON"},
        {"notarray.json", "{\"superclass_of\": 3}", "\"superclass_of\""},
        {"experts_range.json", "{\"experts\": 9, \"superclass_of\": [0, 1, 1, 0, 1]}", "\"experts\""},
        {"sizes.json", "{\"superclass_of\": [0, 1, 1, 0, 1], \"sizes\": [3, 2]}", "\"sizes\""},
        {"sizes_len.json", "{\"superclass_of\": [0, 1, 1, 0, 1], \"sizes\": [2]}", "\"sizes\""},
        {"groups.json", "{\"superclass_of\": [0, 1, 1, 0, 1], \"groups\": [[\"a\"], [\"b\", \"c\", \"d\"]]}",
         "\"groups\""},
        {"groups_str.json", "{\"superclass_of\": [0, 1, 1, 0, 1], \"groups\": [[1, 2], [\"b\", \"c\", \"d\"]]}",
         "\"groups\""},
        {"method.json", "{\"superclass_of\": [0, 1, 1, 0, 1], \"method\": 3}", "\"method\""},
        {"source.json", "{\"superclass_of\": [0, 1, 1, 0, 1], \"source\": [1]}", "\"source\""},
    };
    int sentinel[K];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *p = write_tmp(cases[c].name, cases[c].text);
        for (int i = 0; i < K; i++) sentinel[i] = -7;
        int E = -7;
        mvmoe_status s = mvmoe_superclass_map_load(p, K, sentinel, &E);
        CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), cases[c].needle) &&
                  strstr(mvmoe_last_error(), p),
              "%s: status %d, message '%s' (want '%s' and the path)", cases[c].name, (int)s,
              mvmoe_last_error(), cases[c].needle);
        CHECK(sentinel[0] == -7 && E == -7, "%s: output written on failure", cases[c].name);
    }
    /* binary (NUL inside) */
    char path[256];
    snprintf(path, sizeof path, "%s/nul.txt", tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite("0 1\0 1 0 1", 1, 10, f);
    fclose(f);
    int m[K], E;
    CHECK(mvmoe_superclass_map_load(path, K, m, &E) == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "binary"),
          "NUL byte: '%s'", mvmoe_last_error());
    /* huge (sparse) file: refused by size before reading */
    snprintf(path, sizeof path, "%s/huge.json", tmpdir);
    f = fopen(path, "wb");
    CHECK(f && ftruncate(fileno(f), 64L * 1024 * 1024) == 0, "cannot make the huge file");
    if (f) fclose(f);
    mvmoe_status s = mvmoe_superclass_map_load(path, K, m, &E);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "bytes"), "huge file: %d '%s'", (int)s,
          mvmoe_last_error());
    /* missing file, a folder */
    snprintf(path, sizeof path, "%s/missing.json", tmpdir);
    s = mvmoe_superclass_map_load(path, K, m, &E);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), path), "missing: %d '%s'", (int)s, mvmoe_last_error());
    s = mvmoe_superclass_map_load(tmpdir, K, m, &E);
    CHECK(s == MVMOE_ERR_IO, "folder: %d '%s'", (int)s, mvmoe_last_error());
    CHECK(mvmoe_superclass_map_load(path, 0, m, &E) == MVMOE_ERR_INVALID, "K = 0");
}

/* What `mvmoe superclasses --json` prints: the stats and the exact object. */
static void test_summary_json(void) {
    enum { K = 4 };
    const int64_t C[K * K] = {5, 1, 0, 2, /**/ 2, 7, 0, 0, /**/ 0, 4, 3, 0, /**/ 1, 0, 0, 6};
    const int map[K] = {0, 0, 1, 0};
    int sizes[2] = {-1, -1};
    mvmoe_superclass_stats st = mvmoe_superclass_confusion_stats(C, K, map, 2, sizes);
    CHECK(st.correct == 21 && st.within == 6 && st.across == 4 && sizes[0] == 3 && sizes[1] == 1,
          "stats: %lld %lld %lld, sizes %d %d", (long long)st.correct, (long long)st.within, (long long)st.across,
          sizes[0], sizes[1]);
    const char *names[K] = {"cat", NULL, "dog \"d\"", "lynx"};
    mvmoe_superclass_summary sum = {.out = "m.json", .source = "unit test", .method = "metis", .seed = 7,
                                    .K = K, .E = 2, .images = 0, .top1 = -1, .confusion = C,
                                    .class_names = names, .superclass_of = map};
    char *json = NULL;
    mvmoe_status s = mvmoe_superclass_summary_json(&sum, &json);
    const char *want =
        "{\"out\":\"m.json\",\"source\":\"unit test\",\"method\":\"metis\",\"seed\":7,\"num_classes\":4,"
        "\"experts\":2,\"images\":null,\"top1\":null,\"correct\":21,\"confusion_within\":6,"
        "\"confusion_across\":4,\"within_fraction\":0.6,\"superclass_of\":[0,0,1,0],\"sizes\":[3,1],"
        "\"groups\":[[\"cat\",\"1\",\"lynx\"],[\"dog \\\"d\\\"\"]],"
        "\"class_names\":[\"cat\",\"1\",\"dog \\\"d\\\"\",\"lynx\"],"
        "\"confusion\":[[5,1,0,2],[2,7,0,0],[0,4,3,0],[1,0,0,6]]}";
    CHECK(s == MVMOE_OK && json && strcmp(json, want) == 0, "summary JSON:\n got  %s\n want %s", json ? json : "(null)",
          want);
    free(json);
    sum.images = 600;
    sum.top1 = 0.5;
    sum.class_names = NULL;
    s = mvmoe_superclass_summary_json(&sum, &json);
    CHECK(s == MVMOE_OK && json && strstr(json, "\"images\":600,\"top1\":0.5,") &&
              strstr(json, "\"class_names\":[\"0\",\"1\",\"2\",\"3\"]"),
          "images, top1, no names: %s", json ? json : "(null)");
    free(json);
    const int64_t diag[K * K] = {1, 0, 0, 0, /**/ 0, 1, 0, 0, /**/ 0, 0, 1, 0, /**/ 0, 0, 0, 1};
    sum.confusion = diag;
    s = mvmoe_superclass_summary_json(&sum, &json);
    CHECK(s == MVMOE_OK && json && strstr(json, "\"within_fraction\":null"), "no mistakes: %s", json ? json : "(null)");
    free(json);
    const int bad[K] = {0, 2, 1, 0};
    sum.superclass_of = bad;
    json = (char *)"x";
    CHECK(mvmoe_superclass_summary_json(&sum, &json) == MVMOE_ERR_INVALID && json == NULL &&
              strstr(mvmoe_last_error(), "class 1 is in super-class 2"),
          "index out of range: '%s'", mvmoe_last_error());
    sum.superclass_of = map;
    sum.E = 5;
    CHECK(mvmoe_superclass_summary_json(&sum, &json) == MVMOE_ERR_INVALID, "E > K");
    sum.E = 2;
    sum.source = NULL;
    CHECK(mvmoe_superclass_summary_json(&sum, &json) == MVMOE_ERR_INVALID, "NULL source");
}

/* The whole file, K from the file (what `mvmoe report --superclasses` reads). */
static void test_map_read(void) {
    enum { K = 5 };
    const int map[K] = {0, 2, 1, 2, 0};
    const char *names[K] = {"cat", NULL, "dog", "tiger", "lynx"};
    char path[256];
    snprintf(path, sizeof path, "%s/full.json", tmpdir);
    CHECK(mvmoe_superclass_map_save(path, map, K, 3, names, "metis", "unit test") == MVMOE_OK, "save: %s",
          mvmoe_last_error());
    mvmoe_superclass_map m;
    mvmoe_status s = mvmoe_superclass_map_read(path, 0, &m);
    CHECK(s == MVMOE_OK, "read: %s", mvmoe_last_error());
    if (s == MVMOE_OK) {
        CHECK(m.K == K && m.E == 3 && memcmp(m.superclass_of, map, sizeof map) == 0 && m.path == path, "K, E, map");
        CHECK(m.sizes[0] == 2 && m.sizes[1] == 1 && m.sizes[2] == 2, "sizes");
        CHECK(m.groups && strcmp(m.groups[0][1], "lynx") == 0 && strcmp(m.groups[1][0], "dog") == 0 &&
                  strcmp(m.groups[2][0], "1") == 0 && strcmp(m.groups[2][1], "tiger") == 0,
              "groups");
        CHECK(m.method && strcmp(m.method, "metis") == 0 && m.source && strcmp(m.source, "unit test") == 0,
              "method, source");
        mvmoe_superclass_map_free(&m);
        CHECK(m.superclass_of == NULL && m.groups == NULL && m.K == 0, "free leaves it empty");
    }
    s = mvmoe_superclass_map_read(path, K, &m);
    CHECK(s == MVMOE_OK && m.K == K && m.E == 3 && m.groups, "read with K: %s", mvmoe_last_error());
    mvmoe_superclass_map_free(&m);
    s = mvmoe_superclass_map_read(path, 4, &m);
    CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "maps 5 classes, but there are 4"), "K = 4: '%s'",
          mvmoe_last_error());
    CHECK(m.superclass_of == NULL && m.K == 0, "failed read left data");

    /* text: indices only */
    s = mvmoe_superclass_map_read(write_tmp("four.txt", "\xEF\xBB\xBF 0 1\n1 2\n"), 0, &m);
    CHECK(s == MVMOE_OK && m.K == 4 && m.E == 3 && m.sizes[1] == 2 && !m.groups && !m.method && !m.source,
          "text, K from the file: %s", mvmoe_last_error());
    mvmoe_superclass_map_free(&m);

    const hostile cases[] = {
        {"k0_range.txt", "0 5 1", "entry 1 is 5; each entry must be an integer from 0 to 2"},
        {"k0_empty.txt", " \n", "no entries"},
        {"k0_empty.json", "{\"superclass_of\": []}", "\"superclass_of\""},
        {"k0_range.json", "{\"superclass_of\": [0, 3, 1]}", "superclass_of[1] is 3"},
        {"k0_gap.json", "{\"superclass_of\": [0, 2, 2]}", "super-class 1"},
        {"k0_experts.json", "{\"superclass_of\": [0, 1, 1], \"experts\": 3}", "\"experts\": 3"},
        {"k0_null.json", "{\"superclass_of\": null}", "no field \"superclass_of\""},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *p = write_tmp(cases[c].name, cases[c].text);
        s = mvmoe_superclass_map_read(p, 0, &m);
        CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), cases[c].needle) && strstr(mvmoe_last_error(), p),
              "%s: status %d, message '%s' (want '%s' and the path)", cases[c].name, (int)s, mvmoe_last_error(),
              cases[c].needle);
        CHECK(m.superclass_of == NULL && m.sizes == NULL && m.K == 0 && m.E == 0, "%s: output left on failure",
              cases[c].name);
    }
    /* more classes than supported */
    size_t n = (size_t)MVMOE_SUPERCLASS_MAX_K + 1;
    char *many = malloc(2 * n + 1);
    CHECK(many != NULL, "out of memory");
    if (many) {
        for (size_t i = 0; i < n; i++) memcpy(many + 2 * i, "0 ", 2);
        many[2 * n] = 0;
        s = mvmoe_superclass_map_read(write_tmp("k0_many.txt", many), 0, &m);
        CHECK(s == MVMOE_ERR_FORMAT && strstr(mvmoe_last_error(), "more than 16384 entries"), "too many: '%s'",
              mvmoe_last_error());
        free(many);
    }
    /* a FIFO is refused before any read (no hang), through core/file.c */
    snprintf(path, sizeof path, "%s/fifo.json", tmpdir);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
    s = mvmoe_superclass_map_read(path, 0, &m);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), path), "FIFO: %d '%s'", (int)s, mvmoe_last_error());
    CHECK(mvmoe_superclass_map_read(path, -1, &m) == MVMOE_ERR_INVALID, "K = -1");
    CHECK(mvmoe_superclass_map_read(NULL, 0, &m) == MVMOE_ERR_INVALID, "NULL path");
}

static void cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
}

int main(void) {
    test_planted_small();
    test_planted_shuffled();
    test_balance_random();
    test_quality();
    test_degenerate_graphs();
    test_edge_cases();
    test_determinism();
    test_summary_json();
    if (!mkdtemp(tmpdir)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        TEST_MAIN_END("test_superclass");
    }
    test_map_round_trip();
    test_map_hostile();
    test_map_read();
    cleanup();
    TEST_MAIN_END("test_superclass");
}
