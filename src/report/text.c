/* A growable text buffer for building the report page, with HTML/XML escaping. Everything the
 * page shows from an input file (class names, run names, paths) goes through the escaper:
 * those strings come from user files and must not be able to inject markup. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "report/report.h"

static int reserve(mvmoe_rtext *t, size_t more) {
    if (t->oom) return 0;
    if (more > MVMOE_RTEXT_MAX - t->len - 1 || t->len + more + 1 > MVMOE_RTEXT_MAX) {
        t->oom = 1;
        return 0;
    }
    size_t need = t->len + more + 1;
    if (need <= t->cap) return 1;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < need) cap = cap > MVMOE_RTEXT_MAX / 2 ? MVMOE_RTEXT_MAX : cap * 2;
    char *p = realloc(t->p, cap);
    if (!p) {
        t->oom = 1;
        return 0;
    }
    t->p = p;
    t->cap = cap;
    return 1;
}

static void put_n(mvmoe_rtext *t, const char *s, size_t n) {
    if (!reserve(t, n)) return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

void mvmoe_rtext_puts(mvmoe_rtext *t, const char *s) {
    if (s) put_n(t, s, strlen(s));
}

void mvmoe_rtext_printf(mvmoe_rtext *t, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        put_n(t, small, (size_t)n);
        return;
    }
    if (!reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* Escapes one byte; returns the replacement or NULL when the byte stays as it is. */
static const char *escape_byte(unsigned char c) {
    switch (c) {
    case '&': return "&amp;";
    case '<': return "&lt;";
    case '>': return "&gt;";
    case '"': return "&quot;";
    case '\'': return "&#39;";
    case '\t':
    case '\n':
    case '\r': return " ";
    default: return c < 0x20 || c == 0x7f ? "?" : NULL;
    }
}

/* Escapes s[0..n) in runs, so plain text is copied in one piece. */
static void escape_n(mvmoe_rtext *t, const char *s, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = escape_byte((unsigned char)s[i]);
        if (!rep) continue;
        put_n(t, s + start, i - start);
        mvmoe_rtext_puts(t, rep);
        start = i + 1;
    }
    put_n(t, s + start, n - start);
}

void mvmoe_rtext_escape(mvmoe_rtext *t, const char *s) {
    if (s) escape_n(t, s, strlen(s));
}

void mvmoe_rtext_escape_trunc(mvmoe_rtext *t, const char *s, int max_chars) {
    if (!s) return;
    size_t i = 0;
    int chars = 0;
    /* Counts UTF-8 lead bytes, so a cut never falls inside a multi-byte character. */
    while (s[i]) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max_chars) break;
            chars++;
        }
        i++;
    }
    escape_n(t, s, i);
    if (s[i]) mvmoe_rtext_puts(t, "\xE2\x80\xA6");
}

mvmoe_status mvmoe_rtext_status(const mvmoe_rtext *t, const char *what) {
    if (t->oom)
        MVMOE_FAIL(MVMOE_ERR_NOMEM,
                   "cannot build %s: out of memory or larger than %zu MiB; report fewer runs or classes",
                   what, MVMOE_RTEXT_MAX >> 20);
    return MVMOE_OK;
}

void mvmoe_rtext_free(mvmoe_rtext *t) {
    free(t->p);
    memset(t, 0, sizeof *t);
}
