/* Patch extraction for the ViT patch embedding (Dosovitskiy et al. 2021): the stride-P, P×P
 * Conv2d is computed as im2col + linear. Patch n = gy·(W/P) + gx (row-major over the grid, as
 * the Conv2d output flattened by timm's PatchEmbed), and within a patch the element order is
 * (c, py, px), the flattening of the Conv2d weight [D, C, P, P], so the weight can be used
 * as-is as a [D, C·P·P] linear weight. Pixels beyond a multiple of P are dropped, as Conv2d
 * with stride P does. */
#include <stddef.h>
#include <string.h>

#include "kernels/kernels.h"

/* The plain-loop version (kept as the oracle for tests). */
void mvmoe_patchify_ref(float *patches, const float *img, int B, int C, int H, int W, int P) {
    const int GH = H / P, GW = W / P, E = C * P * P;
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < GH; gy++)
            for (int gx = 0; gx < GW; gx++)
                for (int c = 0; c < C; c++)
                    for (int py = 0; py < P; py++)
                        for (int px = 0; px < P; px++)
                            /* patches[b, gy·GW + gx, (c·P + py)·P + px] = img[b, c, gy·P+py, gx·P+px] */
                            patches[((size_t)b * GH * GW + (size_t)gy * GW + gx) * E +
                                    ((size_t)c * P + py) * P + px] =
                                img[(((size_t)b * C + c) * H + (size_t)gy * P + py) * W +
                                    (size_t)gx * P + px];
}

void mvmoe_patchify(float *patches, const float *img, int B, int C, int H, int W, int P) {
    const int GH = H / P, GW = W / P, E = C * P * P;
    /* one task per (image, patch row): reads P full image rows per channel, contiguous */
#pragma omp parallel for schedule(static) if ((size_t)B * C * H * W >= 65536)
    for (int r = 0; r < B * GH; r++) {
        const int b = r / GH, gy = r % GH;
        for (int gx = 0; gx < GW; gx++) {
            float *dst = patches + ((size_t)b * GH * GW + (size_t)gy * GW + gx) * E;
            /* ViT-Tiny copies 9408 runs of 16 floats per image: a memcpy of constant size
             * is a few vector moves instead of a call per run (docs/PERFORMANCE.md §4) */
            for (int c = 0; c < C; c++)
                for (int py = 0; py < P; py++) {
                    float *d = dst + ((size_t)c * P + py) * P;
                    const float *s = img + (((size_t)b * C + c) * H + (size_t)gy * P + py) * W + (size_t)gx * P;
                    if (P == 16)
                        memcpy(d, s, 16 * sizeof(float));
                    else
                        memcpy(d, s, (size_t)P * sizeof(float));
                }
        }
    }
}
