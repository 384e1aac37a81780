#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void mvmoe_rng_init(mvmoe_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull) ^ 0x5851F42D4C957F2Dull;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t mvmoe_rng_u64(mvmoe_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float mvmoe_rng_uniform(mvmoe_rng *r) { return (float)(mvmoe_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

uint32_t mvmoe_rng_below(mvmoe_rng *r, uint32_t n) {
    /* Lemire's multiply-shift; the tiny bias (< 2^-32) is irrelevant for augmentation. */
    return (uint32_t)(((mvmoe_rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

float mvmoe_rng_normal(mvmoe_rng *r) {
    double u1 = ((double)(mvmoe_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(mvmoe_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Marsaglia-Tsang Gamma(a, 1); for a < 1 uses the a+1 boost. */
static double gamma_sample(mvmoe_rng *r, double a) {
    if (a < 1.0) {
        double u = ((double)(mvmoe_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
        return gamma_sample(r, a + 1.0) * pow(u, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = mvmoe_rng_normal(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = ((double)(mvmoe_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

float mvmoe_rng_beta_sym(mvmoe_rng *r, float a) {
    double x = gamma_sample(r, a), y = gamma_sample(r, a);
    return (float)(x / (x + y));
}

void mvmoe_rng_shuffle_i32(mvmoe_rng *r, int32_t *idx, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)mvmoe_rng_below(r, (uint32_t)i + 1);
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
