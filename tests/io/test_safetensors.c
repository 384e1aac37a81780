/* safetensors reader/writer: round trip with a byte-exact header, F16/BF16/F64 widening against
 * hand-computed values, hostile inputs that must all be rejected without crashing (plus a
 * small mutation fuzz), and writer failures (missing directory, unwritable temp path, full
 * disk simulated with RLIMIT_FSIZE in a child) that must leave an existing file untouched. */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"

static char g_dir[64];

static void put_le64(uint8_t *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

/* A file image: 8-byte length `claimed` (normally hlen), the header, `dlen` data bytes. */
static uint8_t *mk_raw(uint64_t claimed, const char *hdr, size_t hlen, const uint8_t *data,
                       size_t dlen, size_t *size) {
    *size = 8 + hlen + dlen;
    uint8_t *b = calloc(*size + 1, 1);
    if (!b) abort();
    put_le64(b, claimed);
    memcpy(b + 8, hdr, hlen);
    if (dlen && data) memcpy(b + 8 + hlen, data, dlen);
    return b;
}

static int is_zeroed(const mvmoe_st_file *f) {
    return !f->path && !f->bytes && !f->size && !f->data_start && !f->tensors &&
           !f->n_tensors && !f->meta_keys && !f->meta_values && !f->n_meta;
}

/* Parses an in-memory image and expects rejection with a message naming `name` and giving
 * the expected reason `why` (so each case fails for the reason it was built for). */
static void expect_reject_bytes(const char *name, const char *why, const uint8_t *b, size_t n) {
    mvmoe_st_file f;
    memset(&f, 0xA5, sizeof f); /* garbage: the parser must zero it */
    mvmoe_status s = mvmoe_st_parse(&f, b, n, name);
    CHECK(s != MVMOE_OK, "%s: hostile input accepted", name);
    CHECK(is_zeroed(&f), "%s: struct not left empty after failure", name);
    CHECK(strstr(mvmoe_last_error(), name) != NULL, "%s: message does not name the input: %s",
          name, mvmoe_last_error());
    CHECK(strstr(mvmoe_last_error(), why) != NULL, "%s: rejected, but not for '%s': %s", name,
          why, mvmoe_last_error());
    mvmoe_st_close(&f);
}

/* Header text (length hlen, may contain NULs) + dlen zero data bytes. */
static void reject_hdr_n(const char *name, const char *why, const char *hdr, size_t hlen,
                         size_t dlen) {
    uint8_t zeros[64] = {0};
    size_t n;
    uint8_t *b = mk_raw(hlen, hdr, hlen, dlen <= sizeof zeros ? zeros : NULL, dlen, &n);
    expect_reject_bytes(name, why, b, n);
    free(b);
}
static void reject_hdr(const char *name, const char *why, const char *hdr, size_t dlen) {
    reject_hdr_n(name, why, hdr, strlen(hdr), dlen);
}

static mvmoe_status parse_hdr(mvmoe_st_file *f, const char *hdr, const uint8_t *data,
                              size_t dlen) {
    size_t n;
    uint8_t *b = mk_raw(strlen(hdr), hdr, strlen(hdr), data, dlen, &n);
    mvmoe_status s = mvmoe_st_parse(f, b, n, "mem.safetensors");
    free(b);
    return s;
}

static void accept_hdr(const char *what, const char *hdr, size_t dlen, int n_tensors) {
    uint8_t zeros[64] = {0};
    mvmoe_st_file f;
    mvmoe_status s = parse_hdr(&f, hdr, zeros, dlen);
    CHECK(s == MVMOE_OK, "%s: valid input rejected: %s", what, mvmoe_last_error());
    CHECK(f.n_tensors == n_tensors, "%s: %d tensors, expected %d", what, f.n_tensors, n_tensors);
    mvmoe_st_close(&f);
    mvmoe_st_close(&f); /* closing twice is safe */
    CHECK(is_zeroed(&f), "%s: close did not zero the struct", what);
}

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define T_B "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}"

static void test_accepts(void) {
    accept_hdr("baseline", "{" T_A "}", 8, 1);
    accept_hdr("empty", "{}", 0, 0);
    accept_hdr("trailing whitespace (the format's padding)", "{" T_A "}  \r\n   ", 8, 1);
    accept_hdr("header order differs from data order", "{" T_B "," T_A "}", 16, 2);
    accept_hdr("empty metadata", "{\"__metadata__\":{}," T_A "}", 8, 1);
    accept_hdr("zero-size tensors first/middle/last",
               "{\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}," T_A ","
               "\"z1\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
               "\"z2\":{\"dtype\":\"I8\",\"shape\":[0,9007199254740991],\"data_offsets\":[8,8]}}",
               8, 4);
    accept_hdr("every dtype",
               "{\"f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"f16\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]},"
               "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]},"
               "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
               "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]},"
               "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]},"
               "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[28,30]},"
               "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[30,31]},"
               "\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[31,32]},"
               "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[32,33]}}",
               33, 10);
    accept_hdr("unicode names and escapes",
               "{\"\xc3\xa9\\u00e9\\ud83d\\ude00\\\"\\\\\":{\"dtype\":\"F32\",\"shape\":[2],"
               "\"data_offsets\":[0,8]}}",
               8, 1);
    /* ... and cJSON decoded the escapes into UTF-8: e-acute twice, U+1F600, a quote, a backslash */
    mvmoe_st_file f;
    uint8_t zeros[8] = {0};
    mvmoe_status s = parse_hdr(&f,
                               "{\"\xc3\xa9\\u00e9\\ud83d\\ude00\\\"\\\\\":{\"dtype\":\"F32\","
                               "\"shape\":[2],\"data_offsets\":[0,8]}}",
                               zeros, 8);
    CHECK(s == MVMOE_OK && mvmoe_st_find(&f, "\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80\"\\") != NULL,
          "escaped name not decoded as expected");
    mvmoe_st_close(&f);
}

/* One-tensor header {"KEY":{"dtype":DTYPE,"shape":SHAPE,"data_offsets":OFFS}}; each part is
 * raw JSON text (KEY without its quotes), so a case can corrupt exactly one of them. */
static const char *one(const char *key, const char *dtype, const char *shape, const char *offs) {
    static char buf[512];
    snprintf(buf, sizeof buf, "{\"%s\":{\"dtype\":%s,\"shape\":%s,\"data_offsets\":%s}}", key,
             dtype, shape, offs);
    return buf;
}

#define F32 "\"F32\""

static void test_hostile(void) {
    uint8_t tiny[8] = {0};
    size_t n;
    uint8_t *b;

    /* The 8-byte length prefix. */
    expect_reject_bytes("empty-file", "shorter than the 8-byte", tiny, 0);
    expect_reject_bytes("truncated-length", "shorter than the 8-byte", tiny, 5);
    b = mk_raw(100, "{}", 2, NULL, 0, &n);
    expect_reject_bytes("header-beyond-file", "truncated", b, n);
    free(b);
    b = mk_raw((uint64_t)MVMOE_ST_MAX_HEADER + 1, "{}", 2, NULL, 0, &n);
    expect_reject_bytes("header-over-100MB", "exceeds the limit", b, n);
    free(b);
    b = mk_raw(UINT64_MAX, "{}", 2, NULL, 0, &n);
    expect_reject_bytes("header-length-u64-max", "exceeds the limit", b, n);
    free(b);
    b = mk_raw(0, "", 0, tiny, 8, &n);
    expect_reject_bytes("header-length-zero", "does not start with '{'", b, n);
    free(b);

    /* Header bytes and JSON grammar. */
    reject_hdr("not-an-object", "does not start with '{'", "[{" T_A "}]", 8);
    reject_hdr("utf8-bom", "does not start with '{'", "\xef\xbb\xbf{" T_A "}", 8);
    reject_hdr("leading-whitespace", "starts with whitespace", " \n\t{" T_A "}", 8);
    reject_hdr("utf8-invalid-byte", "UTF-8", one("a\xff", F32, "[2]", "[0,8]"), 8);
    reject_hdr("utf8-overlong", "UTF-8", one("a\xc0\xaf", F32, "[2]", "[0,8]"), 8);
    reject_hdr("utf8-overlong-3byte", "UTF-8", one("a\xe0\x80\xaf", F32, "[2]", "[0,8]"), 8);
    reject_hdr("utf8-surrogate", "UTF-8", one("a\xed\xa0\x80", F32, "[2]", "[0,8]"), 8);
    reject_hdr("utf8-truncated-sequence", "UTF-8", one("a\xe2\x82", F32, "[2]", "[0,8]"), 8);
    reject_hdr("utf8-above-10ffff", "UTF-8", one("a\xf4\x90\x80\x80", F32, "[2]", "[0,8]"), 8);
    static const char nul_hdr[] =
        "{\"a\0\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    reject_hdr_n("nul-byte-in-header", "NUL", nul_hdr, sizeof nul_hdr - 1, 8);
    reject_hdr("control-char", "control character", "{\x01" T_A "}", 8);
    reject_hdr("escaped-nul-in-name", "\\u0000", one("a\\u0000x", F32, "[2]", "[0,8]"), 8);
    reject_hdr("lone-surrogate-escape", "not one valid JSON",
               one("a\\udc00", F32, "[2]", "[0,8]"), 8);
    reject_hdr("trailing-garbage", "not one valid JSON", "{" T_A "} x", 8);
    reject_hdr("two-objects", "not one valid JSON", "{}{}", 0);
    reject_hdr("unterminated-json", "not one valid JSON", "{\"a\":", 0);

    /* dtype and shape. */
    reject_hdr("dtype-unknown", "unknown dtype 'Q4'", one("a", "\"Q4\"", "[2]", "[0,8]"), 8);
    CHECK(strstr(mvmoe_last_error(), "'a'") && strstr(mvmoe_last_error(), "Q4"),
          "dtype message names tensor and dtype: %s", mvmoe_last_error());
    reject_hdr("dtype-foreign-U16", "does not read", one("a", "\"U16\"", "[4]", "[0,8]"), 8);
    reject_hdr("dtype-not-string", "dtype must be a string", one("a", "4", "[2]", "[0,8]"), 8);
    reject_hdr("shape-negative", "negative", one("a", F32, "[-2]", "[0,8]"), 8);
    reject_hdr("shape-fractional", "not an integer", one("a", F32, "[2.5]", "[0,10]"), 10);
    reject_hdr("shape-huge", "2^53", one("a", F32, "[1e300]", "[0,8]"), 8);
    reject_hdr("shape-above-2^53", "2^53", one("a", "\"U8\"", "[9007199254740993,0]", "[0,0]"),
               0);
    reject_hdr("shape-numel-overflow", "2^63",
               one("a", F32, "[1099511627776,1099511627776]", "[0,4]"), 4);
    reject_hdr("shape-bytes-overflow", "2^63",
               one("a", "\"F64\"", "[4611686018427387,4096]", "[0,8]"), 8);
    reject_hdr("shape-overflow-before-zero", "2^63",
               one("a", F32, "[4294967296,4294967296,4294967296,0]", "[0,0]"), 0);
    reject_hdr("shape-string-entry", "got a JSON string", one("a", F32, "[\"2\"]", "[0,8]"), 8);
    reject_hdr("shape-not-array", "shape must be an array", one("a", F32, "2", "[0,8]"), 8);
    reject_hdr("too-many-dims", "9 dimensions", one("a", F32, "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4);

    /* Offsets and layout. */
    reject_hdr("size-mismatch", "needs 8 bytes", one("a", F32, "[2]", "[0,4]"), 4);
    reject_hdr("overlapping-offsets", "overlap",
               "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    reject_hdr("same-offsets-twice", "overlap",
               "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    reject_hdr("gap-between-tensors", "gap of 4",
               "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20);
    reject_hdr("gap-at-start", "gap of 4", one("a", F32, "[2]", "[4,12]"), 12);
    reject_hdr("data-past-last-tensor", "cover only 8", "{" T_A "}", 12);
    reject_hdr("data-but-no-tensors", "cover only 0", "{}", 4);
    reject_hdr("offsets-beyond-file", "run past", "{" T_A "}", 4);
    reject_hdr("offsets-begin-after-end", "end before they begin", one("a", F32, "[2]", "[8,0]"),
               8);
    reject_hdr("offsets-three-entries", "two integers", one("a", F32, "[2]", "[0,8,8]"), 8);
    reject_hdr("offsets-negative", "negative", one("a", "\"U8\"", "[8]", "[-4,4]"), 8);
    reject_hdr("offsets-huge", "2^53", one("a", "\"U8\"", "[8]", "[0,1e20]"), 8);
    reject_hdr("offsets-not-array", "two integers", one("a", "\"U8\"", "[8]", "\"0,8\""), 8);

    /* Names, metadata, entry structure. */
    reject_hdr("duplicate-names", "appears twice",
               "{" T_A ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    reject_hdr("metadata-value-not-string", "must be a string",
               "{\"__metadata__\":{\"k\":1}," T_A "}", 8);
    reject_hdr("metadata-not-object", "must be an object", "{\"__metadata__\":\"x\"," T_A "}", 8);
    reject_hdr("metadata-null", "must be an object", "{\"__metadata__\":null," T_A "}", 8);
    reject_hdr("metadata-twice", "2 times", "{\"__metadata__\":{},\"__metadata__\":{}," T_A "}",
               8);
    reject_hdr("metadata-duplicate-key", "'k' twice",
               "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," T_A "}", 8);
    reject_hdr("missing-data_offsets", "no 'data_offsets'",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
    reject_hdr("missing-dtype", "no 'dtype'", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    reject_hdr("missing-shape", "no 'shape'", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}",
               8);
    reject_hdr("unknown-key-in-entry", "unknown key 'foo'",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"foo\":1}}", 8);
    reject_hdr("duplicate-key-in-entry", "'dtype' twice",
               "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8);
    reject_hdr("entry-not-object", "must be an object", "{\"a\":5}", 0);

    /* Deep nesting: must fail cleanly (cJSON's depth limit), not overflow the stack. */
    enum { DEPTH = 5000 };
    char *deep = malloc(2 * DEPTH + 16);
    if (!deep) abort();
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"a\":");
    for (int i = 0; i < DEPTH; i++) deep[k++] = '[';
    for (int i = 0; i < DEPTH; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = 0;
    reject_hdr("deep-nesting", "not one valid JSON", deep, 0);
    free(deep);

    /* The message format promised in the brief, verbatim. */
    reject_hdr("model.safetensors", "needs 2560 bytes",
               one("head.weight", F32, "[10,64]", "[0,100]"), 100);
    CHECK(strstr(mvmoe_last_error(),
                 "model.safetensors: tensor 'head.weight' data_offsets [0, 100] but F32 shape "
                 "[10, 64] needs 2560 bytes") != NULL,
          "size message: %s", mvmoe_last_error());
}

static void le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static int same_float(float a, float b) { /* bitwise, except any NaN matches any NaN */
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static void test_widening(void) {
    /* binary16 bit patterns and their exact values (IEEE 754-2008 binary16). */
    static const uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x8000,
                                 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x8001, 0x7C01};
    const float hv[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f /* 2^-24 */,
                        6.0975551605224609375e-05f /* 1023 * 2^-24 */, 6.103515625e-05f /* 2^-14 */,
                        -0.0f, INFINITY, -INFINITY, NAN, 0.333251953125f,
                        -5.9604644775390625e-08f, NAN};
    /* bfloat16: the top 16 bits of binary32. */
    static const uint16_t bf[] = {0x3F80, 0xC049, 0x7F80, 0x0001, 0x7FC0, 0x8000, 0x4049};
    const float bv[] = {1.0f, -3.140625f, INFINITY,
                        9.18354961579912115600575419705e-41f /* 2^-133 */, NAN, -0.0f, 3.140625f};
    const double dv[] = {1.5, -1e300, 1e-50, 3.141592653589793, -0.0};
    const float dexp[] = {1.5f, -INFINITY, 0.0f, 3.14159274101257324f, -0.0f};
    const float fv[] = {-1.25f, 1e-40f /* subnormal */, FLT_MAX};
    enum { NH = sizeof h / 2, NB = sizeof bf / 2, ND = 5, NF = 3 };
    uint8_t data[2 * NH + 2 * NB + 8 * ND + 4 * NF + 4];
    size_t o = 0;
    for (int i = 0; i < NH; i++, o += 2) le16(data + o, h[i]);
    for (int i = 0; i < NB; i++, o += 2) le16(data + o, bf[i]);
    for (int i = 0; i < ND; i++, o += 8) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        put_le64(data + o, u);
    }
    for (int i = 0; i < NF; i++, o += 4) {
        uint32_t u;
        memcpy(&u, &fv[i], 4);
        for (int k = 0; k < 4; k++) data[o + k] = (uint8_t)(u >> (8 * k));
    }
    data[o++] = 7; data[o++] = 0; data[o++] = 0; data[o++] = 0;
    char hdr[1024];
    /* Odd header length (no padding) so the F32/F64 tensors sit at unaligned addresses. */
    snprintf(hdr, sizeof hdr,
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
             "\"bf\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
             "\"d\":{\"dtype\":\"F64\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
             "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[%d,%d]}} ",
             NH, 2 * NH, NB, 2 * NH, 2 * NH + 2 * NB, ND, 2 * NH + 2 * NB,
             2 * NH + 2 * NB + 8 * ND, NF, 2 * NH + 2 * NB + 8 * ND,
             2 * NH + 2 * NB + 8 * ND + 4 * NF, 2 * NH + 2 * NB + 8 * ND + 4 * NF, (int)o);
    if (strlen(hdr) % 2 == 0) strcat(hdr, " ");
    mvmoe_st_file f;
    mvmoe_status s = parse_hdr(&f, hdr, data, o);
    CHECK(s == MVMOE_OK, "widening file rejected: %s", mvmoe_last_error());
    if (s != MVMOE_OK) return;
    CHECK(f.data_start % 2 == 1, "data_start %zu should be odd (unaligned reads)", f.data_start);
    float out[16];
    const mvmoe_st_tensor *t = mvmoe_st_find(&f, "h");
    CHECK(t && mvmoe_st_read_f32(&f, t, out, NH) == MVMOE_OK, "read F16: %s", mvmoe_last_error());
    for (int i = 0; t && i < NH; i++)
        CHECK(same_float(out[i], hv[i]), "F16 0x%04x -> %.9g, expected %.9g", h[i], out[i], hv[i]);
    CHECK(t && signbit(out[6]) && !signbit(out[0]), "F16 sign of -0");
    t = mvmoe_st_find(&f, "bf");
    CHECK(t && mvmoe_st_read_f32(&f, t, out, NB) == MVMOE_OK, "read BF16: %s", mvmoe_last_error());
    for (int i = 0; t && i < NB; i++)
        CHECK(same_float(out[i], bv[i]), "BF16 0x%04x -> %.9g, expected %.9g", bf[i], out[i],
              bv[i]);
    t = mvmoe_st_find(&f, "d");
    CHECK(t && mvmoe_st_read_f32(&f, t, out, ND) == MVMOE_OK, "read F64: %s", mvmoe_last_error());
    for (int i = 0; t && i < ND; i++)
        CHECK(same_float(out[i], dexp[i]), "F64 %.17g -> %.9g, expected %.9g", dv[i], out[i],
              dexp[i]);
    t = mvmoe_st_find(&f, "f");
    CHECK(t && mvmoe_st_read_f32(&f, t, out, NF) == MVMOE_OK, "read F32: %s", mvmoe_last_error());
    for (int i = 0; t && i < NF; i++)
        CHECK(same_float(out[i], fv[i]), "F32 %.9g -> %.9g", fv[i], out[i]);
    t = mvmoe_st_find(&f, "i");
    s = t ? mvmoe_st_read_f32(&f, t, out, 1) : MVMOE_OK;
    CHECK(s == MVMOE_ERR_UNSUPPORTED && strstr(mvmoe_last_error(), "'i'") &&
              strstr(mvmoe_last_error(), "I32"),
          "I32 as float: status %d, %s", s, mvmoe_last_error());
    t = mvmoe_st_find(&f, "h");
    s = mvmoe_st_read_f32(&f, t, out, NH - 1);
    CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "'h'") &&
              strstr(mvmoe_last_error(), "13 elements") && strstr(mvmoe_last_error(), "expects 12"),
          "count mismatch: status %d, %s", s, mvmoe_last_error());
    mvmoe_st_tensor stranger = *t;
    CHECK(mvmoe_st_read_f32(&f, &stranger, out, NH) == MVMOE_ERR_INVALID,
          "tensor from elsewhere accepted");
    mvmoe_st_close(&f);
}

/* ------------------------------------------------------------------ files */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    uint8_t *b = malloc(1 << 20);
    *n = b ? fread(b, 1, 1 << 20, fp) : 0;
    fclose(fp);
    return b;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static void tmp_name(char *buf, size_t cap, const char *path, long pid) {
    snprintf(buf, cap, "%s.tmp.%ld", path, pid);
}

static void test_roundtrip(const char *path) {
    float a[6] = {-1, -0.5f, 0, 0.5f, 1, 1.5f}, sc = 3.25f;
    float bv[5] = {-0.0f, 1e-40f, FLT_MAX, INFINITY, NAN};
    mvmoe_st_out t[4] = {
        {"a", 2, {2, 3}, a, NULL}, {"empty", 2, {0, 4}, NULL, NULL}, {"s", 0, {0}, &sc, NULL}, {"b", 1, {5}, bv, NULL}};
    const char *keys[] = {"config", "format"}, *vals[] = {"{\"x\":1}", "pt"};
    mvmoe_status s = mvmoe_st_write(path, t, 4, keys, vals, 2);
    CHECK(s == MVMOE_OK, "write: %s", mvmoe_last_error());
    char tmp[600];
    tmp_name(tmp, sizeof tmp, path, (long)getpid());
    CHECK(!exists(tmp), "temp file %s left behind", tmp);

    /* Byte-exact: the reference layout, header padded with spaces to a multiple of 8. */
    const char *expect =
        "{\"__metadata__\":{\"config\":\"{\\\"x\\\":1}\",\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[24,24]},"
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[28,48]}}";
    size_t elen = strlen(expect), hlen = (elen + 7) / 8 * 8, n = 0;
    uint8_t *raw = slurp(path, &n);
    CHECK(raw && n == 8 + hlen + 48, "file size %zu, expected %zu", n, 8 + hlen + 48);
    if (raw && n == 8 + hlen + 48) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = (len << 8) | raw[i];
        CHECK(len == hlen && len % 8 == 0, "header length %llu, expected %zu",
              (unsigned long long)len, hlen);
        CHECK(memcmp(raw + 8, expect, elen) == 0, "header text differs: %.*s", (int)elen, raw + 8);
        int spaces = 1;
        for (size_t i = 8 + elen; i < 8 + hlen; i++) spaces &= raw[i] == ' ';
        CHECK(spaces, "padding is not spaces");
        float all[12];
        memcpy(all, a, sizeof a);
        all[6] = sc;
        memcpy(all + 7, bv, sizeof bv);
        int same = 1;
        for (int i = 0; i < 12; i++) {
            uint32_t u;
            memcpy(&u, &all[i], 4);
            for (int k = 0; k < 4; k++) same &= raw[8 + hlen + 4 * i + k] == (uint8_t)(u >> 8 * k);
        }
        CHECK(same, "data bytes are not the little-endian floats");
    }
    free(raw);

    mvmoe_st_file f;
    s = mvmoe_st_open(&f, path);
    CHECK(s == MVMOE_OK, "reopen: %s", mvmoe_last_error());
    if (s != MVMOE_OK) return;
    CHECK(f.data_start % 8 == 0, "data_start %zu not 8-aligned", f.data_start);
    CHECK(f.n_tensors == 4, "n_tensors %d", f.n_tensors);
    for (int i = 0; i < f.n_tensors && i < 4; i++) {
        const mvmoe_st_tensor *r = &f.tensors[i];
        CHECK(strcmp(r->name, t[i].name) == 0 && r->dtype == MVMOE_ST_F32 && r->ndim == t[i].ndim,
              "tensor %d: %s", i, r->name);
        for (int d = 0; d < r->ndim; d++)
            CHECK(r->shape[d] == t[i].shape[d], "%s dim %d", r->name, d);
    }
    float out[6];
    const mvmoe_st_tensor *r = mvmoe_st_find(&f, "a");
    CHECK(r && mvmoe_st_numel(r) == 6 && mvmoe_st_read_f32(&f, r, out, 6) == MVMOE_OK &&
              memcmp(out, a, sizeof a) == 0,
          "tensor a round trip");
    r = mvmoe_st_find(&f, "empty");
    CHECK(r && mvmoe_st_numel(r) == 0 && r->begin == r->end &&
              mvmoe_st_read_f32(&f, r, NULL, 0) == MVMOE_OK,
          "zero-size tensor");
    r = mvmoe_st_find(&f, "s");
    CHECK(r && mvmoe_st_numel(r) == 1 && mvmoe_st_read_f32(&f, r, out, 1) == MVMOE_OK &&
              out[0] == sc,
          "scalar round trip");
    r = mvmoe_st_find(&f, "b");
    CHECK(r && mvmoe_st_read_f32(&f, r, out, 5) == MVMOE_OK && memcmp(out, bv, sizeof bv) == 0,
          "special values round trip bit-exactly");
    CHECK(mvmoe_st_find(&f, "nope") == NULL, "find of a missing name");
    const char *cfg = mvmoe_st_meta(&f, "config"), *fmt = mvmoe_st_meta(&f, "format");
    CHECK(f.n_meta == 2 && cfg && strcmp(cfg, vals[0]) == 0 && fmt && strcmp(fmt, "pt") == 0,
          "metadata round trip");
    CHECK(mvmoe_st_meta(&f, "nope") == NULL, "meta of a missing key");
    mvmoe_st_close(&f);
    CHECK(is_zeroed(&f), "close zeroes");

    /* No metadata given: no __metadata__ key at all. */
    s = mvmoe_st_write(path, t, 1, NULL, NULL, 0);
    raw = slurp(path, &n);
    const char *plain = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    CHECK(s == MVMOE_OK && raw && n > 8 + strlen(plain) &&
              memcmp(raw + 8, plain, strlen(plain)) == 0,
          "header without metadata");
    free(raw);
}

/* Failures must leave `path` (holding `old`, n bytes) untouched and no temp file. */
static void check_untouched(const char *what, const char *path, const uint8_t *old, size_t n) {
    size_t m = 0;
    uint8_t *now = slurp(path, &m);
    CHECK(now && m == n && memcmp(now, old, n) == 0, "%s: existing file was modified", what);
    free(now);
}

/* Child process: write under RLIMIT_FSIZE = limit (a full disk, as write() sees it). Exits 0
 * if the write failed with EFBIG in the expected step, named the path and removed its temp. */
static int disk_full_child(const char *path, rlim_t limit, size_t numel, const char *step) {
    struct rlimit rl = {limit, limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0 || signal(SIGXFSZ, SIG_IGN) == SIG_ERR) return 2;
    float *big = calloc(numel, sizeof *big);
    if (!big) return 2;
    mvmoe_st_out t = {"big", 1, {(int64_t)numel}, big, NULL};
    mvmoe_status s = mvmoe_st_write(path, &t, 1, NULL, NULL, 0);
    free(big);
    char tmp[600];
    tmp_name(tmp, sizeof tmp, path, (long)getpid());
    const char *msg = mvmoe_last_error();
    int ok = s == MVMOE_ERR_IO && strstr(msg, path) && strstr(msg, strerror(EFBIG)) &&
             strstr(msg, step) && !exists(tmp);
    if (!ok) fprintf(stderr, "disk-full child (limit %ld): status %d, temp %s, message: %s\n",
                     (long)limit, s, exists(tmp) ? "left behind" : "removed", msg);
    return ok ? 0 : 1;
}

/* I8 tensors (int8 checkpoints): written as I8 bytes between F32 tensors, read back by
 * mvmoe_st_read_i8; the float reader refuses them, the I8 reader refuses F32. */
static void test_i8(const char *path) {
    const int8_t q[5] = {-127, -1, 0, 1, 127};
    const float f[2] = {0.5f, -2.0f};
    mvmoe_st_out t[3] = {{.name = "w", .ndim = 1, .shape = {5}, .data_i8 = q},
                         {.name = "w_scale", .ndim = 1, .shape = {2}, .data = f},
                         {.name = "empty", .ndim = 1, .shape = {0}, .data_i8 = q}};
    CHECK(mvmoe_st_write(path, t, 3, NULL, NULL, 0) == MVMOE_OK, "write I8: %s", mvmoe_last_error());
    mvmoe_st_file file;
    CHECK(mvmoe_st_open(&file, path) == MVMOE_OK, "open I8 file: %s", mvmoe_last_error());
    const mvmoe_st_tensor *w = mvmoe_st_find(&file, "w"), *sc = mvmoe_st_find(&file, "w_scale");
    CHECK(w && w->dtype == MVMOE_ST_I8 && w->end - w->begin == 5, "w is I8 of 5 bytes");
    int8_t back[5] = {0};
    float fb[5] = {0};
    if (w && sc) {
        CHECK(mvmoe_st_read_i8(&file, w, back, 5) == MVMOE_OK && memcmp(back, q, 5) == 0, "I8 values back");
        CHECK(mvmoe_st_read_f32(&file, sc, fb, 2) == MVMOE_OK && fb[0] == 0.5f && fb[1] == -2.0f,
              "the F32 tensor after the odd-sized I8 one reads back");
        CHECK(mvmoe_st_read_f32(&file, w, fb, 5) == MVMOE_ERR_UNSUPPORTED, "I8 read as floats is refused");
        CHECK(mvmoe_st_read_i8(&file, sc, back, 2) == MVMOE_ERR_FORMAT &&
                  strstr(mvmoe_last_error(), "I8 is expected"), "F32 read as I8 is refused: %s", mvmoe_last_error());
        CHECK(mvmoe_st_read_i8(&file, w, back, 4) == MVMOE_ERR_INVALID, "a wrong count is refused");
    }
    mvmoe_st_close(&file);
}

static void test_write_failures(const char *path) {
    size_t n = 0;
    uint8_t *old = slurp(path, &n);
    CHECK(old && n > 8, "existing file for failure tests");
    if (!old) return;
    char other[512], tmp[600];

    /* Directory that does not exist. */
    snprintf(other, sizeof other, "%s/no/such/dir/m.safetensors", g_dir);
    float x[2] = {1, 2};
    mvmoe_st_out t = {"x", 1, {2}, x, NULL};
    mvmoe_status s = mvmoe_st_write(other, &t, 1, NULL, NULL, 0);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), other) &&
              strstr(mvmoe_last_error(), strerror(ENOENT)),
          "missing directory: status %d, %s", s, mvmoe_last_error());
    CHECK(!exists(other), "file appeared in a missing directory");

    /* Temp path taken by a directory: creating the temp file fails. */
    tmp_name(tmp, sizeof tmp, path, (long)getpid());
    CHECK(mkdir(tmp, 0700) == 0, "mkdir %s", tmp);
    s = mvmoe_st_write(path, &t, 1, NULL, NULL, 0);
    CHECK(s == MVMOE_ERR_IO && strstr(mvmoe_last_error(), path), "temp is a directory: %d, %s", s,
          mvmoe_last_error());
    check_untouched("temp is a directory", path, old, n);
    CHECK(rmdir(tmp) == 0, "the directory at the temp path must survive (not ours to delete)");

    /* Full disk, in children (a resource limit cannot be undone safely in this process).
     * Small write: the error surfaces only at fflush; large write: in fwrite itself. */
    struct { rlim_t limit; size_t numel; const char *step; } cases[] = {
        {16, 4, "flushing"}, {4096, 1 << 15, "writing"}};
    for (int c = 0; c < 2; c++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            int rc = disk_full_child(path, cases[c].limit, cases[c].numel, cases[c].step);
            free(old); /* the child's copy: keeps leak checkers quiet in the child too */
            _exit(rc);
        }
        int status = -1;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/wait");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "disk-full case %d: child status %d", c, status);
        check_untouched("disk full", path, old, n);
        tmp_name(tmp, sizeof tmp, path, (long)pid);
        CHECK(!exists(tmp), "disk full: temp %s left behind", tmp);
    }

    /* Invalid arguments: rejected before anything is created. */
    snprintf(other, sizeof other, "%s/invalid.safetensors", g_dir);
    mvmoe_st_out dup[2] = {{"x", 1, {2}, x, NULL}, {"x", 1, {2}, x, NULL}};
    mvmoe_st_out bad[] = {
        {NULL, 1, {2}, x, NULL},        {"neg", 1, {-1}, x, NULL},           {"nd9", 9, {1}, x, NULL},
        {"ndneg", -1, {1}, x, NULL},    {"__metadata__", 1, {2}, x, NULL},   {"nodata", 1, {2}, NULL, NULL},
        {"bad\xff", 1, {2}, x, NULL},   {"big", 2, {INT64_MAX, 2}, x, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = mvmoe_st_write(other, &bad[i], 1, NULL, NULL, 0);
        CHECK(s == MVMOE_ERR_INVALID, "bad tensor %zu (%s) accepted: %d", i,
              bad[i].name ? bad[i].name : "NULL", s);
    }
    s = mvmoe_st_write(other, dup, 2, NULL, NULL, 0);
    CHECK(s == MVMOE_ERR_INVALID && strstr(mvmoe_last_error(), "'x'"), "duplicate names: %s",
          mvmoe_last_error());
    const char *k2[] = {"k", "k"}, *v2[] = {"1", "2"}, *vnull[] = {"1", NULL};
    CHECK(mvmoe_st_write(other, &t, 1, k2, v2, 2) == MVMOE_ERR_INVALID, "duplicate meta keys");
    CHECK(mvmoe_st_write(other, &t, 1, (const char *[]){"a", "b"}, vnull, 2) == MVMOE_ERR_INVALID,
          "NULL meta value");
    CHECK(mvmoe_st_write(other, NULL, 1, NULL, NULL, 0) == MVMOE_ERR_INVALID, "NULL tensors");
    CHECK(!exists(other), "invalid writes created a file");

    /* Successful overwrite replaces the old contents. */
    s = mvmoe_st_write(path, &t, 1, NULL, NULL, 0);
    mvmoe_st_file f;
    CHECK(s == MVMOE_OK && mvmoe_st_open(&f, path) == MVMOE_OK && f.n_tensors == 1 &&
              strcmp(f.tensors[0].name, "x") == 0,
          "overwrite: %s", mvmoe_last_error());
    mvmoe_st_close(&f);
    free(old);
}

static void test_open_failures(const char *path) {
    mvmoe_st_file f;
    char p[512];
    snprintf(p, sizeof p, "%s/missing.safetensors", g_dir);
    mvmoe_status s = mvmoe_st_open(&f, p);
    CHECK(s == MVMOE_ERR_IO && is_zeroed(&f) && strstr(mvmoe_last_error(), p),
          "missing file: %d, %s", s, mvmoe_last_error());
    s = mvmoe_st_open(&f, g_dir);
    CHECK(s == MVMOE_ERR_IO && is_zeroed(&f), "directory: %d, %s", s, mvmoe_last_error());
    /* A corrupt file on disk: truncated copy of a valid one. */
    size_t n = 0;
    uint8_t *raw = slurp(path, &n);
    snprintf(p, sizeof p, "%s/truncated.safetensors", g_dir);
    FILE *fp = fopen(p, "wb");
    CHECK(raw && fp && n > 4 && fwrite(raw, 1, n - 4, fp) == n - 4, "writing truncated copy");
    if (fp) fclose(fp);
    s = mvmoe_st_open(&f, p);
    CHECK(s == MVMOE_ERR_FORMAT && is_zeroed(&f) && strstr(mvmoe_last_error(), p),
          "truncated file: %d, %s", s, mvmoe_last_error());
    unlink(p);
    free(raw);
}

/* Random byte mutations of a valid file: must never crash; whatever is accepted must still
 * satisfy the layout invariants. */
static void test_fuzz(const char *path) {
    size_t n = 0;
    uint8_t *orig = slurp(path, &n), *b = malloc(n ? n : 1);
    CHECK(orig && b && n > 16, "fuzz seed file");
    if (!orig || !b || n <= 16) {
        free(orig);
        free(b);
        return;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int accepted = 0, bad_invariant = 0;
    for (int it = 0; it < 1500; it++) {
        memcpy(b, orig, n);
        size_t len = n;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int flips = 1 + (int)(x % 4);
        for (int k = 0; k < flips; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            b[(x >> 8) % n] = (uint8_t)(x >> 40);
        }
        if (x % 7 == 0) len = (size_t)((x >> 20) % n);
        mvmoe_st_file f;
        if (mvmoe_st_parse(&f, b, len, "fuzz") == MVMOE_OK) {
            accepted++;
            uint64_t covered = 0;
            for (int i = 0; i < f.n_tensors; i++) covered += f.tensors[i].end - f.tensors[i].begin;
            bad_invariant += covered != f.size - f.data_start || f.data_start > f.size;
        } else {
            bad_invariant += !is_zeroed(&f);
        }
        mvmoe_st_close(&f);
    }
    CHECK(bad_invariant == 0, "fuzz: %d results broke invariants (%d accepted)", bad_invariant,
          accepted);
    free(orig);
    free(b);
}

/* Removes the scratch directory and whatever a failing check left in it (one level deep). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        char p[600];
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0) rmdir(p);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mvmoe_st_test_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);

    test_accepts();
    test_hostile();
    test_widening();
    test_roundtrip(path);
    test_i8(path);
    test_fuzz(path);
    test_open_failures(path);
    test_write_failures(path);

    remove_dir(g_dir);
    TEST_MAIN_END("test_safetensors");
}
