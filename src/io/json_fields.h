/* Reading JSON files that other runs wrote (eval results, super-class maps): the file as one
 * JSON object, and typed fields whose errors name the file and the dotted field. Files from
 * older versions lack fields, so an absent or null field reads as "unknown" (NaN, -1, NULL);
 * a present field of the wrong type or out of range is an error. */
#ifndef MVMOE_IO_JSON_FIELDS_H
#define MVMOE_IO_JSON_FIELDS_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "mvmoe.h"

/* Where messages say a field is: file, what the file is, and the prefix of dotted field names
 * ("moe." for "moe.expert_load"). */
typedef struct mvmoe_json_where {
    const char *path, *what, *prefix;
} mvmoe_json_where;

/* The file at `path` (at most max_bytes) parsed as exactly one JSON object; errors give the
 * byte offset and line. Free *out with cJSON_Delete. */
mvmoe_status mvmoe_json_load_object(const char *path, const char *what, size_t max_bytes, cJSON **out);
/* The same for a file's text [len] that the caller has read (to look at it first): exactly one
 * JSON object, nothing but blanks after it; errors name `path`. */
mvmoe_status mvmoe_json_parse_object(const char *path, const char *what, const char *text, size_t len, cJSON **out);

/* MVMOE_ERR_FORMAT: field `key` must be `must`. */
mvmoe_status mvmoe_json_bad(const mvmoe_json_where *w, const char *key, const char *must);
/* The value of `key`, or NULL when it is absent or null. */
const cJSON *mvmoe_json_field(const cJSON *o, const char *key);
int mvmoe_json_is_int_in(const cJSON *v, double lo, double hi);

/* Absent/null: NaN. */
mvmoe_status mvmoe_json_get_num(const mvmoe_json_where *w, const cJSON *o, const char *key, double lo,
                                double hi, const char *must, double *out);
/* Absent/null: -1. */
mvmoe_status mvmoe_json_get_int(const mvmoe_json_where *w, const cJSON *o, const char *key, int lo, int hi,
                                int *out);
/* Absent/null: NULL; else a copy to free(). */
mvmoe_status mvmoe_json_get_str(const mvmoe_json_where *w, const cJSON *o, const char *key, char **out);
/* An array field of *n entries (or, when *n is 0, of 1 to max entries, which sets *n; a
 * length that differs from *n names n_source as what said otherwise); NULL when absent. */
mvmoe_status mvmoe_json_get_array(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n,
                                  int max, const char *n_source, const cJSON **out);
/* Numbers in [lo, hi] (null entries as NaN when allow_null); *out [*n] to free(), or NULL. */
mvmoe_status mvmoe_json_get_nums(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n,
                                 int max, const char *n_source, double lo, double hi, int allow_null,
                                 double **out);
/* The n entries of array a: non-negative integer counts (up to 2^53, exact in a double). */
mvmoe_status mvmoe_json_get_counts(const mvmoe_json_where *w, const cJSON *a, const char *key, int n,
                                   int64_t *out);
mvmoe_status mvmoe_json_get_count_array(const mvmoe_json_where *w, const cJSON *o, const char *key,
                                        int *n, int max, const char *n_source, int64_t **out);
/* Strings; *out [*n] of copies (free with mvmoe_json_free_strings), or NULL. */
mvmoe_status mvmoe_json_get_strings(const mvmoe_json_where *w, const cJSON *o, const char *key, int *n,
                                    int max, const char *n_source, char ***out);
void mvmoe_json_free_strings(char **s, int n);
/* A class -> super-class map: *K integers in [0, max_index]; *out [*K] to free(), or NULL. */
mvmoe_status mvmoe_json_get_map(const mvmoe_json_where *w, const cJSON *o, const char *key, int *K,
                                int max_classes, int max_index, const char *K_source, int **out);

#endif
