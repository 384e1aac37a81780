/* A small strict JSON reader for the runtime (safetensors headers and the model config):
 * RFC 8259 grammar, nesting at most RT_JSON_MAX_DEPTH, every read bounds-checked, so a hostile
 * header gives an error message, never a crash. The document is a flat array of nodes. */
#ifndef MVMOE_RUNTIME_RT_JSON_H
#define MVMOE_RUNTIME_RT_JSON_H

#include <stddef.h>

#define RT_JSON_MAX_DEPTH 64

typedef enum { RT_J_NULL, RT_J_BOOL, RT_J_NUM, RT_J_STR, RT_J_ARR, RT_J_OBJ } rt_jtype;

typedef struct {
    rt_jtype type;
    int count;        /* arrays: elements; objects: members */
    int child;        /* first element, or first member's key (its value follows it); -1 */
    int next;         /* next sibling (for a member's key: its value), -1 */
    size_t off, len;  /* strings: the raw text between the quotes */
    double num;       /* numbers; booleans: 0 or 1 */
} rt_jnode;

typedef struct {
    const char *text; /* not owned */
    size_t size;
    rt_jnode *nodes;
    int n, cap;
} rt_json;

/* Parses text[0..size) (one value, surrounded by white space only). 0, or -1 with a message
 * in err. */
int rt_json_parse(rt_json *doc, const char *text, size_t size, char *err, size_t errlen);
void rt_json_free(rt_json *doc);

/* The value of member `key` of object node `obj`, or -1. */
int rt_json_get(const rt_json *doc, int obj, const char *key);
/* Element i of array `arr`, or -1 (walks the list: for small arrays). */
int rt_json_at(const rt_json *doc, int arr, int i);
/* Decodes string node s into buf (NUL-terminated); its length, or -1 if it does not fit. */
long rt_json_str(const rt_json *doc, int s, char *buf, size_t cap);
/* 1 if string node s decodes to exactly `lit`. */
int rt_json_str_is(const rt_json *doc, int s, const char *lit);

#endif
