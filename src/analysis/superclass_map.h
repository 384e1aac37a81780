/* The one reader of class -> super-class map files (what `mvmoe superclasses` writes): training
 * reads only the indices through mvmoe_superclass_map_load (include/mvmoe.h), `mvmoe report`
 * reads the whole file through mvmoe_superclass_map_read. One parser, so a file one accepts
 * the other accepts too. */
#ifndef MVMOE_ANALYSIS_SUPERCLASS_MAP_H
#define MVMOE_ANALYSIS_SUPERCLASS_MAP_H

#include "mvmoe.h"

/* A map file: far above any real map (K ints plus K names), far below anything that hurts to
 * read. */
#define MVMOE_SUPERCLASS_MAP_MAX_BYTES ((size_t)16 << 20)

typedef struct mvmoe_superclass_map {
    const char *path;        /* the file read (not owned) */
    int K, E;                /* classes, super-classes (1 <= E <= K) */
    int *superclass_of;      /* [K] in 0..E-1, every super-class used */
    int *sizes;              /* [E] classes per super-class, counted from superclass_of */
    char ***groups;          /* [E][sizes[e]] class names, or NULL (text file, or no "groups") */
    char *method, *source;   /* or NULL (text file, or absent / null) */
} mvmoe_superclass_map;

/* Reads the map file at `path` into *m: JSON {"superclass_of": [K ints], "experts": E,
 * "sizes": [E], "groups": [E][sizes], "method", "source"} (only "superclass_of" required; an
 * absent or null extra is left out, a present one is checked), or a plain text file of K
 * whitespace-separated integers (indices only). K > 0: the file must map exactly K classes;
 * K == 0: the file says (1 .. MVMOE_SUPERCLASS_MAX_K). Checks: at most
 * MVMOE_SUPERCLASS_MAP_MAX_BYTES, a regular file (no FIFO), integers in 0..K-1, super-classes
 * 0..E-1 all used, "experts" = E, "sizes" equal to the counts, each "groups" entry an array
 * of that many strings. Errors name the file and the field or entry; on error *m is left
 * empty. Free with mvmoe_superclass_map_free. */
mvmoe_status mvmoe_superclass_map_read(const char *path, int K, mvmoe_superclass_map *m);
void mvmoe_superclass_map_free(mvmoe_superclass_map *m);

#endif
