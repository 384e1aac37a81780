/* mvmoe_augment_batch and mvmoe_mix_batch: normalization by hand, resize, flips and padded
 * crops as exact pixel moves, value ranges of RandAugment / erasing, determinism per
 * (seed, stream) independent of thread count and batch composition, Mixup / CutMix targets. */
#include <string.h>

#include <omp.h>

#include "data/augment.h"
#include "data/data.h"
#include "data_fixtures.h"
#include "mvmoe.h"
#include "test_util.h"

#define C 3
#define H 8
#define NIMG 6
#define PLANE (H * H)
#define IMG (C * PLANE)

static const float mean[C] = {0.4f, 0.5f, 0.3f}, stdv[C] = {0.2f, 0.25f, 0.3f};
static uint8_t pixels[NIMG * IMG];
static int32_t labels[NIMG];
static mvmoe_dataset ds = {.n = NIMG, .c = C, .h = H, .w = H, .num_classes = 2,
                           .images = pixels, .labels = labels};

static float norm(int c, uint8_t v) { return (float)(((double)v / 255.0 - mean[c]) / stdv[c]); }

static void setup(void) {
    uint32_t x = 12345;
    for (int i = 0; i < NIMG * IMG; i++) {
        x = x * 1664525u + 1013904223u;
        pixels[i] = (uint8_t)(x >> 24);
    }
    memset(pixels + 5 * IMG, 100, IMG); /* image 5: constant 100 */
    for (int i = 0; i < NIMG; i++) labels[i] = i % 2;
}

static void test_normalize(void) {
    int32_t idx[NIMG] = {3, 0, 5, 1, 2, 4};
    float out[NIMG * IMG];
    mvmoe_augment_batch(out, &ds, idx, NIMG, H, mean, stdv, NULL, 1, 0);
    double err = 0;
    for (int i = 0; i < NIMG; i++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < PLANE; p++) {
                double d = fabs(out[i * IMG + c * PLANE + p] - norm(c, pixels[idx[i] * IMG + c * PLANE + p]));
                err = d > err ? d : err;
            }
    CHECK(err < 1e-5, "a == NULL differs from (v/255 - mean)/std by %g", err);
    /* stored 8x8 -> S = 4: a constant image stays constant, values in the normalized range */
    float small[2 * C * 16];
    int32_t two[2] = {5, 0};
    mvmoe_augment_batch(small, &ds, two, 2, 4, mean, stdv, NULL, 1, 0);
    double cerr = 0;
    int in_range = 1;
    for (int c = 0; c < C; c++)
        for (int p = 0; p < 16; p++) {
            double d = fabs(small[c * 16 + p] - norm(c, 100));
            cerr = d > cerr ? d : cerr;
            float v = small[C * 16 + c * 16 + p];
            in_range &= v >= norm(c, 0) - 1e-5f && v <= norm(c, 255) + 1e-5f;
        }
    CHECK(cerr < 1e-5 && in_range, "resize 8 -> 4: constant off by %g, range %d", cerr, in_range);
}

/* For every sample of `out` (all image 0), returns how many were mirrored; -1 if any sample is
 * neither the image nor its mirror. */
static int count_flips(const float *out, int B) {
    int flips = 0;
    for (int b = 0; b < B; b++) {
        int same = 1, mirror = 1;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < H; x++) {
                    float v = out[b * IMG + c * PLANE + y * H + x];
                    same &= fabsf(v - norm(c, pixels[c * PLANE + y * H + x])) < 1e-5f;
                    mirror &= fabsf(v - norm(c, pixels[c * PLANE + y * H + (H - 1 - x)])) < 1e-5f;
                }
        if (!same && !mirror) return -1;
        flips += mirror;
    }
    return flips;
}

static void test_flip_crop(void) {
    enum { B = 32 };
    int32_t idx[B] = {0};
    static float out[B * IMG];
    mvmoe_augment a = {.hflip = 1};
    mvmoe_augment_batch(out, &ds, idx, B, H, mean, stdv, &a, 7, 100);
    int flips = count_flips(out, B);
    CHECK(flips > 4 && flips < B - 4, "flips: %d of %d samples (-1: not a mirror)", flips, B);

    mvmoe_augment pad = {.crop_pad = 2};
    mvmoe_augment_batch(out, &ds, idx, B, H, mean, stdv, &pad, 7, 0);
    int all_shifts = 1, moved = 0;
    for (int b = 0; b < B; b++) {
        int found = 0;
        for (int dy = -2; dy <= 2 && !found; dy++)
            for (int dx = -2; dx <= 2 && !found; dx++) {
                int ok = 1;
                for (int c = 0; c < C && ok; c++)
                    for (int y = 0; y < H && ok; y++)
                        for (int x = 0; x < H && ok; x++) {
                            int sy = y + dy, sx = x + dx;
                            uint8_t v = sy >= 0 && sy < H && sx >= 0 && sx < H
                                            ? pixels[c * PLANE + sy * H + sx] : 0;
                            ok = fabsf(out[b * IMG + c * PLANE + y * H + x] - norm(c, v)) < 1e-5f;
                        }
                if (ok) {
                    found = 1;
                    moved += dx != 0 || dy != 0;
                }
            }
        all_shifts &= found;
    }
    CHECK(all_shifts, "a padded crop is not a zero-padded shift of the image");
    CHECK(moved > B / 2, "only %d of %d crops moved", moved, B);
}

static void test_ranges(void) {
    enum { B = 24 };
    int32_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = i % NIMG;
    static float out[B * IMG];
    mvmoe_augment ra = {.randaug_n = 3, .randaug_m = 9, .rrc = 1, .hflip = 1};
    mvmoe_augment_batch(out, &ds, idx, B, H, mean, stdv, &ra, 3, 0);
    int in_range = 1, changed = 0;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < PLANE; p++) {
                float v = out[b * IMG + c * PLANE + p];
                in_range &= v >= norm(c, 0) - 1e-4f && v <= norm(c, 255) + 1e-4f;
                changed += fabsf(v - norm(c, pixels[idx[b] * IMG + c * PLANE + p])) > 1e-3f;
            }
    CHECK(in_range, "RandAugment + RRC left the pixel range");
    CHECK(changed > B * IMG / 4, "RandAugment + RRC changed only %d values", changed);
    /* random-resized-crop of a constant image is constant */
    int32_t five[4] = {5, 5, 5, 5};
    mvmoe_augment rrc = {.rrc = 1};
    mvmoe_augment_batch(out, &ds, five, 4, 6, mean, stdv, &rrc, 9, 0);
    double err = 0;
    for (int b = 0; b < 4; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < 36; p++) {
                double d = fabs(out[b * C * 36 + c * 36 + p] - norm(c, 100));
                err = d > err ? d : err;
            }
    CHECK(err < 1e-4, "RRC of a constant image off by %g", err);
    /* erasing with p = 1 on the constant image: one rectangle of noise per sample */
    mvmoe_augment er = {.erase_prob = 1.0f};
    mvmoe_augment_batch(out, &ds, five, 4, H, mean, stdv, &er, 9, 0);
    int rects = 1;
    for (int b = 0; b < 4; b++) {
        int y0 = H, y1 = -1, x0 = H, x1 = -1, cnt = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < H; x++)
                if (fabsf(out[b * IMG + y * H + x] - norm(0, 100)) > 1e-6f) {
                    cnt++;
                    y0 = y < y0 ? y : y0; y1 = y > y1 ? y : y1;
                    x0 = x < x0 ? x : x0; x1 = x > x1 ? x : x1;
                }
        rects &= cnt > 0 && cnt == (y1 - y0 + 1) * (x1 - x0 + 1) && cnt <= PLANE / 2;
    }
    CHECK(rects, "random erasing is not one noise rectangle of at most half the image");
}

static void test_determinism(void) {
    enum { B = 10 };
    int32_t idx[B] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3};
    static float o1[B * IMG], o2[B * IMG], o3[B * IMG], one[IMG];
    mvmoe_augment a = {.crop_pad = 2, .hflip = 1, .randaug_n = 2, .randaug_m = 9,
                       .erase_prob = 0.5f};
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    mvmoe_augment_batch(o1, &ds, idx, B, H, mean, stdv, &a, 11, 500);
    omp_set_num_threads(2);
    mvmoe_augment_batch(o2, &ds, idx, B, H, mean, stdv, &a, 11, 500);
    omp_set_num_threads(saved);
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "1 and 2 threads give different bytes");
    /* sample 7 alone with stream 507 equals sample 7 of the batch */
    mvmoe_augment_batch(one, &ds, idx + 7, 1, H, mean, stdv, &a, 11, 507);
    CHECK(memcmp(one, o1 + 7 * IMG, sizeof one) == 0, "sample depends on batch composition");
    mvmoe_augment_batch(o3, &ds, idx, B, H, mean, stdv, &a, 12, 500);
    CHECK(memcmp(o1, o3, sizeof o1) != 0, "seed 12 gives the same batch as seed 11");
    int32_t bad = NIMG;
    mvmoe_status s = mvmoe_augment_batch(one, &ds, &bad, 1, H, mean, stdv, &a, 1, 0);
    CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "index"), "index %d accepted", bad);
    mvmoe_augment big = {.crop_pad = H + 1};
    s = mvmoe_augment_batch(one, &ds, idx, 1, H, mean, stdv, &big, 1, 0);
    CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "--crop-pad"),
          "crop padding beyond the image: %d %s", s, mvmoe_last_error());
}

static void test_mix(void) {
    enum { B = 5, S = 8, K = 3, P = S * S };
    float img[B * P], tgt[B * K];
    int mixup_seen = 0, cutmix_seen = 0, ok_sum = 1, ok_consistent = 1;
    for (uint64_t stream = 0; stream < 40; stream++) {
        for (int b = 0; b < B; b++) {
            for (int p = 0; p < P; p++) img[b * P + p] = (float)b;
            for (int k = 0; k < K; k++) tgt[b * K + k] = k == b % K ? 1.0f : 0.0f;
        }
        mvmoe_mix_batch(img, tgt, B, 1, S, K, 0.8f, 1.0f, 5, stream);
        for (int b = 0; b < B; b++) {
            float s = 0;
            for (int k = 0; k < K; k++) s += tgt[b * K + k];
            ok_sum &= fabsf(s - 1.0f) < 1e-5f;
        }
        /* sample 0 pairs with sample 4 (value 4, class 1): lam = target weight of class 0 */
        float lam = tgt[0];
        ok_consistent &= fabsf(tgt[1] - (1.0f - lam)) < 1e-5f;
        int mixed = 1, partial = 0, cut = 1;
        for (int p = 0; p < P; p++) {
            float v = img[p];
            mixed &= fabsf(v - 4.0f * (1.0f - lam)) < 1e-4f;
            cut &= v == 0.0f || v == 4.0f;
            partial += v == 4.0f;
        }
        if (cut && !(mixed && (partial == 0 || partial == P))) {
            cutmix_seen++;
            ok_consistent &= fabsf((float)partial / P - (1.0f - lam)) < 1e-5f;
            ok_consistent &= img[2 * P] == 2.0f; /* the middle sample pairs with itself */
        } else {
            mixup_seen += mixed;
            ok_consistent &= mixed;
        }
    }
    CHECK(ok_sum, "mixed target rows do not sum to 1");
    CHECK(ok_consistent, "image mixing and target mixing disagree");
    CHECK(mixup_seen > 5 && cutmix_seen > 5, "mode switch: %d mixup, %d cutmix of 40",
          mixup_seen, cutmix_seen);
    float a1[B * P], a2[B * P], t1[B * K], t2[B * K];
    for (int i = 0; i < B * P; i++) a1[i] = a2[i] = (float)(i % 17);
    for (int i = 0; i < B * K; i++) t1[i] = t2[i] = (float)(i % K == 0);
    mvmoe_mix_batch(a1, t1, B, 1, S, K, 0.8f, 0.0f, 9, 3);
    mvmoe_mix_batch(a2, t2, B, 1, S, K, 0.8f, 0.0f, 9, 3);
    CHECK(memcmp(a1, a2, sizeof a1) == 0 && memcmp(t1, t2, sizeof t1) == 0, "not deterministic");
    mvmoe_mix_batch(a1, t1, B, 1, S, K, 0.0f, 0.0f, 9, 3);
    CHECK(memcmp(a1, a2, sizeof a1) == 0, "alphas 0 changed the batch");
}

int main(void) {
    setup();
    test_normalize();
    test_flip_crop();
    test_ranges();
    test_determinism();
    test_mix();
    TEST_MAIN_END("test_augment");
}
