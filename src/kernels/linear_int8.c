/* The int8 backend of the linear layers (linear.c chooses it while the int8 mode is on,
 * inference only): dynamic quantization, the convention of XNNPACK and ONNX Runtime.
 *
 *   weights      int8, symmetric, per output channel: s_w[j] = max_k |w[j,k]| / 127,
 *                q_w[j,k] = round(w[j,k] / s_w[j]) in [-127, 127], zero point 0
 *                (mvmoe_int8_quantize_rows; made once, with the packed copies)
 *   activations  int8, symmetric, per row (token), at run time: s_a = max_k |x[k]| / 127,
 *                q_a[k] = round(x[k] / s_a)
 *   product      int32 sums acc[j] = Σ_k q_a[k]·q_w[j,k], exact;
 *                out[j] = (float)acc[j] · (s_a · s_w[j]) + b[j]
 *
 * Why symmetric int8 activations rather than ONNX Runtime's asymmetric uint8: no zero point,
 * so the sums need no Σ_k q_a correction term and the plain-C loop is the textbook one; the
 * price is one bit of range for activations that are all of one sign (after GELU), which the
 * measured accuracy (docs/EDGE.md, "int8") shows does not matter here. VPDPBUSD wants
 * unsigned × signed bytes: the fast path adds 128 to each activation (flips its top bit) and
 * subtracts 128·Σ_k q_w[j,k], kept per row in the packed copy — exact integer arithmetic, so
 * the fast path's int32 sums, and hence its float results, equal the reference's bit for bit.
 * Rounding is to nearest even (nearbyintf in the default mode), shared by both paths.
 *
 * Packed copy of w[N,K] (bytes): s_w [N floats], Σ_k q_w [N int32], q_w [N rows of Kp bytes],
 * Kp = K rounded up to 64 with zero padding, so the vector loop has no tail (padded activation
 * bytes are 0, +128 after the flip, times a 0 weight: nothing).
 *
 * Limits: K <= INT8_MAX_K (a row's quantized activations live on the stack; beyond it the
 * call returns -1 and linear.c runs it in fp32); |acc| <= K·255·127 fits int32 for K < 66,000.
 * A row holding a NaN or infinity gives NaN outputs, as the fp32 product would. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/linear_backend.h"
#include "kernels/simd512.h"

#define INT8_MAX_K 16384
#define KPAD(K) (((size_t)(K) + 63) / 64 * 64)

/* One value to int8 with the reciprocal scale: the one rounding rule of both paths. */
static inline int8_t quant(float x, float inv) {
    float r = nearbyintf(x * inv);
    return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
}

/* A row's scale and reciprocal (0 and 0 for an all-zero row); 0, or -1 if the row is not
 * finite. Not inlined: both paths must compute these floats with the same instructions. */
__attribute__((noinline)) static int row_scale(const float *x, int K, float *s, float *inv) {
    float amax = 0.0f;
    for (int k = 0; k < K; k++) {
        const float a = fabsf(x[k]);
        if (!(a <= amax)) amax = a; /* a NaN is kept (and caught below) */
    }
    if (!isfinite(amax)) return -1;
    *s = amax / 127.0f;
    *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return 0;
}

/* The dequantizing epilogue of one output; not inlined, so -ffp-contract cannot fuse it
 * differently in the two paths. */
__attribute__((noinline)) static float dequant(int32_t acc, float sa, float sw, const float *b, int j) {
    const float v = (float)acc * (sa * sw);
    return b ? v + b[j] : v;
}

/* A weight scale that survives a round trip through the int8 checkpoint: a row dequantized
 * with s (w = q·s, max |q| = 127, so max |w| = fl(127·s)) is quantized again with
 * fl(fl(127·s)/127), which is s itself when s is a fixed point of that map. s = fl(amax/127)
 * was one in every case of a 20-million-value check (an arbitrary float is not, about 1 in
 * 130), so this is a guard that costs two operations: eval --precision int8 of a quantized
 * checkpoint runs exactly the int8 weights and scales it stores (tests/kernels/test_int8.c
 * checks the round trip, tests/e2e/test_int8.sh the logits). */
static float stable_scale(float s) {
    for (int i = 0; i < 8; i++) {
        volatile float up = 127.0f * s; /* volatile: two roundings, as in the loader's product */
        const float next = up / 127.0f;
        if (next == s) break;
        s = next;
    }
    return s;
}

void mvmoe_int8_quantize_rows(int8_t *q, float *scale, const float *w, int N, int K) {
    for (int j = 0; j < N; j++) {
        float s = 0.0f, inv = 0.0f;
        const float *row = w + (size_t)j * K;
        if (row_scale(row, K, &s, &inv)) s = NAN, inv = 0.0f; /* callers check weights first */
        scale[j] = isfinite(s) ? stable_scale(s) : s;
        for (int k = 0; k < K; k++) q[(size_t)j * K + k] = quant(row[k], inv);
    }
}

void mvmoe_linear_int8_forward_ref(float *out, const float *in, const int8_t *qw, const float *sw,
                                   const float *b, int M, int K, int N) {
    for (int i = 0; i < M; i++) {
        const float *x = in + (size_t)i * K;
        float sa = 0.0f, inv = 0.0f;
        const int bad = row_scale(x, K, &sa, &inv);
        for (int j = 0; j < N; j++) {
            int32_t acc = 0;
            for (int k = 0; k < K; k++) acc += (int32_t)quant(x[k], inv) * qw[(size_t)j * K + k];
            out[(size_t)i * N + j] = bad ? NAN : dequant(acc, sa, sw[j], b, j);
        }
    }
}

size_t mvmoe_linear_int8_bytes(int N, int K) {
    if (K < 1 || K > INT8_MAX_K || N < 1) return 0;
    return (size_t)N * (sizeof(float) + sizeof(int32_t)) + (size_t)N * KPAD(K);
}

typedef struct {
    float *scale;
    int32_t *sum;
    int8_t *q;
} int8_view;

static int8_view view_of(const void *p, int N) {
    uint8_t *base = (uint8_t *)p;
    return (int8_view){(float *)base, (int32_t *)(base + (size_t)N * sizeof(float)),
                       (int8_t *)(base + (size_t)N * (sizeof(float) + sizeof(int32_t)))};
}

int mvmoe_linear_int8_pack(void *dst, const float *w, int N, int K) {
    if (!mvmoe_linear_int8_bytes(N, K)) return -1;
    const int8_view v = view_of(dst, N);
    const size_t Kp = KPAD(K);
    memset(v.q, 0, (size_t)N * Kp);
    for (int j = 0; j < N; j++) {
        int8_t *row = v.q + (size_t)j * Kp;
        mvmoe_int8_quantize_rows(row, &v.scale[j], w + (size_t)j * K, 1, K);
        int32_t s = 0;
        for (int k = 0; k < K; k++) s += row[k];
        v.sum[j] = s;
    }
    return 0;
}

/* One row: quantize it into a zero-padded stack buffer, then every output's int32 sum. */
static void forward_row(float *out, const float *x, const int8_view *v, const float *b, int K,
                        int N, int vnni) {
    const size_t Kp = KPAD(K);
    int8_t qa[INT8_MAX_K] __attribute__((aligned(64)));
    float sa = 0.0f, inv = 0.0f;
    if (row_scale(x, K, &sa, &inv)) {
        for (int j = 0; j < N; j++) out[j] = NAN;
        return;
    }
    for (int k = 0; k < K; k++) qa[k] = quant(x[k], inv);
    memset(qa + K, 0, Kp - (size_t)K);
    for (int j = 0; j < N; j++) {
        const int8_t *wq = v->q + (size_t)j * Kp;
        int32_t acc;
#if defined(__x86_64__) && defined(__GNUC__)
        if (vnni) {
            acc = dot_u8s8(qa, wq, (int)Kp) - 128 * v->sum[j];
        } else
#endif
        {
            acc = 0;
            for (int k = 0; k < K; k++) acc += (int32_t)qa[k] * wq[k];
        }
        out[j] = dequant(acc, sa, v->scale[j], b, j);
    }
}

int mvmoe_linear_int8_forward(float *out, const float *in, const void *wq, const float *b, int M,
                              int K, int N) {
    if (!mvmoe_linear_int8_bytes(N, K)) return -1;
    const int8_view v = view_of(wq, N);
    const int vnni = mvmoe_isa_vnni();
    /* rows are independent: the bits do not depend on the thread count */
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M > 1)
    for (int i = 0; i < M; i++)
        forward_row(out + (size_t)i * N, in + (size_t)i * K, &v, b, K, N, vnni);
    return 0;
}
