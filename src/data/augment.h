/* Turning uint8 dataset images into normalized float batches, with the DeiT-style
 * augmentations. Randomness is drawn from an RNG stream derived from (seed, epoch, sample
 * position) so that a resumed run reproduces the exact same batches. */
#ifndef MVMOE_DATA_AUGMENT_H
#define MVMOE_DATA_AUGMENT_H

#include <stdint.h>

#include "mvmoe.h"

typedef struct mvmoe_augment {
    int crop_pad;          /* random crop of size S after zero padding by crop_pad; 0: off */
    int hflip;             /* random horizontal flip with p = 0.5 */
    int rrc;               /* random-resized-crop (scale 0.08-1, ratio 3/4-4/3) to S; 0: off */
    int randaug_n, randaug_m; /* RandAugment: n ops of magnitude m (0..10); n = 0: off */
    float erase_prob;      /* random erasing (area 0.02-1/3), filled with N(0,1) noise */
} mvmoe_augment;

/* out[B, C, S, S] = normalize(augment(ds image idx[i])), pixel (v/255 - mean[c]) / std[c].
 * If the stored image size differs from S, it is resized (bilinear) to S first.
 * a == NULL: no augmentation (evaluation). RNG stream for sample i: (seed, stream_base + i).
 * A bad index, size, mean/std or augmentation setting (e.g. a crop padding larger than the
 * image) is an error naming it, and out is left unspecified: callers must not run on it. */
mvmoe_status mvmoe_augment_batch(float *out, const mvmoe_dataset *ds, const int32_t *idx, int B,
                                 int S, const float *mean, const float *std,
                                 const mvmoe_augment *a, uint64_t seed, uint64_t stream_base);

/* Mixup / CutMix on a normalized batch in place (timm semantics: one λ per batch, pairs with
 * the batch flipped; cutmix λ corrected to the box area). With both alphas > 0, each batch
 * picks one of the two with p = 0.5. targets[B,K] (probability rows) are mixed the same way. */
void mvmoe_mix_batch(float *images, float *targets, int B, int C, int S, int K, float mixup_alpha,
                     float cutmix_alpha, uint64_t seed, uint64_t stream);

/* mvmoe_image_load (PNG/JPEG decoding for predict) is declared in mvmoe.h. */

#endif
