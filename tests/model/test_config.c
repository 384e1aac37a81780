/* Config JSON (the checkpoint's __metadata__ "config"): what the reader accepts and what it
 * refuses, with the message saying which key. Round trip first, then hostile texts built by
 * editing the round-trip text. */
#include <stdlib.h>
#include <string.h>

#include "mvmoe.h"
#include "test_util.h"

/* Parses json into a copy of base; returns the status and leaves the message in last_error. */
static mvmoe_status parse(const mvmoe_config *base, const char *json) {
    mvmoe_config c;
    if (mvmoe_config_copy(&c, base) != MVMOE_OK) return MVMOE_ERR_NOMEM;
    mvmoe_status s = mvmoe_config_from_json(&c, json, strlen(json));
    mvmoe_config_free(&c);
    return s;
}

static void expect_reject(const mvmoe_config *base, const char *what, const char *json,
                          const char *needle) {
    mvmoe_status s = parse(base, json);
    CHECK(s != MVMOE_OK, "%s: accepted", what);
    CHECK(s == MVMOE_OK || strstr(mvmoe_last_error(), needle), "%s: message '%s' lacks '%s'", what,
          mvmoe_last_error(), needle);
}

/* json with the first occurrence of `from` replaced by `to` (caller frees) */
static char *edit(const char *json, const char *from, const char *to) {
    const char *at = strstr(json, from);
    if (!at) return NULL;
    size_t n = strlen(json) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    if (!out) return NULL;
    snprintf(out, n, "%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
    return out;
}

int main(void) {
    mvmoe_config c;
    memset(&c, 0, sizeof c);
    CHECK(mvmoe_config_preset(&c, "vit-12x64") == MVMOE_OK, "preset: %s", mvmoe_last_error());
    char *json = NULL;
    CHECK(mvmoe_config_to_json(&c, &json) == MVMOE_OK && json, "to_json: %s", mvmoe_last_error());
    if (!json) TEST_MAIN_END("test_config");
    CHECK(parse(&c, json) == MVMOE_OK, "round trip rejected: %s", mvmoe_last_error());
    CHECK(strstr(json, "\"mean\":[") != NULL, "to_json writes mean as a list: %s", json);

    /* a repeated key: readers would disagree on which copy counts */
    char *dup = edit(json, "{", "{\"dim\":128,");
    CHECK(dup != NULL, "edit");
    if (dup) expect_reject(&c, "duplicate key", dup, "'dim' appears twice");
    free(dup);

    /* mean / std: a number, or one value per channel (in_chans = 1 here) */
    char *scalar = edit(json, "\"mean\":[", "\"mean\":0.25,\"x_mean\":[");
    CHECK(scalar && parse(&c, scalar) == MVMOE_OK, "scalar mean rejected: %s", mvmoe_last_error());
    free(scalar);
    char *two = edit(json, "\"mean\":[", "\"mean\":[0.5,");
    if (two) expect_reject(&c, "mean of 2 values for 1 channel", two, "'mean' has 2 values but in_chans is 1");
    free(two);
    char *none = edit(json, "\"std\":[", "\"std\":[],\"x_std\":[");
    if (none) expect_reject(&c, "empty std", none, "'std' has 0 values");
    free(none);
    char *str = edit(json, "\"std\":[", "\"std\":\"0.5\",\"x_std\":[");
    if (str) expect_reject(&c, "std as a string", str, "'std' must be a number or a list");
    free(str);

    free(json);
    mvmoe_config_free(&c);
    TEST_MAIN_END("test_config");
}
