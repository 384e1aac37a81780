/* What `mvmoe superclasses` reports about a partition (paper Sec. 3.2): how much of the
 * confusion stays inside the super-classes, and the JSON object that --json prints (the map,
 * those counts, and the confusion matrix in `mvmoe eval --json` form, so that the output
 * works as --confusion). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "mvmoe.h"

mvmoe_superclass_stats mvmoe_superclass_confusion_stats(const int64_t *confusion, int K,
                                                        const int *superclass_of, int E, int *sizes) {
    mvmoe_superclass_stats st = {0, 0, 0};
    for (int g = 0; sizes && g < E; g++) sizes[g] = 0;
    for (int i = 0; i < K; i++) {
        if (sizes) sizes[superclass_of[i]]++;
        for (int j = 0; j < K; j++) {
            int64_t v = confusion[(size_t)i * (size_t)K + (size_t)j];
            if (i == j) st.correct += v;
            else if (superclass_of[i] == superclass_of[j]) st.within += v;
            else st.across += v;
        }
    }
    return st;
}

/* Class k's name, or its index when it has none. */
static const char *name_of(const mvmoe_superclass_summary *s, int k, char *buf, size_t cap) {
    if (s->class_names && s->class_names[k]) return s->class_names[k];
    snprintf(buf, cap, "%d", k);
    return buf;
}

/* The object; 0 when cJSON ran out of memory (every add is checked through `ok`). */
static int build(cJSON *o, const mvmoe_superclass_summary *s, const mvmoe_superclass_stats *st, const int *size) {
    int ok = 1, K = s->K;
    ok &= cJSON_AddStringToObject(o, "out", s->out) != NULL;
    ok &= cJSON_AddStringToObject(o, "source", s->source) != NULL;
    ok &= cJSON_AddStringToObject(o, "method", s->method) != NULL;
    ok &= cJSON_AddNumberToObject(o, "seed", (double)s->seed) != NULL;
    ok &= cJSON_AddNumberToObject(o, "num_classes", K) != NULL;
    ok &= cJSON_AddNumberToObject(o, "experts", s->E) != NULL;
    ok &= (s->images > 0 ? cJSON_AddNumberToObject(o, "images", s->images) : cJSON_AddNullToObject(o, "images")) != NULL;
    ok &= (s->top1 >= 0 ? cJSON_AddNumberToObject(o, "top1", s->top1) : cJSON_AddNullToObject(o, "top1")) != NULL;
    ok &= cJSON_AddNumberToObject(o, "correct", (double)st->correct) != NULL;
    ok &= cJSON_AddNumberToObject(o, "confusion_within", (double)st->within) != NULL;
    ok &= cJSON_AddNumberToObject(o, "confusion_across", (double)st->across) != NULL;
    int64_t errs = st->within + st->across;
    ok &= (errs > 0 ? cJSON_AddNumberToObject(o, "within_fraction", (double)st->within / (double)errs)
                    : cJSON_AddNullToObject(o, "within_fraction")) != NULL;
    cJSON *sc = cJSON_AddArrayToObject(o, "superclass_of");
    cJSON *sizes = cJSON_AddArrayToObject(o, "sizes");
    cJSON *groups = cJSON_AddArrayToObject(o, "groups");
    ok &= sc && sizes && groups;
    for (int k = 0; ok && k < K; k++) ok &= cJSON_AddItemToArray(sc, cJSON_CreateNumber(s->superclass_of[k]));
    for (int g = 0; ok && g < s->E; g++) {
        ok &= cJSON_AddItemToArray(sizes, cJSON_CreateNumber(size[g]));
        cJSON *members = cJSON_CreateArray();
        ok &= cJSON_AddItemToArray(groups, members);
        for (int k = 0; ok && k < K; k++) {
            char buf[16];
            if (s->superclass_of[k] == g) ok &= cJSON_AddItemToArray(members, cJSON_CreateString(name_of(s, k, buf, sizeof buf)));
        }
    }
    /* The matrix itself too, in 'mvmoe eval --json' form: this output works as --confusion. */
    cJSON *names = cJSON_AddArrayToObject(o, "class_names");
    cJSON *conf = cJSON_AddArrayToObject(o, "confusion");
    ok &= names && conf;
    for (int i = 0; ok && i < K; i++) {
        char buf[16];
        ok &= cJSON_AddItemToArray(names, cJSON_CreateString(name_of(s, i, buf, sizeof buf)));
        cJSON *row = cJSON_CreateArray();
        ok &= cJSON_AddItemToArray(conf, row);
        for (int j = 0; ok && j < K; j++)
            ok &= cJSON_AddItemToArray(row, cJSON_CreateNumber((double)s->confusion[(size_t)i * (size_t)K + (size_t)j]));
    }
    return ok;
}

mvmoe_status mvmoe_superclass_summary_json(const mvmoe_superclass_summary *s, char **json) {
    if (json) *json = NULL;
    if (!s || !json || !s->out || !s->source || !s->method || !s->confusion || !s->superclass_of)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class summary: a required input is NULL");
    if (s->K < 1 || s->E < 1 || s->E > s->K)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class summary: %d super-classes of %d classes", s->E, s->K);
    for (int k = 0; k < s->K; k++)
        if (s->superclass_of[k] < 0 || s->superclass_of[k] >= s->E)
            MVMOE_FAIL(MVMOE_ERR_INVALID, "super-class summary: class %d is in super-class %d, not in 0..%d", k,
                       s->superclass_of[k], s->E - 1);
    int *size;
    MVMOE_ALLOC(size, s->E, "super-class sizes");
    mvmoe_superclass_stats st = mvmoe_superclass_confusion_stats(s->confusion, s->K, s->superclass_of, s->E, size);
    cJSON *o = cJSON_CreateObject();
    int ok = o && build(o, s, &st, size);
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(size);
    if (!text)
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "out of memory building the JSON summary of %d classes in %d super-classes", s->K,
                   s->E);
    *json = text;
    return MVMOE_OK;
}
