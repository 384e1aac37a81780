/* RandAugment (Cubuk et al. 2020) as in timm's rand_augment_transform with the "increasing"
 * op set used by DeiT ('rand-mM-inc1'): n ops drawn uniformly with replacement, each applied
 * with p = 0.5, signed magnitudes negated with p = 0.5. Not public API. */
#ifndef MVMOE_DATA_RANDAUG_H
#define MVMOE_DATA_RANDAUG_H

#include "core/rng.h"

/* Number of ops available for C channels (color needs C == 3). */
int mvmoe_randaug_num_ops(int C);

/* Applies RandAugment in place to img [C, S, S] holding pixel values 0..255 (floats). tmp:
 * C*S*S floats of scratch. fill[c]: pixel value of areas uncovered by rotate/shear/translate
 * (timm fills with the dataset mean color). m is clamped to 0..10. */
void mvmoe_randaug_apply(float *img, float *tmp, int C, int S, int n, int m, const float *fill,
                         mvmoe_rng *r);

#endif
