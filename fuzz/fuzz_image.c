/* Fuzz target: PNG / JPEG decoding (src/data/decode.c) and the resize + center-crop step that
 * image folders and `predict` use (mvmoe_image_load).
 *
 * Input: the image file itself; its last byte also picks the output (1 or 3 channels, size
 * 1, 7, 16 or 33), so the mutator explores both without a header of ours in front that would
 * hide the PNG/JPEG signature. A decoded image must have a sane size and a buffer that big. */
#include <stdint.h>
#include <stdlib.h>

#include "data/imageio.h"
#include "fuzz_util.h"

int mvmoe_fuzz_image(const uint8_t *data, size_t size) {
    fz_dir();
    const char *path = fz_path("img");
    fz_write(path, data, size);
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    if (mvmoe_image_decode_rgb(path, &rgb, &w, &h) == MVMOE_OK) {
        FZ_ASSERT(w >= 1 && h >= 1 && (int64_t)w * h <= MVMOE_IMAGE_MAX_PIXELS, "size %dx%d", w, h);
        uint64_t sum = 0;
        for (size_t i = 0; i < (size_t)w * h * 3; i++) sum += rgb[i];
        (void)sum;
        free(rgb);
    } else {
        FZ_ASSERT(rgb == NULL, "failed decode returned pixels");
    }
    uint8_t tail = size ? data[size - 1] : 0;
    static const int sizes[4] = {1, 7, 16, 33};
    int C = tail & 1 ? 3 : 1, S = sizes[(tail >> 1) & 3];
    uint8_t *out = NULL;
    if (mvmoe_image_load(path, C, S, &out) == MVMOE_OK) {
        uint64_t sum = 0;
        for (size_t i = 0; i < (size_t)C * S * S; i++) sum += out[i];
        (void)sum;
        free(out);
    } else {
        FZ_ASSERT(out == NULL, "failed load returned pixels");
    }
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return mvmoe_fuzz_image(data, size); }
#endif
