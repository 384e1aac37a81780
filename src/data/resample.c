/* Pillow-style separable resampling (ImagingResample, BILINEAR): for output index i along an
 * axis the source center is box0 + (i + 0.5) * scale, taps cover center +- support with
 * support = max(scale, 1), weights are the triangle filter scaled by 1 / max(scale, 1) and
 * normalized to sum 1. Shrinking therefore averages every covered pixel (antialiasing), growing
 * is half-pixel bilinear. Horizontal pass first, like Pillow. */
#include "data/resample.h"

#include <math.h>
#include <string.h>

static int max_taps(int in, int out) {
    double scale = (double)in / out;
    double support = scale > 1.0 ? scale : 1.0;
    return (int)ceil(2.0 * support) + 2;
}

size_t mvmoe_resample_scratch_bytes(int C, int sh, int sw, int oh, int ow) {
    size_t ints = 2 * ((size_t)ow + (size_t)oh);
    size_t floats = (size_t)ow * max_taps(sw, ow) + (size_t)oh * max_taps(sh, oh) +
                    (size_t)C * sh * ow;
    return 4 * (ints + floats);
}

/* Tap ranges and normalized weights for one axis. */
static void axis_coeffs(int in, double box0, double boxlen, int out, int taps, int *start,
                        int *count, float *w) {
    double scale = boxlen / out;
    double fscale = scale > 1.0 ? scale : 1.0;
    double support = fscale, inv = 1.0 / fscale;
    for (int i = 0; i < out; i++) {
        double center = box0 + (i + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > taps) hi = lo + taps;
        float *wi = w + (size_t)i * taps;
        double sum = 0.0;
        for (int k = 0; k < hi - lo; k++) {
            double t = fabs((lo + k - center + 0.5) * inv);
            double v = t < 1.0 ? 1.0 - t : 0.0;
            wi[k] = (float)v;
            sum += v;
        }
        if (hi <= lo || sum <= 0.0) { /* center outside the image: nearest edge pixel */
            lo = (int)floor(center);
            lo = lo < 0 ? 0 : lo >= in ? in - 1 : lo;
            hi = lo + 1;
            wi[0] = 1.0f;
            sum = 1.0;
        }
        for (int k = 0; k < hi - lo; k++) wi[k] = (float)(wi[k] / sum);
        start[i] = lo;
        count[i] = hi - lo;
    }
}

void mvmoe_resample_u8(const uint8_t *src, int C, int sh, int sw, ptrdiff_t cs, ptrdiff_t ys,
                       ptrdiff_t xs, double bx, double by, double bw, double bh, float *dst, int oh,
                       int ow, void *scratch) {
    int tx = max_taps(sw, ow), ty = max_taps(sh, oh);
    int *x0 = scratch, *xn = x0 + ow, *y0 = xn + ow, *yn = y0 + oh;
    float *wx = (float *)(yn + oh), *wy = wx + (size_t)ow * tx, *tmp = wy + (size_t)oh * ty;
    axis_coeffs(sw, bx, bw, ow, tx, x0, xn, wx);
    axis_coeffs(sh, by, bh, oh, ty, y0, yn, wy);
    int ylo = sh, yhi = 0;
    for (int i = 0; i < oh; i++) {
        if (y0[i] < ylo) ylo = y0[i];
        if (y0[i] + yn[i] > yhi) yhi = y0[i] + yn[i];
    }
    int rows = yhi - ylo;
    for (int c = 0; c < C; c++) {
        for (int y = ylo; y < yhi; y++) {
            const uint8_t *row = src + c * cs + (ptrdiff_t)y * ys;
            float *t = tmp + ((size_t)c * rows + (size_t)(y - ylo)) * ow;
            for (int i = 0; i < ow; i++) {
                const float *wi = wx + (size_t)i * tx;
                const uint8_t *p = row + (ptrdiff_t)x0[i] * xs;
                float acc = 0.0f;
                for (int k = 0; k < xn[i]; k++) acc += wi[k] * p[(ptrdiff_t)k * xs];
                t[i] = acc;
            }
        }
        for (int j = 0; j < oh; j++) {
            const float *wj = wy + (size_t)j * ty;
            float *o = dst + ((size_t)c * oh + j) * ow;
            memset(o, 0, (size_t)ow * sizeof *o);
            for (int k = 0; k < yn[j]; k++) {
                const float *t = tmp + ((size_t)c * rows + (size_t)(y0[j] + k - ylo)) * ow;
                float wk = wj[k];
                for (int i = 0; i < ow; i++) o[i] += wk * t[i];
            }
        }
    }
}
