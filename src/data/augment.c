/* Training / evaluation batches: uint8 dataset images -> augmented, normalized float [B,C,S,S].
 * Order per sample (timm's DeiT train transform): random-resized-crop or resize to S, random
 * crop with zero padding, horizontal flip, RandAugment, normalize, random erasing. Each sample
 * draws from its own RNG stream (seed, stream_base + i), so a batch does not depend on the
 * batch composition or the number of threads, and a resumed run can rebuild it exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/data.h"
#include "data/randaug.h"
#include "data/resample.h"

typedef struct {
    float *work, *tmp;
    void *resample;
} scratch;

/* torchvision RandomResizedCrop.get_params(scale=(0.08, 1), ratio=(3/4, 4/3)): the crop
 * (top, left, h, w) in pixels. Python's round() is half-to-even, hence nearbyint. */
static void rrc_box(mvmoe_rng *r, int H, int W, int *top, int *left, int *h, int *w) {
    double area = (double)H * W, lr0 = log(3.0 / 4.0), lr1 = log(4.0 / 3.0);
    for (int t = 0; t < 10; t++) {
        double target = area * (0.08 + (1.0 - 0.08) * mvmoe_rng_uniform(r));
        double ratio = exp(lr0 + (lr1 - lr0) * mvmoe_rng_uniform(r));
        int cw = (int)nearbyint(sqrt(target * ratio)), ch = (int)nearbyint(sqrt(target / ratio));
        if (cw > 0 && cw <= W && ch > 0 && ch <= H) {
            *top = (int)mvmoe_rng_below(r, (uint32_t)(H - ch + 1));
            *left = (int)mvmoe_rng_below(r, (uint32_t)(W - cw + 1));
            *h = ch;
            *w = cw;
            return;
        }
    }
    double in_ratio = (double)W / H; /* fallback: central crop at the closest allowed ratio */
    int cw = W, ch = H;
    if (in_ratio < 3.0 / 4.0) ch = (int)nearbyint(cw / (3.0 / 4.0));
    else if (in_ratio > 4.0 / 3.0) cw = (int)nearbyint(ch * (4.0 / 3.0));
    ch = ch > H ? H : ch < 1 ? 1 : ch;
    cw = cw > W ? W : cw < 1 ? 1 : cw;
    *top = (H - ch) / 2;
    *left = (W - cw) / 2;
    *h = ch;
    *w = cw;
}

/* timm RandomErasing(mode="pixel", min_area=0.02, max_area=1/3, min_aspect=0.3): one box of
 * per-pixel N(0, 1) noise in normalized space; up to 10 tries to fit it. */
static void random_erase(float *img, int C, int S, mvmoe_rng *r) {
    double area = (double)S * S, la0 = log(0.3), la1 = log(1.0 / 0.3);
    for (int t = 0; t < 10; t++) {
        double target = area * (0.02 + (1.0 / 3.0 - 0.02) * mvmoe_rng_uniform(r));
        double ratio = exp(la0 + (la1 - la0) * mvmoe_rng_uniform(r));
        int h = (int)nearbyint(sqrt(target * ratio)), w = (int)nearbyint(sqrt(target / ratio));
        if (w < S && h < S) {
            int top = (int)mvmoe_rng_below(r, (uint32_t)(S - h + 1));
            int left = (int)mvmoe_rng_below(r, (uint32_t)(S - w + 1));
            for (int c = 0; c < C; c++)
                for (int y = top; y < top + h; y++)
                    for (int x = left; x < left + w; x++)
                        img[((size_t)c * S + y) * S + x] = mvmoe_rng_normal(r);
            return;
        }
    }
}

static void augment_one(float *out, const mvmoe_dataset *ds, int32_t index, int S,
                        const float *mean, const float *std, const mvmoe_augment *a,
                        const float *fill, mvmoe_rng *r, scratch *sc) {
    int C = ds->c, H = ds->h, W = ds->w;
    size_t plane = (size_t)S * S;
    const uint8_t *src = ds->images + (size_t)index * C * H * W;
    float *img = sc->work;
    if (a && a->rrc) {
        int top, left, h, w;
        rrc_box(r, H, W, &top, &left, &h, &w);
        /* torchvision crops, then resizes the crop: only pixels inside the box contribute. */
        mvmoe_resample_u8(src + (size_t)top * W + left, C, h, w, (ptrdiff_t)H * W, W, 1, 0.0,
                          0.0, w, h, img, S, S, sc->resample);
    } else if (H != S || W != S) {
        mvmoe_resample_u8(src, C, H, W, (ptrdiff_t)H * W, W, 1, 0.0, 0.0, W, H, img, S, S,
                          sc->resample);
    } else {
        for (size_t i = 0; i < (size_t)C * plane; i++) img[i] = src[i];
    }
    if (a && a->crop_pad > 0) { /* torchvision RandomCrop(S, padding=p): zero pixels outside */
        int p = a->crop_pad;
        int oy = (int)mvmoe_rng_below(r, (uint32_t)(2 * p + 1)) - p;
        int ox = (int)mvmoe_rng_below(r, (uint32_t)(2 * p + 1)) - p;
        for (int c = 0; c < C; c++) {
            for (int y = 0; y < S; y++) {
                int sy = y + oy;
                float *d = sc->tmp + ((size_t)c * S + y) * S;
                for (int x = 0; x < S; x++) {
                    int sx = x + ox;
                    d[x] = sy >= 0 && sy < S && sx >= 0 && sx < S
                               ? img[((size_t)c * S + sy) * S + sx] : 0.0f;
                }
            }
        }
        memcpy(img, sc->tmp, (size_t)C * plane * sizeof *img);
    }
    if (a && a->hflip && mvmoe_rng_uniform(r) < 0.5f) {
        for (int c = 0; c < C; c++) {
            for (int y = 0; y < S; y++) {
                float *row = img + ((size_t)c * S + y) * S;
                for (int x = 0; x < S / 2; x++) {
                    float t = row[x];
                    row[x] = row[S - 1 - x];
                    row[S - 1 - x] = t;
                }
            }
        }
    }
    if (a && a->randaug_n > 0) mvmoe_randaug_apply(img, sc->tmp, C, S, a->randaug_n, a->randaug_m, fill, r);
    for (int c = 0; c < C; c++) {
        float scale = 1.0f / (255.0f * std[c]), shift = mean[c] / std[c];
        for (size_t i = 0; i < plane; i++) out[c * plane + i] = img[c * plane + i] * scale - shift;
    }
    if (a && a->erase_prob > 0.0f && mvmoe_rng_uniform(r) < a->erase_prob)
        random_erase(out, C, S, r);
}

mvmoe_status mvmoe_augment_batch(float *out, const mvmoe_dataset *ds, const int32_t *idx, int B,
                                 int S, const float *mean, const float *std,
                                 const mvmoe_augment *a, uint64_t seed, uint64_t stream_base) {
    if (!ds || !mean || !std || B < 0 || (B > 0 && (!out || !idx))) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "augment_batch: missing argument (B = %d)", B);
    }
    int C = ds->c;
    if (C < 1 || C > MVMOE_MAX_CHANNELS || ds->h < 1 || ds->w < 1 || S < 1 || S > 16384) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "augment_batch on %s: images %dx%dx%d to size %d; channels "
                   "must be 1..%d and sizes positive", ds->source ? ds->source : "", C, ds->h,
                   ds->w, S, MVMOE_MAX_CHANNELS);
    }
    for (int c = 0; c < C; c++) {
        if (!(std[c] > 0.0f) || !isfinite(mean[c])) {
            MVMOE_FAIL(MVMOE_ERR_INVALID, "augment_batch: channel %d has mean %g, std %g; std "
                       "must be > 0", c, (double)mean[c], (double)std[c]);
        }
    }
    for (int i = 0; i < B; i++) {
        if (idx[i] < 0 || idx[i] >= ds->n) {
            MVMOE_FAIL(MVMOE_ERR_INVALID, "augment_batch: sample %d has index %d, outside the %d "
                       "images of %s", i, idx[i], ds->n, ds->source ? ds->source : "");
        }
    }
    if (a && (a->crop_pad < 0 || a->crop_pad > S || a->randaug_n < 0 || a->randaug_n > 16)) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "--crop-pad %d must be in 0..%d (the image size) and --randaug n "
                   "%d in 0..16", a->crop_pad, S, a->randaug_n);
    }
    if (B == 0) return MVMOE_OK;
    int nt = omp_get_max_threads();
    nt = nt > B ? B : nt < 1 ? 1 : nt;
    size_t img_floats = (size_t)C * S * S;
    size_t rs_bytes = (mvmoe_resample_scratch_bytes(C, ds->h, ds->w, S, S) + 63) / 64 * 64;
    size_t per_thread = 2 * img_floats * sizeof(float) + rs_bytes;
    per_thread = (per_thread + 63) / 64 * 64;
    uint8_t *mem;
    MVMOE_ALLOC(mem, per_thread * (size_t)nt, "augmentation scratch");
    float fill[MVMOE_MAX_CHANNELS]; /* timm's RandAugment fills with the mean color */
    for (int c = 0; c < C; c++) fill[c] = roundf(255.0f * mean[c]);
#pragma omp parallel num_threads(nt)
    {
        uint8_t *base = mem + per_thread * (size_t)omp_get_thread_num();
        scratch sc = {(float *)(void *)(base + rs_bytes),
                      (float *)(void *)(base + rs_bytes) + img_floats, base};
#pragma omp for schedule(static)
        for (int i = 0; i < B; i++) {
            mvmoe_rng r;
            mvmoe_rng_init(&r, seed, stream_base + (uint64_t)i);
            augment_one(out + (size_t)i * img_floats, ds, idx[i], S, mean, std, a, fill, &r, &sc);
        }
    }
    free(mem);
    return MVMOE_OK;
}
