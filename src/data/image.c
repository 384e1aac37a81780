/* One image file -> uint8 [C, S, S]: decode, resize the shorter side to S (torchvision
 * Resize(S): the longer side becomes int(S * long / short)), center-crop S x S (torchvision
 * CenterCrop offsets: round((size - S) / 2), half to even), optionally convert to gray with
 * ITU-R 601-2 luma (PIL's "L": 0.299 R + 0.587 G + 0.114 B). */
#include <math.h>
#include <stdlib.h>

#include "core/status.h"
#include "data/imageio.h"
#include "data/resample.h"
#include "mvmoe.h"

#define IMAGE_MAX_SIDE 16384

static uint8_t to_u8(float v) {
    long r = lrintf(v);
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

mvmoe_status mvmoe_image_load_into(const char *path, int C, int S, uint8_t *out) {
    if (C != 1 && C != 3) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "loading %s with %d channels: only 1 (gray) or 3 (RGB) are "
                   "supported", path, C);
    }
    if (S <= 0 || S > IMAGE_MAX_SIDE) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "loading %s at size %d: use a size in 1..%d", path, S,
                   IMAGE_MAX_SIDE);
    }
    uint8_t *rgb;
    int w, h;
    MVMOE_TRY(mvmoe_image_decode_rgb(path, &rgb, &w, &h));
    int nw, nh;
    if (w <= h) {
        nw = S;
        nh = (int)((double)S * h / w);
    } else {
        nh = S;
        nw = (int)((double)S * w / h);
    }
    if (nw < S) nw = S;
    if (nh < S) nh = S;
    double left = nearbyint((nw - S) / 2.0), top = nearbyint((nh - S) / 2.0);
    double sx = (double)w / nw, sy = (double)h / nh;
    size_t scratch_bytes = mvmoe_resample_scratch_bytes(3, h, w, S, S);
    float *planes = malloc((size_t)3 * S * S * sizeof *planes);
    void *scratch = malloc(scratch_bytes);
    if (!planes || !scratch) {
        free(planes);
        free(scratch);
        free(rgb);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zu bytes to resize %s (%dx%d)",
                   scratch_bytes, path, w, h);
    }
    mvmoe_resample_u8(rgb, 3, h, w, 1, (ptrdiff_t)w * 3, 3, left * sx, top * sy, S * sx, S * sy,
                      planes, S, S, scratch);
    size_t plane = (size_t)S * S;
    if (C == 3) {
        for (size_t i = 0; i < 3 * plane; i++) out[i] = to_u8(planes[i]);
    } else {
        for (size_t i = 0; i < plane; i++)
            out[i] = to_u8(0.299f * planes[i] + 0.587f * planes[plane + i] +
                           0.114f * planes[2 * plane + i]);
    }
    free(planes);
    free(scratch);
    free(rgb);
    return MVMOE_OK;
}

mvmoe_status mvmoe_image_load(const char *path, int C, int S, uint8_t **out) {
    *out = NULL;
    if ((C != 1 && C != 3) || S <= 0 || S > IMAGE_MAX_SIDE) return mvmoe_image_load_into(path, C, S, NULL);
    uint8_t *buf;
    MVMOE_ALLOC(buf, (size_t)C * S * S, "decoded image");
    mvmoe_status s = mvmoe_image_load_into(path, C, S, buf);
    if (s != MVMOE_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    return MVMOE_OK;
}
