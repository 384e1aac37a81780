/* Mixup (Zhang et al. 2018) / CutMix (Yun et al. 2019) with timm's Mixup semantics
 * (mode="batch"): one lambda ~ Beta(alpha, alpha) per batch, sample i paired with sample
 * B-1-i (x.flip(0)); CutMix box from timm's rand_bbox, lambda corrected to the box area;
 * targets mixed with the same lambda. Pairs are symmetric, so mixing happens in place. */
#include <math.h>

#include "core/rng.h"
#include "data/augment.h"

static int clip(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void mvmoe_mix_batch(float *images, float *targets, int B, int C, int S, int K, float mixup_alpha,
                     float cutmix_alpha, uint64_t seed, uint64_t stream) {
    int use_mixup = mixup_alpha > 0.0f, use_cutmix = cutmix_alpha > 0.0f;
    if (B < 2 || C < 1 || S < 1 || !images || (!use_mixup && !use_cutmix)) return;
    mvmoe_rng r;
    mvmoe_rng_init(&r, seed, stream);
    int cutmix = use_cutmix && (!use_mixup || mvmoe_rng_uniform(&r) < 0.5f);
    float lam = mvmoe_rng_beta_sym(&r, cutmix ? cutmix_alpha : mixup_alpha);
    size_t plane = (size_t)S * S, img = (size_t)C * plane;
    if (cutmix) {
        float cut = sqrtf(1.0f - lam);
        int ch = (int)(S * cut), cw = (int)(S * cut);
        int cy = (int)mvmoe_rng_below(&r, (uint32_t)S), cx = (int)mvmoe_rng_below(&r, (uint32_t)S);
        int y0 = clip(cy - ch / 2, 0, S), y1 = clip(cy + ch / 2, 0, S);
        int x0 = clip(cx - cw / 2, 0, S), x1 = clip(cx + cw / 2, 0, S);
        for (int i = 0; i < B / 2; i++) {
            float *a = images + (size_t)i * img, *b = images + (size_t)(B - 1 - i) * img;
            for (int c = 0; c < C; c++)
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) {
                        size_t o = c * plane + (size_t)y * S + x;
                        float t = a[o];
                        a[o] = b[o];
                        b[o] = t;
                    }
        }
        lam = 1.0f - (float)((y1 - y0) * (x1 - x0)) / (float)plane;
    } else {
        for (int i = 0; i < B / 2; i++) {
            float *a = images + (size_t)i * img, *b = images + (size_t)(B - 1 - i) * img;
            for (size_t o = 0; o < img; o++) {
                float va = a[o], vb = b[o];
                a[o] = lam * va + (1.0f - lam) * vb;
                b[o] = lam * vb + (1.0f - lam) * va;
            }
        }
    }
    if (!targets || K < 1) return;
    for (int i = 0; i < B / 2; i++) {
        float *a = targets + (size_t)i * K, *b = targets + (size_t)(B - 1 - i) * K;
        for (int k = 0; k < K; k++) {
            float va = a[k], vb = b[k];
            a[k] = lam * va + (1.0f - lam) * vb;
            b[k] = lam * vb + (1.0f - lam) * va;
        }
    }
}
