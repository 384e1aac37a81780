/* Separable resampling with a triangle (bilinear) filter whose support widens with the
 * downscale factor: Pillow's Image.resize(BILINEAR, box=...) algorithm, i.e. antialiased when
 * shrinking and plain half-pixel bilinear when growing. Used for resize-then-center-crop,
 * random-resized-crop and plain resizes. Not public API. */
#ifndef MVMOE_DATA_RESAMPLE_H
#define MVMOE_DATA_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* Scratch bytes needed by mvmoe_resample_u8 for any box inside an sh x sw source. */
size_t mvmoe_resample_scratch_bytes(int C, int sh, int sw, int oh, int ow);

/* dst[c, oy, ox] (float, pixel units 0..255, not rounded) = the box (bx, by, bw, bh) of the
 * source (in pixel-edge coordinates, inside [0, sw] x [0, sh]) resampled to oh x ow. The source
 * is addressed as src[c * cs + y * ys + x * xs], so both [C,H,W] and [H,W,C] layouts work. Taps
 * outside the box but inside the image are used, so this equals resizing the whole image and
 * cropping. scratch: mvmoe_resample_scratch_bytes bytes, 4-byte aligned. */
void mvmoe_resample_u8(const uint8_t *src, int C, int sh, int sw, ptrdiff_t cs, ptrdiff_t ys,
                       ptrdiff_t xs, double bx, double by, double bw, double bh, float *dst, int oh,
                       int ow, void *scratch);

#endif
