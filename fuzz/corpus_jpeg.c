/* Writes the JPEG seeds of the image harness (fuzz/make_corpus.sh builds and runs it):
 * small baseline RGB, gray, progressive, 4:4:4, restart-marker and CMYK (Adobe) files, each
 * followed by one extra byte that the harness reads as its output choice.
 * Usage: corpus_jpeg OUT_DIR */
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

static int write_jpeg(const char *dir, const char *name, int w, int h, int comps,
                      J_COLOR_SPACE cs, int progressive, int restart, int full_chroma,
                      unsigned char tail) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 80, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    c.restart_in_rows = restart;
    if (full_chroma && comps == 3) c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)w * comps);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w * comps; x++) row[x] = (unsigned char)(x * 37 + y * 11);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    fputc(tail, f);
    return fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: corpus_jpeg OUT_DIR\n");
        return 2;
    }
    const char *d = argv[1];
    int bad = 0;
    bad |= write_jpeg(d, "rgb_baseline.jpg", 9, 6, 3, JCS_RGB, 0, 0, 0, 0x03);
    bad |= write_jpeg(d, "gray.jpg", 5, 7, 1, JCS_GRAYSCALE, 0, 0, 0, 0x02);
    bad |= write_jpeg(d, "rgb_progressive.jpg", 11, 5, 3, JCS_RGB, 1, 0, 0, 0x05);
    bad |= write_jpeg(d, "rgb_444_restart.jpg", 16, 9, 3, JCS_RGB, 0, 1, 1, 0x07);
    bad |= write_jpeg(d, "cmyk_adobe.jpg", 4, 4, 4, JCS_CMYK, 0, 0, 0, 0x01);
    return bad ? 1 : 0;
}
