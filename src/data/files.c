/* Path and small-text-file helpers for the dataset readers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/status.h"
#include "data/loaders.h"

/* A names file larger than this is not a list of class names. */
#define NAMES_MAX_BYTES (16u << 20)

char *mvmoe_data_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + (size_t)slash + b + 1);
    if (!p) {
        mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__, "cannot allocate a path for %s/%s",
                        dir, name);
        return NULL;
    }
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

int mvmoe_data_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int mvmoe_data_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mvmoe_status mvmoe_data_read_names(const char *path, char ***names, int *n) {
    char *text = NULL;
    size_t len = 0;
    *names = NULL;
    *n = 0;
    MVMOE_TRY(mvmoe_file_read(path, "class-name file", NAMES_MAX_BYTES, &text, &len));
    if (memchr(text, '\0', len)) {
        free(text);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s contains NUL bytes; expected a text file with one class "
                   "name per line", path);
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    char **out = calloc(lines, sizeof *out);
    if (!out) {
        free(text);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zu class names for %s", lines, path);
    }
    int count = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) l--;
        if (l == 0) continue; /* CIFAR's batches.meta.txt ends with blank lines */
        out[count] = strndup(line, l);
        if (!out[count]) {
            mvmoe_data_names_free(out, count);
            free(text);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate a class name read from %s", path);
        }
        count++;
    }
    free(text);
    if (count == 0) {
        free(out);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s holds no class names; write one name per line or delete "
                   "the file to use the default names", path);
    }
    *names = out;
    *n = count;
    return MVMOE_OK;
}
