#include "model/posembed.h"

#include <math.h>
#include <string.h>

/* Keys' cubic convolution kernel weights for fractional offset t, A = -0.75 (PyTorch's). */
static void cubic_weights(double t, double w[4]) {
    const double A = -0.75;
    double x;
    x = t + 1.0; w[0] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    x = t;       w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 1.0 - t; w[2] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 2.0 - t; w[3] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

static int clampi(int v, int hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

void mvmoe_posembed_resample(float *out, const float *in, int g1, int g2, int D) {
    memcpy(out, in, sizeof(float) * (size_t)D);
    const float *grid = in + D;
    float *og = out + D;
    double scale = (double)g1 / (double)g2;
    for (int oy = 0; oy < g2; oy++) {
        double sy = (oy + 0.5) * scale - 0.5;
        int iy = (int)floor(sy);
        double wy[4];
        cubic_weights(sy - iy, wy);
        for (int ox = 0; ox < g2; ox++) {
            double sx = (ox + 0.5) * scale - 0.5;
            int ix = (int)floor(sx);
            double wx[4];
            cubic_weights(sx - ix, wx);
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int a = 0; a < 4; a++) {
                    int yy = clampi(iy - 1 + a, g1 - 1);
                    double row = 0;
                    for (int b = 0; b < 4; b++) {
                        int xx = clampi(ix - 1 + b, g1 - 1);
                        row += wx[b] * grid[((size_t)yy * g1 + xx) * D + d];
                    }
                    acc += wy[a] * row;
                }
                og[((size_t)oy * g2 + ox) * D + d] = (float)acc;
            }
        }
    }
}
