/* Reader of the report's super-class map (what `mvmoe superclasses` writes); the eval JSON
 * files are read by io/eval_json.c. Files from older versions lack fields, so a field that is
 * absent or null just leaves its part of the report out; a field that is present with the
 * wrong type or an impossible value is an error that names the file and the field. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/json_fields.h"
#include "report/report.h"

/* ---------------------------------------------------------------- super-class map */

void mvmoe_report_map_free(mvmoe_report_map *m) {
    free(m->superclass_of);
    if (m->groups)
        for (int e = 0; e < m->E; e++) mvmoe_json_free_strings(m->groups[e], m->sizes ? m->sizes[e] : 0);
    free(m->groups);
    free(m->sizes);
    free(m->method);
    free(m->source);
    memset(m, 0, sizeof *m);
}

/* "groups": one array of class names per super-class, as long as its size. */
static mvmoe_status parse_groups(mvmoe_report_map *m, const mvmoe_json_where *w, const cJSON *o) {
    const cJSON *g;
    int E = m->E;
    MVMOE_TRY(mvmoe_json_get_array(w, o, "groups", &E, MVMOE_REPORT_MAX_EXPERTS, "\"experts\"", &g));
    if (!g) return MVMOE_OK;
    MVMOE_ALLOC(m->groups, m->E, "report: super-class groups");
    int e = 0;
    const cJSON *grp;
    cJSON_ArrayForEach(grp, g) {
        if (!cJSON_IsArray(grp) || cJSON_GetArraySize(grp) != m->sizes[e])
            return mvmoe_json_bad(w, "groups", "one array of class names per super-class, as many as its size");
        MVMOE_ALLOC(m->groups[e], m->sizes[e], "report: super-class group");
        int i = 0;
        const cJSON *nm;
        cJSON_ArrayForEach(nm, grp) {
            if (!cJSON_IsString(nm) || !nm->valuestring) return mvmoe_json_bad(w, "groups", "arrays of class names (strings)");
            if (!(m->groups[e][i++] = strdup(nm->valuestring)))
                MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot copy the class names of '%s'", w->path);
        }
        e++;
    }
    return MVMOE_OK;
}

static mvmoe_status parse_map(mvmoe_report_map *m, const cJSON *o) {
    mvmoe_json_where w = {m->path, "super-class map", ""};
    if (!mvmoe_json_field(o, "superclass_of"))
        return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                               "super-class map '%s' has no field \"superclass_of\"; give the file mvmoe superclasses writes",
                               m->path);
    MVMOE_TRY(mvmoe_json_get_map(&w, o, "superclass_of", &m->K, MVMOE_REPORT_MAX_CLASSES, MVMOE_REPORT_MAX_EXPERTS - 1, "",
                                 &m->superclass_of));
    int E, top = 0;
    MVMOE_TRY(mvmoe_json_get_int(&w, o, "experts", 1, MVMOE_REPORT_MAX_EXPERTS, &E));
    for (int k = 0; k < m->K; k++)
        if (m->superclass_of[k] >= top) top = m->superclass_of[k] + 1;
    if (E < 0) E = top;
    if (top > E)
        return mvmoe_json_bad(&w, "superclass_of", "an array of super-class indices below \"experts\"");
    m->E = E;
    MVMOE_ALLOC(m->sizes, E, "report: super-class sizes");
    for (int k = 0; k < m->K; k++) m->sizes[m->superclass_of[k]]++;
    for (int e = 0; e < E; e++)
        if (m->sizes[e] == 0)
            return mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                   "super-class map '%s': super-class %d has no class; every one of the %d needs at least one",
                                   m->path, e, E);
    double *sizes;
    int n = E;
    MVMOE_TRY(mvmoe_json_get_nums(&w, o, "sizes", &n, MVMOE_REPORT_MAX_EXPERTS, "\"experts\"", 1, MVMOE_REPORT_MAX_CLASSES, 0, &sizes));
    for (int e = 0; sizes && e < E; e++)
        if (sizes[e] != m->sizes[e]) {
            free(sizes);
            return mvmoe_json_bad(&w, "sizes", "the number of classes of each super-class in \"superclass_of\"");
        }
    free(sizes);
    MVMOE_TRY(parse_groups(m, &w, o));
    MVMOE_TRY(mvmoe_json_get_str(&w, o, "method", &m->method));
    MVMOE_TRY(mvmoe_json_get_str(&w, o, "source", &m->source));
    return MVMOE_OK;
}

mvmoe_status mvmoe_report_map_load(mvmoe_report_map *m, const char *path) {
    memset(m, 0, sizeof *m);
    m->path = path;
    cJSON *o;
    MVMOE_TRY(mvmoe_json_load_object(path, "super-class map", MVMOE_REPORT_MAP_MAX_BYTES, &o));
    mvmoe_status s = parse_map(m, o);
    cJSON_Delete(o);
    if (s != MVMOE_OK) mvmoe_report_map_free(m);
    m->path = path;
    return s;
}
