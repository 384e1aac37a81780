/* Eval-result JSON (eval_json.h): the writer behind `mvmoe eval --json` and the one reader of
 * what it writes. */
#include "io/eval_json.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/json_fields.h"

/* ---------------------------------------------------------------- writing */

static int64_t row_total(const mvmoe_eval_result *r, int k) {
    int64_t s = 0;
    for (int j = 0; j < r->num_classes; j++) s += r->confusion[(size_t)k * (size_t)r->num_classes + (size_t)j];
    return s;
}

/* cJSON returns NULL when out of memory; every add is checked through `ok`. */
mvmoe_status mvmoe_eval_json_format(const mvmoe_eval_result *r, const mvmoe_config *c,
                                    const mvmoe_eval_meta *meta, char **json) {
    int K = r->num_classes, ok = 1;
    *json = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) goto oom;
    ok &= cJSON_AddStringToObject(o, "model", meta->model) != NULL;
    ok &= cJSON_AddStringToObject(o, "data", meta->data) != NULL;
    ok &= cJSON_AddStringToObject(o, "split", meta->split) != NULL;
    ok &= cJSON_AddNumberToObject(o, "n", r->n) != NULL;
    ok &= cJSON_AddNumberToObject(o, "num_classes", K) != NULL;
    ok &= cJSON_AddNumberToObject(o, "top1", r->top1) != NULL;
    ok &= cJSON_AddNumberToObject(o, "top5", r->top5) != NULL;
    ok &= cJSON_AddNumberToObject(o, "loss", r->loss) != NULL;
    cJSON *names = cJSON_AddArrayToObject(o, "class_names");
    cJSON *per = cJSON_AddArrayToObject(o, "per_class");
    cJSON *count = cJSON_AddArrayToObject(o, "class_count");
    cJSON *conf = cJSON_AddArrayToObject(o, "confusion");
    ok &= names && per && count && conf;
    for (int k = 0; ok && k < K; k++) {
        const char *nm = meta->class_names ? meta->class_names[k] : NULL;
        char idx[16];
        snprintf(idx, sizeof idx, "%d", k);
        int64_t n = row_total(r, k);
        ok &= cJSON_AddItemToArray(names, cJSON_CreateString(nm ? nm : idx));
        ok &= cJSON_AddItemToArray(per, n > 0 ? cJSON_CreateNumber(r->per_class[k]) : cJSON_CreateNull());
        ok &= cJSON_AddItemToArray(count, cJSON_CreateNumber((double)n));
        cJSON *row = cJSON_CreateArray();
        ok &= cJSON_AddItemToArray(conf, row);
        for (int j = 0; ok && j < K; j++)
            ok &= cJSON_AddItemToArray(row, cJSON_CreateNumber((double)r->confusion[(size_t)k * (size_t)K + (size_t)j]));
    }
    ok &= (meta->logits ? cJSON_AddStringToObject(o, "logits", meta->logits) : cJSON_AddNullToObject(o, "logits")) != NULL;
    /* the model's shape and cost, so one file describes a run (mvmoe report reads these) */
    char *cfg_text = NULL;
    if (ok && mvmoe_config_to_json(c, &cfg_text) == MVMOE_OK) {
        cJSON *cfg = cJSON_Parse(cfg_text);
        free(cfg_text);
        ok &= cfg && cJSON_AddItemToObject(o, "config", cfg);
    } else {
        ok = 0;
    }
    ok &= cJSON_AddNumberToObject(o, "params", (double)mvmoe_config_num_params(c)) != NULL;
    ok &= cJSON_AddNumberToObject(o, "active_params", (double)mvmoe_config_active_params(c)) != NULL;
    /* the FLOPs actually spent: with adaptive k, fewer than the config's top_k */
    ok &= cJSON_AddNumberToObject(o, "flops", mvmoe_eval_flops(c, r)) != NULL;
    if (ok && r->moe.experts > 0) {
        const mvmoe_moe_eval *me = &r->moe;
        cJSON *moe = cJSON_AddObjectToObject(o, "moe");
        ok &= moe != NULL;
        ok &= ok && cJSON_AddNumberToObject(moe, "experts", me->experts) != NULL;
        ok &= ok && cJSON_AddNumberToObject(moe, "experts_per_item", me->experts_per_item) != NULL;
        ok &= ok && cJSON_AddNumberToObject(moe, "adaptive_k", meta->adaptive_k) != NULL;
        ok &= ok && (me->router_acc >= 0 ? cJSON_AddNumberToObject(moe, "router_acc", me->router_acc)
                                         : cJSON_AddNullToObject(moe, "router_acc")) != NULL;
        if (me->router_acc >= 0) {
            ok &= ok && cJSON_AddNumberToObject(moe, "misrouted", (double)me->misrouted) != NULL;
            ok &= ok && (me->routed_acc >= 0 ? cJSON_AddNumberToObject(moe, "routed_acc", me->routed_acc)
                                             : cJSON_AddNullToObject(moe, "routed_acc")) != NULL;
            ok &= ok && (me->misrouted_acc >= 0 ? cJSON_AddNumberToObject(moe, "misrouted_acc", me->misrouted_acc)
                                                : cJSON_AddNullToObject(moe, "misrouted_acc")) != NULL;
        }
        cJSON *load = ok ? cJSON_AddArrayToObject(moe, "expert_load") : NULL;
        cJSON *imgs = ok ? cJSON_AddArrayToObject(moe, "expert_images") : NULL;
        cJSON *acc = ok ? cJSON_AddArrayToObject(moe, "expert_acc") : NULL;
        ok &= load && imgs && acc;
        for (int x = 0; ok && x < me->experts; x++) {
            ok &= cJSON_AddItemToArray(load, cJSON_CreateNumber((double)me->expert_load[x]));
            ok &= cJSON_AddItemToArray(imgs, cJSON_CreateNumber((double)me->expert_images[x]));
            ok &= cJSON_AddItemToArray(acc, me->expert_acc[x] >= 0 ? cJSON_CreateNumber(me->expert_acc[x])
                                                                   : cJSON_CreateNull());
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) goto oom;
    *json = text;
    return MVMOE_OK;
oom:
    MVMOE_FAIL(MVMOE_ERR_NOMEM, "out of memory building the eval JSON of %d classes", K);
}

/* ---------------------------------------------------------------- reading */

void mvmoe_eval_json_free(mvmoe_eval_json *e) {
    free(e->model);
    free(e->data);
    free(e->split);
    mvmoe_json_free_strings(e->class_names, e->K);
    free(e->per_class);
    free(e->confusion);
    free(e->superclass_of);
    free(e->expert_load);
    free(e->expert_images);
    free(e->expert_acc);
    memset(e, 0, sizeof *e);
}

int mvmoe_eval_json_is_dense(const mvmoe_eval_json *e) { return strcmp(e->routing, "dense") == 0; }

static mvmoe_status parse_confusion(const mvmoe_json_where *w, const cJSON *o, int *K, const char *K_source,
                                    int64_t **out) {
    const cJSON *a;
    *out = NULL;
    MVMOE_TRY(mvmoe_json_get_array(w, o, "confusion", K, MVMOE_EVAL_JSON_MAX_CLASSES, K_source, &a));
    if (!a) return MVMOE_OK;
    int64_t *c;
    MVMOE_ALLOC(c, (size_t)*K * (size_t)*K, "eval JSON: confusion matrix");
    int i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != *K ||
            mvmoe_json_get_counts(w, row, "confusion", *K, c + (size_t)i * (size_t)*K) != MVMOE_OK) {
            free(c);
            char must[128];
            snprintf(must, sizeof must, "%d rows of %d non-negative integers (row %d is not)", *K, *K, i);
            return mvmoe_json_bad(w, "confusion", must);
        }
        i++;
    }
    *out = c;
    return MVMOE_OK;
}

static const char *const ROUTINGS[] = {"dense", "image-superclass", "image-learned", "token-learned"};

static mvmoe_status parse_config(mvmoe_eval_json *e, const cJSON *cfg, const char *K_source) {
    mvmoe_json_where w = {e->path, "eval JSON", "config."};
    const cJSON *r = mvmoe_json_field(cfg, "routing");
    if (r) {
        int ok = 0;
        for (size_t i = 0; cJSON_IsString(r) && i < sizeof ROUTINGS / sizeof ROUTINGS[0]; i++)
            ok |= strcmp(r->valuestring, ROUTINGS[i]) == 0;
        if (!ok) return mvmoe_json_bad(&w, "routing", "one of dense, image-superclass, image-learned, token-learned");
        snprintf(e->routing, sizeof e->routing, "%s", r->valuestring);
    }
    const int big = 1 << 30;
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "img_size", 1, big, &e->img_size));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "in_chans", 1, big, &e->in_chans));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "patch", 1, big, &e->patch));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "dim", 1, big, &e->dim));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "depth", 0, big, &e->depth));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "heads", 1, big, &e->heads));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "mlp_dim", 1, big, &e->mlp_dim));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "experts", 0, MVMOE_EVAL_JSON_MAX_EXPERTS, &e->experts));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "top_k", 0, MVMOE_EVAL_JSON_MAX_EXPERTS, &e->top_k));
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "moe_layers", 0, big, &e->moe_layers));
    int nc;
    MVMOE_TRY(mvmoe_json_get_int(&w, cfg, "num_classes", 1, MVMOE_EVAL_JSON_MAX_CLASSES, &nc));
    if (nc > 0 && e->K > 0 && nc != e->K)
        return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                               "eval JSON '%s': field \"config.num_classes\" is %d, but %s says %d; regenerate the file",
                               e->path, nc, K_source, e->K);
    if (nc > 0) e->K = nc;
    if (!e->class_names) MVMOE_TRY(mvmoe_json_get_strings(&w, cfg, "class_names", &e->K, MVMOE_EVAL_JSON_MAX_CLASSES, K_source, &e->class_names));
    MVMOE_TRY(mvmoe_json_get_map(&w, cfg, "superclass_of", &e->K, MVMOE_EVAL_JSON_MAX_CLASSES,
                                 MVMOE_EVAL_JSON_MAX_EXPERTS - 1, K_source, &e->superclass_of));
    e->has_config = 1;
    return MVMOE_OK;
}

static mvmoe_status parse_moe(mvmoe_eval_json *e, const cJSON *moe) {
    mvmoe_json_where w = {e->path, "eval JSON", "moe."};
    int E;
    MVMOE_TRY(mvmoe_json_get_int(&w, moe, "experts", 0, MVMOE_EVAL_JSON_MAX_EXPERTS, &E));
    if (E < 0) E = e->experts > 0 ? e->experts : 0; /* else the arrays' length tells */
    const char *src = "\"moe.experts\"";
    MVMOE_TRY(mvmoe_json_get_num(&w, moe, "router_acc", 0, 1, "a number from 0 to 1 (or null)", &e->router_acc));
    MVMOE_TRY(mvmoe_json_get_num(&w, moe, "routed_acc", 0, 1, "a number from 0 to 1 (or null)", &e->routed_acc));
    MVMOE_TRY(mvmoe_json_get_num(&w, moe, "misrouted_acc", 0, 1, "a number from 0 to 1 (or null)", &e->misrouted_acc));
    MVMOE_TRY(mvmoe_json_get_num(&w, moe, "misrouted", 0, 9.007199254740992e15, "a count (or null)", &e->misrouted));
    MVMOE_TRY(mvmoe_json_get_count_array(&w, moe, "expert_load", &E, MVMOE_EVAL_JSON_MAX_EXPERTS, src, &e->expert_load));
    MVMOE_TRY(mvmoe_json_get_count_array(&w, moe, "expert_images", &E, MVMOE_EVAL_JSON_MAX_EXPERTS, src, &e->expert_images));
    MVMOE_TRY(mvmoe_json_get_nums(&w, moe, "expert_acc", &E, MVMOE_EVAL_JSON_MAX_EXPERTS, src, 0, 1, 1, &e->expert_acc));
    e->moe_experts = E;
    return MVMOE_OK;
}

static mvmoe_status parse_eval(mvmoe_eval_json *e, const cJSON *o) {
    mvmoe_json_where w = {e->path, "eval JSON", ""};
    const char *K_source = "\"num_classes\"";
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "top1", 0, 1, "a number from 0 to 1", &e->top1));
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "top5", 0, 1, "a number from 0 to 1", &e->top5));
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "loss", 0, INFINITY, "a non-negative number", &e->loss));
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "n", 0, 9007199254740992.0, "a non-negative number", &e->n));
    if (isnan(e->n)) e->n = -1;
    MVMOE_TRY(mvmoe_json_get_str(&w, o, "model", &e->model));
    MVMOE_TRY(mvmoe_json_get_str(&w, o, "data", &e->data));
    MVMOE_TRY(mvmoe_json_get_str(&w, o, "split", &e->split));
    MVMOE_TRY(mvmoe_json_get_int(&w, o, "num_classes", 1, MVMOE_EVAL_JSON_MAX_CLASSES, &e->K));
    if (e->K < 0) {
        e->K = 0;
        K_source = "another field"; /* the first array sets K */
    }
    /* the matrix first: when nothing else gives K, its rows do */
    MVMOE_TRY(parse_confusion(&w, o, &e->K, K_source, &e->confusion));
    MVMOE_TRY(mvmoe_json_get_strings(&w, o, "class_names", &e->K, MVMOE_EVAL_JSON_MAX_CLASSES, K_source, &e->class_names));
    MVMOE_TRY(mvmoe_json_get_nums(&w, o, "per_class", &e->K, MVMOE_EVAL_JSON_MAX_CLASSES, K_source, 0, 1, 1, &e->per_class));
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "params", 0, INFINITY, "a non-negative number", &e->params));
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "active_params", 0, INFINITY, "a non-negative number", &e->active_params));
    MVMOE_TRY(mvmoe_json_get_num(&w, o, "flops", 0, INFINITY, "a non-negative number", &e->flops));
    const cJSON *cfg = mvmoe_json_field(o, "config");
    if (cfg) {
        if (!cJSON_IsObject(cfg)) return mvmoe_json_bad(&w, "config", "an object (the checkpoint's config)");
        MVMOE_TRY(parse_config(e, cfg, K_source));
    }
    const cJSON *moe = mvmoe_json_field(o, "moe");
    if (moe) {
        if (!cJSON_IsObject(moe)) return mvmoe_json_bad(&w, "moe", "an object");
        MVMOE_TRY(parse_moe(e, moe));
    }
    return MVMOE_OK;
}

mvmoe_status mvmoe_eval_json_load(mvmoe_eval_json *e, const char *name, const char *path) {
    memset(e, 0, sizeof *e);
    e->name = name;
    e->path = path;
    e->n = -1;
    e->top1 = e->top5 = e->loss = e->router_acc = NAN;
    e->routed_acc = e->misrouted_acc = e->misrouted = NAN;
    e->params = e->active_params = e->flops = NAN;
    e->img_size = e->in_chans = e->patch = e->dim = e->depth = e->heads = e->mlp_dim = -1;
    e->experts = e->top_k = e->moe_layers = -1;
    cJSON *o;
    MVMOE_TRY(mvmoe_json_load_object(path, "eval JSON", MVMOE_EVAL_JSON_MAX_BYTES, &o));
    mvmoe_status s = parse_eval(e, o);
    cJSON_Delete(o);
    if (s != MVMOE_OK) mvmoe_eval_json_free(e);
    e->name = name;
    e->path = path;
    return s;
}

/* ---------------------------------------------------------------- the confusion matrix */

void mvmoe_eval_confusion_free(mvmoe_eval_confusion *c) {
    mvmoe_json_free_strings(c->class_names, c->K);
    free(c->confusion);
    memset(c, 0, sizeof *c);
}

mvmoe_status mvmoe_eval_confusion_load(const char *path, mvmoe_eval_confusion *out) {
    memset(out, 0, sizeof *out);
    mvmoe_eval_json e;
    MVMOE_TRY(mvmoe_eval_json_load(&e, NULL, path));
    if (!e.confusion) {
        mvmoe_eval_json_free(&e);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "eval JSON '%s' has no field \"confusion\"; give the output of 'mvmoe eval --json'",
                   path);
    }
    out->K = e.K;
    out->n = e.n >= 0 && e.n < 2147483647.0 ? (int)e.n : 0;
    out->top1 = isnan(e.top1) ? -1 : e.top1;
    out->confusion = e.confusion, e.confusion = NULL;       /* now owned by *out */
    out->class_names = e.class_names, e.class_names = NULL;
    mvmoe_eval_json_free(&e);
    return MVMOE_OK;
}
