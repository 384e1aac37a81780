/* Internal error plumbing: every failure records one message (what, where, what to do) in a
 * thread-local buffer and returns an mvmoe_status; only the CLI turns that into an exit code. */
#ifndef MVMOE_CORE_STATUS_H
#define MVMOE_CORE_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include "mvmoe.h"

/* Records the message (printf-style) and, apart from it, the C source location (continuing the
 * previous trail when the message wraps the previous one), and returns `code`. */
mvmoe_status mvmoe_error_set(mvmoe_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Return from the current function with an error. */
#define MVMOE_FAIL(code, ...) return mvmoe_error_set((code), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failing status unchanged (the message is already set). */
#define MVMOE_TRY(expr)                   \
    do {                                  \
        mvmoe_status try_s_ = (expr);     \
        if (try_s_ != MVMOE_OK) return try_s_; \
    } while (0)

/* Checked, zeroed, overflow-safe allocation: *ptr = calloc(count, sizeof **ptr). */
void *mvmoe_calloc_checked(size_t count, size_t size, const char *what, const char *file, int line);
#define MVMOE_ALLOC(ptr, count, what)                                                          \
    do {                                                                                       \
        (ptr) = mvmoe_calloc_checked((size_t)(count), sizeof *(ptr), (what), __FILE__, __LINE__); \
        if (!(ptr)) return MVMOE_ERR_NOMEM;                                                    \
    } while (0)

/* 64-byte aligned, zeroed, checked; free with free(). Used for arenas (SIMD-friendly). */
void *mvmoe_aligned_alloc_checked(size_t bytes, const char *what, const char *file, int line);
#define MVMOE_ALLOC_ALIGNED(ptr, count, what)                                                 \
    do {                                                                                      \
        if ((size_t)(count) > SIZE_MAX / sizeof *(ptr)) {                                      \
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "%s: size overflow (%zu elements)", (what), (size_t)(count)); \
        }                                                                                     \
        (ptr) = mvmoe_aligned_alloc_checked((size_t)(count) * sizeof *(ptr), (what), __FILE__, __LINE__); \
        if (!(ptr)) return MVMOE_ERR_NOMEM;                                                   \
    } while (0)

/* a*b without overflow: returns 0 and sets *out, or -1 on overflow. */
static inline int mvmoe_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

#endif
