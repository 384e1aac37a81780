/* PNG / JPEG decoding to RGB. JPEG errors longjmp out of libjpeg (its default handler calls
 * exit()), and a premature end of data counts as an error, as in Pillow, instead of silently
 * padding the image with gray. libpng's simplified API reports errors in png_image.message. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/file.h"
#include "core/status.h"
#include "data/imageio.h"

#define IMAGE_FILE_MAX_BYTES ((size_t)1 << 30)

static mvmoe_status check_dims(const char *path, long long w, long long h) {
    if (w <= 0 || h <= 0 || w * h > MVMOE_IMAGE_MAX_PIXELS) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "image %s is %lldx%lld; accepted sizes have 1 to %lld pixels",
                   path, w, h, (long long)MVMOE_IMAGE_MAX_PIXELS);
    }
    return MVMOE_OK;
}

/* A file cannot hold more pixels than its coding allows. Without these bounds 380 bytes that
 * declare 2052x55812 pixels made libjpeg decode 114 M pixels of garbage (22 s and ~450 MB in
 * the fuzz build; found by fuzz_image). Both bounds are lower bounds on the size of any valid
 * file, so no real image is refused:
 *  - Huffman-coded JPEG (baseline or progressive): every 8x8 block of a full-resolution
 *    component costs at least one bit (its DC symbol), so pixels <= 512 per byte; we allow
 *    4x that. Arithmetic coding can go below a bit per block and is not bounded here.
 *  - PNG: deflate expands at most 1032:1, and a row holds at least 1 + ceil(W/8) bytes (a
 *    filter byte and 1-bit pixels), so H·(1 + ceil(W/8)) <= 1032 per byte. */
#define JPEG_MAX_PIXELS_PER_BYTE 2048
#define DEFLATE_MAX_RATIO 1032

static mvmoe_status check_density(const char *path, const char *kind, long long w, long long h,
                                  long long need, long long cap, size_t len) {
    if (need > cap) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "%s %s declares %lldx%lld pixels but has only %zu bytes, "
                   "fewer than any valid file of that size; it is truncated or corrupt: "
                   "re-encode or remove it", kind, path, w, h, len);
    }
    return MVMOE_OK;
}

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(c);
    if (level < 0) c->err->num_warnings++; /* other corrupt-data warnings: keep decoding */
}

static void jpeg_on_output(j_common_ptr c) { (void)c; /* the library never prints */ }

static mvmoe_status decode_jpeg(const char *path, const uint8_t *data, size_t len, uint8_t **rgb,
                                int *w, int *h) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    uint8_t *volatile pix = NULL;
    uint8_t *volatile row = NULL;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    err.pub.output_message = jpeg_on_output;
    err.msg[0] = '\0';
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "corrupt JPEG %s: %s; re-encode or remove the file", path,
                   err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    mvmoe_status s = check_dims(path, cinfo.image_width, cinfo.image_height);
    if (s == MVMOE_OK && !cinfo.arith_code)
        s = check_density(path, "JPEG", cinfo.image_width, cinfo.image_height,
                          (long long)cinfo.image_width * cinfo.image_height,
                          (long long)len * JPEG_MAX_PIXELS_PER_BYTE, len);
    if (s != MVMOE_OK) {
        jpeg_destroy_decompress(&cinfo);
        return s;
    }
    /* libjpeg-turbo converts gray and YCbCr to RGB itself; CMYK/YCCK only to CMYK. */
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t W = cinfo.output_width, H = cinfo.output_height;
    pix = malloc(W * H * 3);
    if (cmyk) row = malloc(W * 4);
    if (!pix || (cmyk && !row)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zux%zu pixels for %s", W, H, path);
    }
    while (cinfo.output_scanline < H) {
        size_t y = cinfo.output_scanline;
        JSAMPROW r = cmyk ? row : pix + y * W * 3;
        jpeg_read_scanlines(&cinfo, &r, 1);
        if (cmyk) {
            /* Adobe writes inverted CMYK (APP14); then R = C*K/255, else (255-C)(255-K)/255. */
            int inv = cinfo.saw_Adobe_marker;
            uint8_t *o = pix + y * W * 3;
            for (size_t x = 0; x < W; x++) {
                int k = inv ? row[4 * x + 3] : 255 - row[4 * x + 3];
                for (int ch = 0; ch < 3; ch++) {
                    int v = inv ? row[4 * x + ch] : 255 - row[4 * x + ch];
                    o[3 * x + ch] = (uint8_t)((v * k + 127) / 255);
                }
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    *rgb = pix;
    *w = (int)W;
    *h = (int)H;
    return MVMOE_OK;
}

static mvmoe_status decode_png(const char *path, const uint8_t *data, size_t len, uint8_t **rgb,
                               int *w, int *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, len)) {
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "corrupt PNG %s: %s; re-encode or remove the file", path,
                   img.message);
    }
    mvmoe_status s = check_dims(path, img.width, img.height);
    if (s == MVMOE_OK)
        s = check_density(path, "PNG", img.width, img.height,
                          (long long)img.height * (1 + ((long long)img.width + 7) / 8),
                          (long long)len * DEFLATE_MAX_RATIO, len);
    if (s != MVMOE_OK) {
        png_image_free(&img);
        return s;
    }
    /* Read RGBA (8-bit RGBA is not premultiplied) and drop alpha, like PIL's convert("RGB"). */
    img.format = PNG_FORMAT_RGBA;
    size_t W = img.width, H = img.height;
    uint8_t *buf = malloc(W * H * 4);
    if (!buf) {
        png_image_free(&img);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zux%zu pixels for %s", W, H, path);
    }
    if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&img);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "corrupt PNG %s: %s; re-encode or remove the file", path,
                   img.message);
    }
    png_image_free(&img);
    for (size_t i = 0; i < W * H; i++) {
        buf[3 * i] = buf[4 * i];
        buf[3 * i + 1] = buf[4 * i + 1];
        buf[3 * i + 2] = buf[4 * i + 2];
    }
    *rgb = buf; /* the tail of the RGBA buffer stays allocated; freed with it */
    *w = (int)W;
    *h = (int)H;
    return MVMOE_OK;
}

mvmoe_status mvmoe_image_decode_rgb(const char *path, uint8_t **rgb, int *w, int *h) {
    char *raw = NULL;
    size_t len = 0;
    *rgb = NULL;
    MVMOE_TRY(mvmoe_file_read(path, "image", IMAGE_FILE_MAX_BYTES, &raw, &len));
    uint8_t *data = (uint8_t *)raw;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    mvmoe_status s;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
        s = decode_jpeg(path, data, len, rgb, w, h);
    } else if (len >= 8 && memcmp(data, png_sig, 8) == 0) {
        s = decode_png(path, data, len, rgb, w, h);
    } else {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s is neither a JPEG nor a PNG file (%zu bytes, starts with "
                            "%02x %02x %02x); convert or remove it", path, len,
                            len > 0 ? data[0] : 0, len > 1 ? data[1] : 0, len > 2 ? data[2] : 0);
    }
    free(data);
    return s;
}
