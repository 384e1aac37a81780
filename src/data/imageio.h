/* Image decoding (PNG via libpng's simplified API, JPEG via libjpeg-turbo) and the
 * resize-shorter-side + center-crop step shared by image folders and `predict`. Not public API. */
#ifndef MVMOE_DATA_IMAGEIO_H
#define MVMOE_DATA_IMAGEIO_H

#include <stdint.h>

#include "mvmoe.h"

/* Largest decoded image accepted (pixels): bounds the allocation a hostile header can cause. */
#define MVMOE_IMAGE_MAX_PIXELS ((int64_t)1 << 27)

/* Decodes the PNG or JPEG file at `path` into RGB uint8 [h, w, 3]; *rgb is malloc'd. Alpha is
 * dropped (like PIL's convert("RGB")), gray is replicated, CMYK JPEGs are converted. */
mvmoe_status mvmoe_image_decode_rgb(const char *path, uint8_t **rgb, int *w, int *h);

/* mvmoe_image_load into caller memory out[C, S, S] (C = 1 or 3). */
mvmoe_status mvmoe_image_load_into(const char *path, int C, int S, uint8_t *out);

#endif
