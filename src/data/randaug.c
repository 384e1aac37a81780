/* RandAugment ops on float images in pixel units, following Pillow's ImageOps / ImageEnhance
 * definitions (what timm applies): magnitudes from timm's *_increasing_level_to_arg with
 * level = m / 10: rotate 30 deg, shear 0.3, translate 0.45 of the size, enhance factors
 * 1 +- 0.9 level (>= 0.1), solarize threshold 256 - 256 level, posterize 4 - 4 level bits (kept
 * >= 1 here: 0 bits would black out the image). Histogram ops work on rounded values. */
#include "data/randaug.h"

#include <math.h>
#include <string.h>

typedef enum {
    OP_IDENTITY,
    OP_AUTOCONTRAST,
    OP_EQUALIZE,
    OP_ROTATE,
    OP_SOLARIZE,
    OP_POSTERIZE,
    OP_CONTRAST,
    OP_BRIGHTNESS,
    OP_SHARPNESS,
    OP_SHEAR_X,
    OP_SHEAR_Y,
    OP_TRANSLATE_X,
    OP_TRANSLATE_Y,
    OP_COLOR, /* last: only for RGB */
    OP_COUNT
} op_kind;

int mvmoe_randaug_num_ops(int C) { return C == 3 ? OP_COUNT : OP_COUNT - 1; }

static float clamp255(float v) { return v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v; }

static int level_u8(float v) {
    long r = lrintf(v);
    return r < 0 ? 0 : r > 255 ? 255 : (int)r;
}

/* Pillow's Image.transform(AFFINE, data, BILINEAR, fillcolor): the output pixel center
 * (x + .5, y + .5) maps to source (a X + b Y + c, d X + e Y + f); outside the image -> fill. */
static void affine(float *img, float *tmp, int C, int S, const double m[6], const float *fill) {
    size_t plane = (size_t)S * S;
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            double X = x + 0.5, Y = y + 0.5;
            double sx = m[0] * X + m[1] * Y + m[2], sy = m[3] * X + m[4] * Y + m[5];
            size_t o = (size_t)y * S + x;
            if (sx < 0.0 || sx >= S || sy < 0.0 || sy >= S) {
                for (int c = 0; c < C; c++) tmp[c * plane + o] = fill[c];
                continue;
            }
            double u = sx - 0.5, v = sy - 0.5;
            int x0 = (int)floor(u), y0 = (int)floor(v);
            float fx = (float)(u - x0), fy = (float)(v - y0);
            int x1 = x0 + 1 < S ? x0 + 1 : S - 1, y1 = y0 + 1 < S ? y0 + 1 : S - 1;
            x0 = x0 < 0 ? 0 : x0;
            y0 = y0 < 0 ? 0 : y0;
            for (int c = 0; c < C; c++) {
                const float *p = img + c * plane;
                float top = p[y0 * S + x0] + fx * (p[y0 * S + x1] - p[y0 * S + x0]);
                float bot = p[y1 * S + x0] + fx * (p[y1 * S + x1] - p[y1 * S + x0]);
                tmp[c * plane + o] = top + fy * (bot - top);
            }
        }
    }
    memcpy(img, tmp, (size_t)C * plane * sizeof *img);
}

/* Pillow's Image.rotate(deg) about the center (counter-clockwise for deg > 0). */
static void rotate(float *img, float *tmp, int C, int S, double deg, const float *fill) {
    double t = -deg * 3.14159265358979323846 / 180.0, cx = S / 2.0, cy = S / 2.0;
    double m[6] = {cos(t), sin(t), 0.0, -sin(t), cos(t), 0.0};
    m[2] = m[0] * -cx + m[1] * -cy + cx;
    m[5] = m[3] * -cx + m[4] * -cy + cy;
    affine(img, tmp, C, S, m, fill);
}

/* ImageOps.autocontrast(cutoff=0), per channel. */
static void autocontrast(float *img, int C, int S) {
    size_t plane = (size_t)S * S;
    for (int c = 0; c < C; c++) {
        float *p = img + c * plane;
        int lo = 255, hi = 0;
        for (size_t i = 0; i < plane; i++) {
            int v = level_u8(p[i]);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (hi <= lo) continue;
        float scale = 255.0f / (float)(hi - lo);
        for (size_t i = 0; i < plane; i++) {
            float v = floorf((float)(level_u8(p[i]) - lo) * scale);
            p[i] = clamp255(v);
        }
    }
}

/* ImageOps.equalize, per channel: Pillow's cumulative-histogram lookup table. */
static void equalize(float *img, int C, int S) {
    size_t plane = (size_t)S * S;
    for (int c = 0; c < C; c++) {
        float *p = img + c * plane;
        long hist[256] = {0};
        for (size_t i = 0; i < plane; i++) hist[level_u8(p[i])]++;
        long last = 0, nonzero = 0, total = 0;
        for (int i = 0; i < 256; i++) {
            if (hist[i]) {
                last = hist[i];
                nonzero++;
            }
            total += hist[i];
        }
        if (nonzero <= 1) continue;
        long step = (total - last) / 255;
        if (step == 0) continue;
        int lut[256];
        long acc = step / 2;
        for (int i = 0; i < 256; i++) {
            long v = acc / step;
            lut[i] = v > 255 ? 255 : (int)v;
            acc += hist[i];
        }
        for (size_t i = 0; i < plane; i++) p[i] = (float)lut[level_u8(p[i])];
    }
}

/* Mean of the gray ("L") image, rounded like Pillow's ImageEnhance.Contrast. */
static float gray_mean(const float *img, int C, int S) {
    size_t plane = (size_t)S * S;
    double sum = 0.0;
    for (size_t i = 0; i < plane; i++) {
        sum += C == 3 ? 0.299 * img[i] + 0.587 * img[plane + i] + 0.114 * img[2 * plane + i]
                      : img[i];
    }
    return floorf((float)(sum / (double)plane) + 0.5f);
}

/* Pillow's ImageEnhance: blend(degenerate, img, f) = deg + f * (img - deg), clipped. */
static void enhance(float *img, float *tmp, int C, int S, op_kind op, float f) {
    size_t plane = (size_t)S * S;
    if (op == OP_BRIGHTNESS) {
        for (size_t i = 0; i < (size_t)C * plane; i++) img[i] = clamp255(f * img[i]);
    } else if (op == OP_CONTRAST) {
        float mean = gray_mean(img, C, S);
        for (size_t i = 0; i < (size_t)C * plane; i++)
            img[i] = clamp255(mean + f * (img[i] - mean));
    } else if (op == OP_COLOR) {
        for (size_t i = 0; i < plane; i++) {
            float L = 0.299f * img[i] + 0.587f * img[plane + i] + 0.114f * img[2 * plane + i];
            for (int c = 0; c < 3; c++)
                img[c * plane + i] = clamp255(L + f * (img[c * plane + i] - L));
        }
    } else { /* sharpness: degenerate = ImageFilter.SMOOTH (3x3, center 5, /13), borders kept */
        memcpy(tmp, img, (size_t)C * plane * sizeof *img);
        for (int c = 0; c < C; c++) {
            const float *p = img + c * plane;
            float *d = tmp + c * plane;
            for (int y = 1; y < S - 1; y++) {
                for (int x = 1; x < S - 1; x++) {
                    float s = 0.0f;
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++) s += p[(y + dy) * S + x + dx];
                    d[y * S + x] = (s + 4.0f * p[y * S + x]) / 13.0f;
                }
            }
        }
        for (size_t i = 0; i < (size_t)C * plane; i++)
            img[i] = clamp255(tmp[i] + f * (img[i] - tmp[i]));
    }
}

void mvmoe_randaug_apply(float *img, float *tmp, int C, int S, int n, int m, const float *fill,
                         mvmoe_rng *r) {
    int nops = mvmoe_randaug_num_ops(C);
    float level = (float)(m < 0 ? 0 : m > 10 ? 10 : m) / 10.0f;
    size_t total = (size_t)C * S * S;
    for (int k = 0; k < n; k++) {
        op_kind op = (op_kind)mvmoe_rng_below(r, (uint32_t)nops);
        if (mvmoe_rng_uniform(r) >= 0.5f) continue; /* timm's AugmentOp prob = 0.5 */
        float sign = 1.0f;
        switch (op) {
        case OP_ROTATE: case OP_SHEAR_X: case OP_SHEAR_Y: case OP_TRANSLATE_X:
        case OP_TRANSLATE_Y: case OP_CONTRAST: case OP_BRIGHTNESS: case OP_SHARPNESS:
        case OP_COLOR:
            sign = mvmoe_rng_uniform(r) < 0.5f ? -1.0f : 1.0f;
            break;
        default:
            break;
        }
        float factor = 1.0f + sign * 0.9f * level;
        factor = factor < 0.1f ? 0.1f : factor;
        switch (op) {
        case OP_IDENTITY:
            break;
        case OP_AUTOCONTRAST:
            autocontrast(img, C, S);
            break;
        case OP_EQUALIZE:
            equalize(img, C, S);
            break;
        case OP_ROTATE:
            rotate(img, tmp, C, S, sign * 30.0 * level, fill);
            break;
        case OP_SOLARIZE: {
            float thresh = (float)(256 - (int)(level * 256.0f));
            for (size_t i = 0; i < total; i++)
                if (img[i] >= thresh) img[i] = 255.0f - img[i];
            break;
        }
        case OP_POSTERIZE: {
            int bits = 4 - (int)(level * 4.0f);
            bits = bits < 1 ? 1 : bits;
            int mask = ~((1 << (8 - bits)) - 1) & 0xFF;
            for (size_t i = 0; i < total; i++) img[i] = (float)(level_u8(img[i]) & mask);
            break;
        }
        case OP_CONTRAST: case OP_BRIGHTNESS: case OP_SHARPNESS: case OP_COLOR:
            enhance(img, tmp, C, S, op, factor);
            break;
        case OP_SHEAR_X: {
            double mm[6] = {1, sign * 0.3 * level, 0, 0, 1, 0};
            affine(img, tmp, C, S, mm, fill);
            break;
        }
        case OP_SHEAR_Y: {
            double mm[6] = {1, 0, 0, sign * 0.3 * level, 1, 0};
            affine(img, tmp, C, S, mm, fill);
            break;
        }
        case OP_TRANSLATE_X: {
            double mm[6] = {1, 0, sign * 0.45 * level * S, 0, 1, 0};
            affine(img, tmp, C, S, mm, fill);
            break;
        }
        case OP_TRANSLATE_Y: {
            double mm[6] = {1, 0, 0, 0, 1, sign * 0.45 * level * S};
            affine(img, tmp, C, S, mm, fill);
            break;
        }
        case OP_COUNT:
            break;
        }
    }
}
