/* A safetensors checkpoint mapped read-only (docs/CHECKPOINT_FORMAT.md §1, §9): the header
 * parsed and checked, each tensor a pointer into the map. */
#ifndef MVMOE_RUNTIME_RT_CHECKPOINT_H
#define MVMOE_RUNTIME_RT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/rt_json.h"

#define RT_MAX_DIMS 8

typedef enum { RT_DT_F32, RT_DT_I8 } rt_dtype;

typedef struct {
    char *name;
    rt_dtype dtype;
    int ndim;
    int64_t shape[RT_MAX_DIMS];
    size_t begin, end;  /* byte offsets in the data section */
    const void *data;   /* into the map (or into `copy` when the map's address is misaligned) */
    void *copy;         /* owned, or NULL */
    int used;           /* claimed by the model (every tensor must be) */
} rt_tensor;

typedef struct {
    int fd;
    const uint8_t *map;
    size_t size;          /* file bytes */
    size_t data_start;    /* 8 + header length */
    rt_tensor *t;
    int nt;
    char *config;         /* __metadata__["config"], decoded; NULL if absent */
    char *quantization;   /* __metadata__["quantization"], or NULL */
} rt_checkpoint;

/* Maps and checks `path` (random_access: madvise(MADV_RANDOM) on the map before anything is
 * read, so no read-ahead brings in pages no one asked for). 0, or -1 with a message (what,
 * which file, what to do) in err; *status_out gets the mvmoe_run_status kind. */
int rt_checkpoint_open(rt_checkpoint *ck, const char *path, int random_access, char *err, size_t errlen,
                       int *status_out);
void rt_checkpoint_close(rt_checkpoint *ck);

/* The tensor called `name`, or NULL. */
rt_tensor *rt_checkpoint_find(const rt_checkpoint *ck, const char *name);

#endif
