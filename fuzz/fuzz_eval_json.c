/* Fuzz target: eval-result JSON (`mvmoe eval --json`), read by `mvmoe report` through
 * mvmoe_eval_json_load and by `mvmoe superclasses --confusion` through
 * mvmoe_eval_confusion_load (src/io/eval_json.c).
 *
 * Input: the file. Invariants: an accepted file has sizes within the reader's caps and arrays
 * that match them (a confusion matrix of K x K non-negative counts); both readers agree on K
 * and on the matrix when both accept; everything they return is freed (leaks are failures). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/eval_json.h"

int mvmoe_fuzz_eval_json(const uint8_t *data, size_t size) {
    fz_dir();
    const char *path = fz_path("eval.json");
    fz_write(path, data, size);
    mvmoe_eval_json e;
    memset(&e, 0, sizeof e);
    int ok_full = mvmoe_eval_json_load(&e, "fuzz", path) == MVMOE_OK;
    if (ok_full) {
        FZ_ASSERT(e.K >= 0 && e.K <= MVMOE_EVAL_JSON_MAX_CLASSES, "K = %d", e.K);
        FZ_ASSERT(e.moe_experts >= 0 && e.moe_experts <= MVMOE_EVAL_JSON_MAX_EXPERTS, "experts = %d",
                  e.moe_experts);
        FZ_ASSERT(!e.confusion || e.K > 0, "a confusion matrix without classes");
        for (size_t i = 0; e.confusion && i < (size_t)e.K * e.K; i++)
            FZ_ASSERT(e.confusion[i] >= 0, "negative count %lld at %zu", (long long)e.confusion[i], i);
        FZ_ASSERT(!e.per_class || e.K > 0, "per-class accuracy without classes");
        FZ_ASSERT(!e.expert_load || e.moe_experts > 0, "expert loads without experts");
    }
    mvmoe_eval_confusion c;
    memset(&c, 0, sizeof c);
    if (mvmoe_eval_confusion_load(path, &c) == MVMOE_OK) {
        FZ_ASSERT(c.K >= 1 && c.K <= MVMOE_EVAL_JSON_MAX_CLASSES && c.confusion, "K = %d", c.K);
        for (size_t i = 0; i < (size_t)c.K * c.K; i++)
            FZ_ASSERT(c.confusion[i] >= 0, "negative count at %zu", i);
        if (ok_full && e.confusion) {
            FZ_ASSERT(e.K == c.K, "the two readers disagree on K: %d and %d", e.K, c.K);
            FZ_ASSERT(memcmp(e.confusion, c.confusion, sizeof(int64_t) * (size_t)c.K * c.K) == 0,
                      "the two readers disagree on the matrix");
        }
        mvmoe_eval_confusion_free(&c);
    }
    if (ok_full) mvmoe_eval_json_free(&e);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mvmoe_fuzz_eval_json(data, size);
}
#endif
