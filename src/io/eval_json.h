/* Eval-result JSON, the one form an evaluation takes on disk: written by
 * mvmoe_eval_json_format (`mvmoe eval --json`), read here by every user (`mvmoe report`,
 * `mvmoe superclasses --confusion` through mvmoe_eval_confusion_load). */
#ifndef MVMOE_IO_EVAL_JSON_H
#define MVMOE_IO_EVAL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mvmoe.h"

/* Larger files are refused: a K x K confusion matrix of counts is ~8 bytes a cell (K = 1000
 * is ~8 MB, K = 8000 ~500 MB). */
#define MVMOE_EVAL_JSON_MAX_BYTES ((size_t)512 << 20)
#define MVMOE_EVAL_JSON_MAX_CLASSES 100000
#define MVMOE_EVAL_JSON_MAX_EXPERTS 4096

/* One eval JSON file. Absent or null fields read as NaN / -1 / NULL; present fields of the
 * wrong type or out of range are errors naming the file and field. */
typedef struct mvmoe_eval_json {
    const char *name, *path; /* borrowed: the caller's name for the run, and the file */
    char *model, *data, *split;
    double n;               /* images, or -1 */
    int K;                  /* classes, or 0 when nothing tells */
    double top1, top5, loss;
    char **class_names;     /* [K] or NULL */
    double *per_class;      /* [K] (NaN entries: null) or NULL */
    int64_t *confusion;     /* [K*K] or NULL */
    /* "config" */
    int has_config;
    char routing[32];       /* "" when unknown */
    int img_size, in_chans, patch, dim, depth, heads, mlp_dim, experts, top_k, moe_layers; /* -1: unknown */
    int *superclass_of;     /* [K] or NULL */
    double params, active_params, flops; /* NaN: unknown */
    /* "moe" */
    int moe_experts;        /* 0: no "moe" object */
    double router_acc;      /* NaN: null */
    double routed_acc, misrouted_acc, misrouted; /* NaN: null or absent (older files) */
    int64_t *expert_load, *expert_images; /* [moe_experts] or NULL */
    double *expert_acc;     /* [moe_experts] (NaN entries: null) or NULL */
} mvmoe_eval_json;

mvmoe_status mvmoe_eval_json_load(mvmoe_eval_json *e, const char *name, const char *path);
void mvmoe_eval_json_free(mvmoe_eval_json *e);
int mvmoe_eval_json_is_dense(const mvmoe_eval_json *e);

#endif
