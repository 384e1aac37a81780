/* The inputs mvmoe-run reads without any library: raw IDX folders (MNIST / Fashion-MNIST, the
 * file names `mvmoe eval` looks for, uncompressed) and binary PGM/PPM images. */
#ifndef MVMOE_RUN_CLI_DATA_H
#define MVMOE_RUN_CLI_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *pixels; /* n images of c x h x w, planar */
    int32_t *labels; /* n, or NULL */
    int n, c, h, w;
} run_images;

/* Split "train" or "test" of the IDX folder dir. 0, or -1 with a message in err. */
int run_idx_load(const char *dir, const char *split, run_images *out, char *err, size_t errlen);
/* One binary PGM (P5) or PPM (P6) file, maxval <= 255: 1 or 3 channels. */
int run_pnm_load(const char *path, run_images *out, char *err, size_t errlen);
void run_images_free(run_images *im);

#endif
