/* Deterministic, counter-friendly RNG (splitmix64 seeding + xoshiro256**). A stream is a pure
 * function of (seed, stream id), so a resumed run can rebuild the exact generator state for any
 * epoch/step without replaying the past (needed for bit-identical --resume). */
#ifndef MVMOE_CORE_RNG_H
#define MVMOE_CORE_RNG_H

#include <stdint.h>

typedef struct mvmoe_rng {
    uint64_t s[4];
} mvmoe_rng;

/* State for (seed, stream): independent streams for e.g. (epoch, sample) pairs. */
void mvmoe_rng_init(mvmoe_rng *r, uint64_t seed, uint64_t stream);
uint64_t mvmoe_rng_u64(mvmoe_rng *r);
/* Uniform in [0, 1) with 24 random bits (exact in float). */
float mvmoe_rng_uniform(mvmoe_rng *r);
/* Uniform integer in [0, n). n > 0. */
uint32_t mvmoe_rng_below(mvmoe_rng *r, uint32_t n);
/* Standard normal (Box-Muller, double internally). */
float mvmoe_rng_normal(mvmoe_rng *r);
/* Beta(a, a) sample for mixup/cutmix (a > 0), via two Gamma draws. */
float mvmoe_rng_beta_sym(mvmoe_rng *r, float a);
/* Fisher-Yates shuffle of idx[0..n). */
void mvmoe_rng_shuffle_i32(mvmoe_rng *r, int32_t *idx, int n);

#endif
