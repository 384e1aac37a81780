/* The report's text buffer and SVG writer: escaping of every character that could inject
 * markup (names come from user files), UTF-8-safe truncation, tick placement, the colour
 * scale's ends, mean and sample std, and that drawn text never carries a raw '<' or '&'. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "test_util.h"

static void test_escape(void) {
    mvmoe_rtext t = {0};
    mvmoe_rtext_escape(&t, "a<b>&\"c'\n\x01z");
    CHECK(t.p && strcmp(t.p, "a&lt;b&gt;&amp;&quot;c&#39; ?z") == 0, "got '%s'", t.p ? t.p : "(null)");
    mvmoe_rtext_free(&t);

    /* 3 characters of a UTF-8 string: the cut falls between characters, then an ellipsis */
    mvmoe_rtext_escape_trunc(&t, "\xC3\x9C\x6E\xC3\xAF\x63\xC3\xB6", 3);
    CHECK(t.p && strcmp(t.p, "\xC3\x9C\x6E\xC3\xAF\xE2\x80\xA6") == 0, "got '%s'", t.p ? t.p : "(null)");
    mvmoe_rtext_free(&t);
    mvmoe_rtext_escape_trunc(&t, "a&b", 3); /* short enough: no ellipsis */
    CHECK(t.p && strcmp(t.p, "a&amp;b") == 0, "got '%s'", t.p ? t.p : "(null)");
    mvmoe_rtext_free(&t);
}

static void test_growth(void) {
    mvmoe_rtext t = {0};
    for (int i = 0; i < 100000; i++) mvmoe_rtext_printf(&t, "%05d|", i);
    CHECK(t.len == 600000 && strlen(t.p) == 600000, "len %zu", t.len);
    CHECK(strncmp(t.p + 6 * 99999, "99999|", 6) == 0, "tail '%s'", t.p + 6 * 99999);
    CHECK(mvmoe_rtext_status(&t, "test") == MVMOE_OK, "status");
    /* a printf longer than the small stack buffer */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    size_t before = t.len;
    mvmoe_rtext_printf(&t, "[%s]", big);
    CHECK(t.len == before + 2001 && t.p[t.len - 1] == ']', "len %zu", t.len - before);
    mvmoe_rtext_free(&t);
}

/* No '<' or '&' from the text reaches the output unescaped. */
static int only_escaped(const char *out, const char *needle_raw) { return strstr(out, needle_raw) == NULL; }

static void test_svg_text(void) {
    mvmoe_rtext t = {0};
    mvmoe_svg_begin(&t, "f", 100, 50, "A <title> & more", "desc \"quoted\"");
    mvmoe_svg_text(&t, 1, 2, "start", 12, -90, NULL, "Bag & <Purse>");
    mvmoe_svg_end(&t);
    CHECK(strstr(t.p, "<title id=\"f-t\">A &lt;title&gt; &amp; more</title>") != NULL, "%s", t.p);
    CHECK(strstr(t.p, "desc &quot;quoted&quot;") != NULL, "%s", t.p);
    CHECK(strstr(t.p, ">Bag &amp; &lt;Purse&gt;</text>") != NULL, "%s", t.p);
    CHECK(strstr(t.p, "rotate(-90.0 1.0 2.0)") != NULL, "%s", t.p);
    CHECK(only_escaped(t.p, "<Purse>") && only_escaped(t.p, "<title>"), "%s", t.p);
    mvmoe_rtext_free(&t);

    const char *labels[2] = {"x<y", "a&b"};
    double value[4] = {1, 0, 0.5, 0.5};
    int64_t count[4] = {10, 0, 3, 3};
    unsigned char after[2] = {1, 0};
    mvmoe_svg_heatmap h = {.left = 50, .top = 10, .cell = 30, .K = 2, .value = value, .count = count,
                           .show_counts = 1, .tips = 1, .labels = labels, .after_group = after};
    mvmoe_svg_heatmap_draw(&t, &h, "hm");
    CHECK(only_escaped(t.p, "x<y") && only_escaped(t.p, "a&b"), "%s", t.p);
    CHECK(strstr(t.p, "x&lt;y \xE2\x86\x92 a&amp;b: 0 (0.0%)") != NULL, "tooltip: %s", t.p);
    CHECK(strstr(t.p, ">10</text>") != NULL, "count text: %s", t.p);
    CHECK(strstr(t.p, "stroke=\"#E69F00\"") != NULL, "group boundary: %s", t.p);
    mvmoe_rtext_free(&t);
}

static void test_ticks(void) {
    double ticks[64];
    mvmoe_svg_axis a = {.lo = 0, .hi = 10};
    int n = mvmoe_svg_ticks(&a, ticks, 64);
    CHECK(n == 6 && ticks[0] == 0 && fabs(ticks[5] - 10) < 1e-12, "linear: %d ticks", n);
    mvmoe_svg_axis l = {.lo = 4, .hi = 120, .log = 1};
    n = mvmoe_svg_ticks(&l, ticks, 64);
    const double want[] = {5, 10, 20, 50, 100};
    CHECK(n == 5, "log: %d ticks", n);
    for (int i = 0; i < n && i < 5; i++) CHECK(fabs(ticks[i] - want[i]) < 1e-9, "log tick %d = %g", i, ticks[i]);
    mvmoe_svg_axis f = {.log = 1};
    mvmoe_svg_axis_fit(&f, 21.4, 21.4, 0.1, 1);
    CHECK(f.log && f.lo < 21.4 && f.hi > 21.4, "fit of one point: [%g, %g]", f.lo, f.hi);
    mvmoe_svg_axis z = {.log = 1};
    mvmoe_svg_axis_fit(&z, 0, 5, 0, 1); /* 0 cannot be on a log axis: linear */
    CHECK(!z.log && z.lo == 0 && z.hi == 5, "fit with 0: log %d [%g, %g]", z.log, z.lo, z.hi);
}

static void test_colors_and_stats(void) {
    char c[8];
    mvmoe_svg_seq_color(0, c);
    CHECK(strcmp(c, "#f7fbff") == 0, "low end %s", c);
    mvmoe_svg_seq_color(1, c);
    CHECK(strcmp(c, "#08306b") == 0, "high end %s", c);
    mvmoe_svg_seq_color(NAN, c);
    CHECK(strcmp(c, "#f7fbff") == 0, "NaN %s", c);
    CHECK(!mvmoe_svg_seq_dark(0.1) && mvmoe_svg_seq_dark(0.9), "text contrast switch");

    double v[4] = {1, 2, 3, NAN}, mean, std;
    int n = mvmoe_report_mean_std(v, 4, &mean, &std);
    CHECK(n == 3 && fabs(mean - 2) < 1e-15 && fabs(std - 1) < 1e-15, "n %d mean %g std %g", n, mean, std);
    n = mvmoe_report_mean_std(v, 1, &mean, &std);
    CHECK(n == 1 && mean == 1 && isnan(std), "one value: std %g", std);
}

int main(void) {
    test_escape();
    test_growth();
    test_svg_text();
    test_ticks();
    test_colors_and_stats();
    TEST_MAIN_END("test_svg");
}
