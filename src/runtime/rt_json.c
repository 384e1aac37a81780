/* The runtime's JSON reader (rt_json.h): recursive descent over a bounded text. */
#include "runtime/rt_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    rt_json *doc;
    size_t pos;
    char *err;
    size_t errlen;
} parser;

static int fail(parser *p, const char *what) {
    snprintf(p->err, p->errlen, "%s at byte %zu", what, p->pos);
    return -1;
}

static void skip_ws(parser *p) {
    const char *t = p->doc->text;
    while (p->pos < p->doc->size && (t[p->pos] == ' ' || t[p->pos] == '\t' || t[p->pos] == '\n' || t[p->pos] == '\r'))
        p->pos++;
}

static int new_node(parser *p, rt_jtype type) {
    rt_json *d = p->doc;
    if (d->n == d->cap) {
        if (d->cap > (1 << 28)) return fail(p, "too many JSON values");
        int cap = d->cap ? 2 * d->cap : 64;
        rt_jnode *nn = realloc(d->nodes, sizeof *nn * (size_t)cap);
        if (!nn) return fail(p, "out of memory for the JSON values");
        d->nodes = nn, d->cap = cap;
    }
    rt_jnode *x = &d->nodes[d->n];
    memset(x, 0, sizeof *x);
    x->type = type, x->child = -1, x->next = -1;
    return d->n++;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static int utf8_len(const unsigned char *s, size_t n) {
    int len = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (len == 2 && s[0] < 0xC2) return 0;                   /* overlong */
    if (len == 3 && s[0] == 0xE0 && s[1] < 0xA0) return 0;   /* overlong */
    if (len == 3 && s[0] == 0xED && s[1] >= 0xA0) return 0;  /* surrogate */
    if (len == 4 && (s[0] > 0xF4 || (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return len;
}

static int parse_string(parser *p) {
    const char *t = p->doc->text;
    const size_t n = p->doc->size;
    p->pos++; /* the opening quote */
    const size_t start = p->pos;
    while (p->pos < n && t[p->pos] != '"') {
        const unsigned char c = (unsigned char)t[p->pos];
        if (c < 0x20) return fail(p, "control character in a JSON string");
        if (c == '\\') {
            if (p->pos + 1 >= n) return fail(p, "unterminated JSON string");
            const char e = t[p->pos + 1];
            if (e == 'u') {
                if (p->pos + 6 > n) return fail(p, "truncated \\u escape");
                for (int i = 2; i < 6; i++)
                    if (hexval(t[p->pos + i]) < 0) return fail(p, "bad \\u escape");
                p->pos += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                p->pos += 2;
            } else {
                return fail(p, "bad escape in a JSON string");
            }
        } else {
            const int l = utf8_len((const unsigned char *)t + p->pos, n - p->pos);
            if (!l) return fail(p, "invalid UTF-8 in a JSON string");
            p->pos += (size_t)l;
        }
    }
    if (p->pos >= n) return fail(p, "unterminated JSON string");
    const int id = new_node(p, RT_J_STR);
    if (id < 0) return -1;
    p->doc->nodes[id].off = start, p->doc->nodes[id].len = p->pos - start;
    p->pos++;
    return id;
}

static int parse_number(parser *p) {
    const char *t = p->doc->text;
    const size_t n = p->doc->size, start = p->pos;
    size_t i = p->pos;
    if (i < n && t[i] == '-') i++;
    if (i < n && t[i] == '0') i++;
    else if (i < n && t[i] >= '1' && t[i] <= '9') while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    else return fail(p, "bad JSON number");
    if (i < n && t[i] == '.') {
        i++;
        if (!(i < n && t[i] >= '0' && t[i] <= '9')) return fail(p, "bad JSON number");
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        if (!(i < n && t[i] >= '0' && t[i] <= '9')) return fail(p, "bad JSON number");
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    }
    char buf[64];
    if (i - start >= sizeof buf) return fail(p, "JSON number too long");
    memcpy(buf, t + start, i - start);
    buf[i - start] = 0;
    const int id = new_node(p, RT_J_NUM);
    if (id < 0) return -1;
    p->doc->nodes[id].num = strtod(buf, NULL);
    p->pos = i;
    return id;
}

static int parse_value(parser *p, int depth);

/* Elements (or key/value members) of an array (object), linked as siblings. */
static int parse_container(parser *p, int depth, int object) {
    const int id = new_node(p, object ? RT_J_OBJ : RT_J_ARR);
    if (id < 0) return -1;
    if (depth >= RT_JSON_MAX_DEPTH) return fail(p, "JSON nested too deeply");
    const char close = object ? '}' : ']';
    p->pos++;
    skip_ws(p);
    int last = -1, count = 0;
    if (p->pos < p->doc->size && p->doc->text[p->pos] == close) {
        p->pos++;
        return id;
    }
    for (;;) {
        skip_ws(p);
        int first;
        if (object) {
            if (p->pos >= p->doc->size || p->doc->text[p->pos] != '"') return fail(p, "expected a JSON object key");
            const int key = parse_string(p);
            if (key < 0) return -1;
            skip_ws(p);
            if (p->pos >= p->doc->size || p->doc->text[p->pos] != ':') return fail(p, "expected ':' in a JSON object");
            p->pos++;
            const int val = parse_value(p, depth + 1);
            if (val < 0) return -1;
            p->doc->nodes[key].next = val;
            first = key;
            /* the member's value is the sibling of its key; the next member hangs off the value */
            if (last >= 0) p->doc->nodes[last].next = first;
            else p->doc->nodes[id].child = first;
            last = val;
        } else {
            const int val = parse_value(p, depth + 1);
            if (val < 0) return -1;
            if (last >= 0) p->doc->nodes[last].next = val;
            else p->doc->nodes[id].child = val;
            last = val;
        }
        count++;
        skip_ws(p);
        if (p->pos >= p->doc->size) return fail(p, "unterminated JSON container");
        const char c = p->doc->text[p->pos++];
        if (c == close) break;
        if (c != ',') return fail(p, "expected ',' in a JSON container");
    }
    p->doc->nodes[id].count = count;
    return id;
}

static int literal(parser *p, const char *lit, rt_jtype type, double v) {
    const size_t l = strlen(lit);
    if (p->doc->size - p->pos < l || memcmp(p->doc->text + p->pos, lit, l) != 0) return fail(p, "bad JSON value");
    const int id = new_node(p, type);
    if (id < 0) return -1;
    p->doc->nodes[id].num = v;
    p->pos += l;
    return id;
}

static int parse_value(parser *p, int depth) {
    skip_ws(p);
    if (p->pos >= p->doc->size) return fail(p, "truncated JSON");
    switch (p->doc->text[p->pos]) {
    case '{': return parse_container(p, depth, 1);
    case '[': return parse_container(p, depth, 0);
    case '"': return parse_string(p);
    case 't': return literal(p, "true", RT_J_BOOL, 1);
    case 'f': return literal(p, "false", RT_J_BOOL, 0);
    case 'n': return literal(p, "null", RT_J_NULL, 0);
    default: return parse_number(p);
    }
}

int rt_json_parse(rt_json *doc, const char *text, size_t size, char *err, size_t errlen) {
    memset(doc, 0, sizeof *doc);
    doc->text = text, doc->size = size;
    parser p = {doc, 0, err, errlen};
    if (parse_value(&p, 0) < 0) {
        rt_json_free(doc);
        return -1;
    }
    skip_ws(&p);
    if (p.pos != size) {
        fail(&p, "text after the JSON value");
        rt_json_free(doc);
        return -1;
    }
    return 0;
}

void rt_json_free(rt_json *doc) {
    free(doc->nodes);
    doc->nodes = NULL;
    doc->n = doc->cap = 0;
}

static void put_utf8(char *buf, size_t cap, size_t *o, unsigned cp, int *overflow) {
    unsigned char u[4];
    int l = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (l == 1) u[0] = (unsigned char)cp;
    else if (l == 2) u[0] = (unsigned char)(0xC0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3F));
    else if (l == 3)
        u[0] = (unsigned char)(0xE0 | cp >> 12), u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)),
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
    else
        u[0] = (unsigned char)(0xF0 | cp >> 18), u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    if (*o + (size_t)l >= cap) {
        *overflow = 1;
        return;
    }
    memcpy(buf + *o, u, (size_t)l);
    *o += (size_t)l;
}

static unsigned hex4(const char *s) {
    return (unsigned)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

long rt_json_str(const rt_json *doc, int s, char *buf, size_t cap) {
    if (s < 0 || doc->nodes[s].type != RT_J_STR || cap == 0) return -1;
    const char *t = doc->text + doc->nodes[s].off;
    const size_t n = doc->nodes[s].len;
    size_t o = 0;
    int overflow = 0;
    for (size_t i = 0; i < n && !overflow;) {
        if (t[i] != '\\') {
            if (o + 1 >= cap) return -1;
            buf[o++] = t[i++];
            continue;
        }
        const char e = t[i + 1]; /* validated by the parser */
        if (e == 'u') {
            unsigned cp = hex4(t + i + 2);
            i += 6;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= n && t[i] == '\\' && t[i + 1] == 'u') {
                const unsigned lo = hex4(t + i + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate */
            put_utf8(buf, cap, &o, cp, &overflow);
        } else {
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
            if (o + 1 >= cap) return -1;
            buf[o++] = to[strchr(from, e) - from];
            i += 2;
        }
    }
    if (overflow) return -1;
    buf[o] = 0;
    return (long)o;
}

int rt_json_str_is(const rt_json *doc, int s, const char *lit) {
    if (s < 0 || doc->nodes[s].type != RT_J_STR) return 0;
    const size_t l = strlen(lit);
    const rt_jnode *x = &doc->nodes[s];
    if (!memchr(doc->text + x->off, '\\', x->len)) return x->len == l && memcmp(doc->text + x->off, lit, l) == 0;
    char buf[256];
    const long got = rt_json_str(doc, s, buf, sizeof buf);
    return got == (long)l && memcmp(buf, lit, l) == 0;
}

int rt_json_get(const rt_json *doc, int obj, const char *key) {
    if (obj < 0 || doc->nodes[obj].type != RT_J_OBJ) return -1;
    for (int k = doc->nodes[obj].child; k >= 0;) {
        const int v = doc->nodes[k].next;
        if (rt_json_str_is(doc, k, key)) return v;
        k = doc->nodes[v].next;
    }
    return -1;
}

int rt_json_at(const rt_json *doc, int arr, int i) {
    if (arr < 0 || doc->nodes[arr].type != RT_J_ARR || i < 0 || i >= doc->nodes[arr].count) return -1;
    int x = doc->nodes[arr].child;
    while (i-- > 0 && x >= 0) x = doc->nodes[x].next;
    return x;
}
