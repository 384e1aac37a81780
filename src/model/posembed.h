/* Position-embedding resampling for running a checkpoint at another image size. */
#ifndef MVMOE_MODEL_POSEMBED_H
#define MVMOE_MODEL_POSEMBED_H

/* out[1 + g2², D] from in[1 + g1², D]: the class-token row is copied, the g1×g1 grid is
 * resized to g2×g2 with bicubic interpolation exactly as torch.nn.functional.interpolate(
 * mode='bicubic', align_corners=False) (cubic convolution, A = -0.75, borders clamped), which
 * is what timm's resample_abs_pos_embed does when enlarging. */
void mvmoe_posembed_resample(float *out, const float *in, int g1, int g2, int D);

#endif
