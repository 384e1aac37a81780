#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The message (what, where in the input, what to do) and, apart from it, the trail of source
 * locations that set it: users read the first; `mvmoe --verbose` and bug reports the second. */
static _Thread_local char last_error[2048];
static _Thread_local char last_where[512];

const char *mvmoe_status_name(mvmoe_status s) {
    switch (s) {
    case MVMOE_OK: return "ok";
    case MVMOE_ERR_IO: return "I/O error";
    case MVMOE_ERR_FORMAT: return "malformed input";
    case MVMOE_ERR_NOMEM: return "out of memory";
    case MVMOE_ERR_INVALID: return "invalid argument";
    case MVMOE_ERR_UNSUPPORTED: return "unsupported";
    case MVMOE_ERR_NUMERIC: return "numerical error";
    case MVMOE_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

const char *mvmoe_last_error(void) { return last_error; }

const char *mvmoe_last_error_where(void) { return last_where; }

mvmoe_status mvmoe_error_set(mvmoe_status code, const char *file, int line, const char *fmt, ...) {
    char msg[sizeof last_error], where[sizeof last_where];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    /* A message that wraps the previous one (a caller adding context) continues its trail. */
    int wraps = last_error[0] && strstr(msg, last_error) != NULL;
    /* innermost first ("raised at A < wrapped at B"); outer ones beyond the buffer are dropped */
    snprintf(where, sizeof where, "%.400s%s%.64s:%d", wraps ? last_where : "", wraps ? " < " : "",
             base ? base + 1 : file, line);
    memcpy(last_error, msg, sizeof last_error);
    memcpy(last_where, where, sizeof last_where);
    return code;
}

void *mvmoe_calloc_checked(size_t count, size_t size, const char *what, const char *file, int line) {
    size_t bytes;
    if (mvmoe_mul_size(count, size, &bytes) != 0) {
        mvmoe_error_set(MVMOE_ERR_NOMEM, file, line, "%s: size overflow (%zu x %zu bytes)", what, count, size);
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        mvmoe_error_set(MVMOE_ERR_NOMEM, file, line,
                        "%s: cannot allocate %zu bytes; use a smaller model or batch", what, bytes);
    }
    return p;
}

void *mvmoe_aligned_alloc_checked(size_t bytes, const char *what, const char *file, int line) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < bytes) rounded = SIZE_MAX; /* overflow: let aligned_alloc fail */
    void *p = rounded == SIZE_MAX ? NULL : aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        mvmoe_error_set(MVMOE_ERR_NOMEM, file, line,
                        "%s: cannot allocate %zu bytes; use a smaller model or batch", what, bytes);
        return NULL;
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}
