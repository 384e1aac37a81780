/* safetensors reader/writer (https://github.com/huggingface/safetensors format):
 * 8-byte little-endian header length N, N bytes of JSON header, then the raw tensor bytes.
 * The reader trusts nothing: header size cap, valid UTF-8 JSON object (parsed with cJSON),
 * known dtypes, shapes whose byte size (with overflow checks) equals end-begin, offsets that
 * tile the data section exactly (no holes, overlaps, duplicates, or bytes past the end),
 * metadata values that are strings. */
#ifndef MVMOE_IO_SAFETENSORS_H
#define MVMOE_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "mvmoe.h"

#define MVMOE_ST_MAX_DIMS 8
#define MVMOE_ST_MAX_HEADER (100u * 1000u * 1000u) /* as the reference implementation */

typedef enum {
    MVMOE_ST_F32, MVMOE_ST_F16, MVMOE_ST_BF16, MVMOE_ST_F64,
    MVMOE_ST_I64, MVMOE_ST_I32, MVMOE_ST_I16, MVMOE_ST_I8, MVMOE_ST_U8, MVMOE_ST_BOOL
} mvmoe_st_dtype;

typedef struct mvmoe_st_tensor {
    char *name;
    mvmoe_st_dtype dtype;
    int ndim;
    int64_t shape[MVMOE_ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets relative to the data section */
} mvmoe_st_tensor;

typedef struct mvmoe_st_file {
    char *path;              /* for messages */
    uint8_t *bytes;          /* whole file (owned) */
    size_t size;
    size_t data_start;       /* 8 + header length */
    mvmoe_st_tensor *tensors;
    int n_tensors;
    char **meta_keys, **meta_values; /* __metadata__ */
    int n_meta;
} mvmoe_st_file;

/* Reads and validates the whole file. On failure *f is left empty (safe to close). */
mvmoe_status mvmoe_st_open(mvmoe_st_file *f, const char *path);
/* Same validation on bytes in memory (takes a copy); `name` is used in messages. For fuzzing. */
mvmoe_status mvmoe_st_parse(mvmoe_st_file *f, const uint8_t *bytes, size_t size, const char *name);
void mvmoe_st_close(mvmoe_st_file *f);

const mvmoe_st_tensor *mvmoe_st_find(const mvmoe_st_file *f, const char *name);
const char *mvmoe_st_meta(const mvmoe_st_file *f, const char *key); /* NULL if absent */
size_t mvmoe_st_numel(const mvmoe_st_tensor *t);
/* Copies a tensor as float32, widening F16/BF16 (and F64 narrowing); `count` must equal its
 * element count, else a message naming the tensor and both sizes. */
mvmoe_status mvmoe_st_read_f32(const mvmoe_st_file *f, const mvmoe_st_tensor *t, float *out,
                               size_t count);

typedef struct mvmoe_st_out {
    const char *name;
    int ndim;
    int64_t shape[MVMOE_ST_MAX_DIMS];
    const float *data; /* F32, numel = product of shape */
    const int8_t *data_i8; /* non-NULL: the tensor is I8 with these values (data is ignored) */
} mvmoe_st_out;

/* Copies an I8 tensor (`count` must equal its element count); a tensor of another dtype is
 * refused with a message naming it and its dtype. */
mvmoe_status mvmoe_st_read_i8(const mvmoe_st_file *f, const mvmoe_st_tensor *t, int8_t *out,
                              size_t count);

/* Writes F32 (or, with data_i8, I8) tensors (in the given order) + string metadata pairs atomically: a temp file
 * beside `path`, fsync, rename over `path`, fsync of the directory. On any failure (disk
 * full, ...) the temp file is removed and an existing `path` is left untouched. */
mvmoe_status mvmoe_st_write(const char *path, const mvmoe_st_out *tensors, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta);

#endif
