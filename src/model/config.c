/* Model configuration: presets, validation, the contract's config JSON, FLOP counts (the
 * parameter counts are the parameter arena's: layout.c). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static const char *const routing_names[] = {"dense", "image-superclass", "image-learned",
                                            "token-learned"};

const char *mvmoe_routing_name(mvmoe_routing r) {
    return (unsigned)r < 4 ? routing_names[r] : "unknown";
}

mvmoe_status mvmoe_routing_parse(const char *name, mvmoe_routing *out) {
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, routing_names[i]) == 0) {
            *out = (mvmoe_routing)i;
            return MVMOE_OK;
        }
    MVMOE_FAIL(MVMOE_ERR_INVALID,
               "unknown routing '%s'; use dense, image-superclass, image-learned or token-learned",
               name ? name : "(null)");
}

/* The paper's widths (Daxberger et al. 2023, Sec. 4: 12 layers, widths 64..384) on 28x28
 * Fashion-MNIST with 4x4 patches, and ViT-Tiny/16 at 224. Heads: 64-dim heads where the
 * width allows (>= 192, as ViT-Tiny/Small), otherwise 4 heads so attention keeps several
 * subspaces; MLP ratio 4. docs/MODELS.md holds the same table. */
typedef struct {
    const char *name;
    int img, chans, patch, dim, depth, heads, mlp, classes;
    const char *desc;
} preset;

static const preset presets[] = {
    {"vit-12x64", 28, 1, 4, 64, 12, 4, 256, 10, "12 layers x 64 wide, 4 heads of 16, 28x28/4"},
    {"vit-12x96", 28, 1, 4, 96, 12, 4, 384, 10, "12 layers x 96 wide, 4 heads of 24, 28x28/4"},
    {"vit-12x128", 28, 1, 4, 128, 12, 4, 512, 10, "12 layers x 128 wide, 4 heads of 32, 28x28/4"},
    {"vit-12x192", 32, 3, 4, 192, 12, 3, 768, 10, "12 layers x 192 wide, 3 heads of 64, 32x32x3/4"},
    {"vit-12x256", 28, 1, 4, 256, 12, 4, 1024, 10, "12 layers x 256 wide, 4 heads of 64, 28x28/4"},
    {"vit-12x384", 28, 1, 4, 384, 12, 6, 1536, 10, "12 layers x 384 wide, 6 heads of 64, 28x28/4"},
    {"vit-tiny16-224", 224, 3, 16, 192, 12, 3, 768, 1000,
     "ViT-Tiny/16 at 224x224x3 (timm vit_tiny_patch16_224), 1000 classes"},
    {"vit-test-tiny", 8, 1, 4, 16, 2, 2, 32, 10, "2 layers x 16 wide, for tests"},
};

const char *mvmoe_preset_list(void) {
    static char buf[2048];
    if (!buf[0]) {
        size_t off = 0;
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
            off += (size_t)snprintf(buf + off, sizeof buf - off, "%-16s %s\n", presets[i].name,
                                    presets[i].desc);
    }
    return buf;
}

mvmoe_status mvmoe_config_preset(mvmoe_config *c, const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const preset *p = &presets[i];
        if (strcmp(name, p->name) != 0) continue;
        memset(c, 0, sizeof *c);
        c->img_size = p->img;
        c->in_chans = p->chans;
        c->patch = p->patch;
        c->dim = p->dim;
        c->depth = p->depth;
        c->heads = p->heads;
        c->mlp_dim = p->mlp;
        c->num_classes = p->classes;
        c->routing = MVMOE_ROUTING_DENSE;
        c->top_k = 1;
        for (int k = 0; k < MVMOE_MAX_CHANNELS; k++) {
            c->mean[k] = 0.5f;
            c->std[k] = 0.5f;
        }
        return MVMOE_OK;
    }
    MVMOE_FAIL(MVMOE_ERR_INVALID, "unknown preset '%s'; 'mvmoe presets' lists them", name);
}

mvmoe_status mvmoe_config_validate(const mvmoe_config *c) {
#define REQUIRE(cond, ...) \
    if (!(cond)) MVMOE_FAIL(MVMOE_ERR_INVALID, "invalid model config: " __VA_ARGS__)
    REQUIRE(c->img_size > 0 && c->img_size <= 4096, "img_size %d not in 1..4096", c->img_size);
    REQUIRE(c->in_chans >= 1 && c->in_chans <= MVMOE_MAX_CHANNELS, "in_chans %d not in 1..%d",
            c->in_chans, MVMOE_MAX_CHANNELS);
    REQUIRE(c->patch > 0 && c->img_size % c->patch == 0, "patch %d must divide img_size %d",
            c->patch, c->img_size);
    REQUIRE(c->dim > 0 && c->dim <= 16384, "dim %d not in 1..16384", c->dim);
    REQUIRE(c->depth > 0 && c->depth <= 256, "depth %d not in 1..256", c->depth);
    REQUIRE(c->heads > 0 && c->dim % c->heads == 0, "heads %d must divide dim %d", c->heads,
            c->dim);
    REQUIRE(c->mlp_dim > 0 && c->mlp_dim <= 65536, "mlp_dim %d not in 1..65536", c->mlp_dim);
    REQUIRE(c->num_classes >= 1 && c->num_classes <= 100000, "num_classes %d not in 1..100000",
            c->num_classes);
    REQUIRE((unsigned)c->routing < 4, "routing %d unknown", (int)c->routing);
    int tokens_side = c->img_size / c->patch;
    REQUIRE(tokens_side <= 256, "%d x %d patches is too many", tokens_side, tokens_side);
    for (int k = 0; k < c->in_chans; k++) {
        REQUIRE(isfinite(c->mean[k]), "mean[%d] is not finite", k);
        REQUIRE(isfinite(c->std[k]) && c->std[k] > 0, "std[%d] = %g must be > 0", k,
                (double)c->std[k]);
    }
    if (c->routing == MVMOE_ROUTING_DENSE) {
        REQUIRE(c->experts == 0 && c->moe_layers == 0,
                "routing dense needs experts = 0 and moe_layers = 0 (got %d, %d)", c->experts,
                c->moe_layers);
    } else {
        REQUIRE(c->experts >= 1 && c->experts <= 1024, "experts %d not in 1..1024", c->experts);
        REQUIRE(c->top_k >= 1 && c->top_k <= c->experts && c->top_k <= 64,
                "top_k %d must be in 1..experts (%d) and at most 64", c->top_k, c->experts);
        REQUIRE(c->moe_layers >= 1 && c->moe_layers <= c->depth,
                "moe_layers %d must be in 1..depth (%d)", c->moe_layers, c->depth);
        REQUIRE(c->routing == MVMOE_ROUTING_TOKEN_LEARNED || c->moe_layers < c->depth,
                "per-image routing reads the class token after the last dense block, so "
                "moe_layers (%d) must be < depth (%d)",
                c->moe_layers, c->depth);
    }
    if (c->superclass_of) {
        for (int k = 0; k < c->num_classes; k++)
            REQUIRE(c->superclass_of[k] >= 0 && (c->experts == 0 || c->superclass_of[k] < c->experts),
                    "superclass_of[%d] = %d out of range (experts %d)", k, c->superclass_of[k],
                    c->experts);
    }
#undef REQUIRE
    return MVMOE_OK;
}

int mvmoe_config_tokens(const mvmoe_config *c) {
    int g = c->img_size / c->patch;
    return 1 + g * g;
}

double mvmoe_config_flops(const mvmoe_config *c) {
    /* 2 FLOPs per multiply-add of every matmul; norms, softmax and GELU are not counted
     * (the usual convention, as in the paper's FLOP axis). */
    double T = mvmoe_config_tokens(c), N = T - 1, D = c->dim, H = c->mlp_dim;
    double P2C = (double)c->patch * c->patch * c->in_chans;
    double f = 2 * N * P2C * D;
    double attn = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D;
    double mlp = 2 * 2 * T * D * H;
    int L = c->routing == MVMOE_ROUTING_DENSE ? 0 : c->moe_layers;
    f += c->depth * attn + (c->depth - L) * mlp;
    if (L > 0) {
        f += (double)L * c->top_k * mlp;
        if (c->routing == MVMOE_ROUTING_TOKEN_LEARNED)
            f += (double)L * 2 * T * D * c->experts;
        else
            f += 2 * D * c->experts;
    }
    f += 2 * D * c->num_classes;
    return f;
}

/* ---------------------------------------------------------------- ownership */
void mvmoe_config_free(mvmoe_config *c) {
    if (c->class_names) {
        for (int k = 0; k < c->num_classes; k++) free(c->class_names[k]);
        free(c->class_names);
    }
    free(c->superclass_of);
    c->class_names = NULL;
    c->superclass_of = NULL;
}

mvmoe_status mvmoe_config_set_class_names(mvmoe_config *c, const char *const *names, int n) {
    if (n != c->num_classes)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%d class names given for %d classes", n, c->num_classes);
    char **copy;
    MVMOE_ALLOC(copy, n > 0 ? n : 1, "class names");
    for (int k = 0; k < n; k++) {
        copy[k] = strdup(names[k] ? names[k] : "");
        if (!copy[k]) {
            for (int j = 0; j < k; j++) free(copy[j]);
            free(copy);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "copying class names");
        }
    }
    if (c->class_names) {
        for (int k = 0; k < c->num_classes; k++) free(c->class_names[k]);
        free(c->class_names);
    }
    c->class_names = copy;
    return MVMOE_OK;
}

mvmoe_status mvmoe_config_copy(mvmoe_config *dst, const mvmoe_config *src) {
    *dst = *src;
    dst->class_names = NULL;
    dst->superclass_of = NULL;
    if (src->class_names)
        MVMOE_TRY(mvmoe_config_set_class_names(dst, (const char *const *)src->class_names,
                                               src->num_classes));
    if (src->superclass_of) {
        MVMOE_ALLOC(dst->superclass_of, src->num_classes, "superclass map");
        memcpy(dst->superclass_of, src->superclass_of, sizeof(int) * (size_t)src->num_classes);
    }
    return MVMOE_OK;
}

/* ---------------------------------------------------------------- JSON */
mvmoe_status mvmoe_config_to_json(const mvmoe_config *c, char **json) {
    cJSON *o = cJSON_CreateObject();
    if (!o) MVMOE_FAIL(MVMOE_ERR_NOMEM, "creating config JSON");
    cJSON_AddNumberToObject(o, "img_size", c->img_size);
    cJSON_AddNumberToObject(o, "in_chans", c->in_chans);
    cJSON_AddNumberToObject(o, "patch", c->patch);
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "depth", c->depth);
    cJSON_AddNumberToObject(o, "heads", c->heads);
    cJSON_AddNumberToObject(o, "mlp_dim", c->mlp_dim);
    cJSON_AddNumberToObject(o, "num_classes", c->num_classes);
    cJSON_AddStringToObject(o, "routing", mvmoe_routing_name(c->routing));
    cJSON_AddNumberToObject(o, "experts", c->experts);
    cJSON_AddNumberToObject(o, "top_k", c->top_k);
    cJSON_AddNumberToObject(o, "moe_layers", c->moe_layers);
    double mean[MVMOE_MAX_CHANNELS], std[MVMOE_MAX_CHANNELS];
    for (int k = 0; k < c->in_chans && k < MVMOE_MAX_CHANNELS; k++) {
        mean[k] = c->mean[k];
        std[k] = c->std[k];
    }
    cJSON_AddItemToObject(o, "mean", cJSON_CreateDoubleArray(mean, c->in_chans));
    cJSON_AddItemToObject(o, "std", cJSON_CreateDoubleArray(std, c->in_chans));
    if (c->class_names)
        cJSON_AddItemToObject(
            o, "class_names",
            cJSON_CreateStringArray((const char *const *)c->class_names, c->num_classes));
    if (c->superclass_of)
        cJSON_AddItemToObject(o, "superclass_of",
                              cJSON_CreateIntArray(c->superclass_of, c->num_classes));
    *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!*json) MVMOE_FAIL(MVMOE_ERR_NOMEM, "printing config JSON");
    return MVMOE_OK;
}

static mvmoe_status get_int(const cJSON *o, const char *key, int *out, int required) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) {
        if (required) MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: missing integer field '%s'", key);
        return MVMOE_OK;
    }
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(v >= -1e9 && v <= 1e9) || v != floor(v))
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: field '%s' must be an integer", key);
    *out = (int)v;
    return MVMOE_OK;
}

static mvmoe_status get_floats(const cJSON *o, const char *key, float *out, int max, int channels) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return MVMOE_OK;
    if (cJSON_IsNumber(it)) { /* a scalar applies to every channel */
        for (int k = 0; k < max; k++) out[k] = (float)it->valuedouble;
        return MVMOE_OK;
    }
    /* one value per input channel: a list of another length is a config for other data */
    if (!cJSON_IsArray(it))
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: '%s' must be a number or a list of %d numbers "
                   "(one per input channel)", key, channels);
    if (cJSON_GetArraySize(it) != channels)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: '%s' has %d values but in_chans is %d; it "
                   "needs one per input channel", key, cJSON_GetArraySize(it), channels);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: '%s'[%d] is not a finite number", key, n);
        out[n++] = (float)e->valuedouble;
    }
    for (int k = n; k < max; k++) out[k] = out[n - 1];
    return MVMOE_OK;
}

static mvmoe_status parse_object(mvmoe_config *c, const cJSON *o) {
    if (!cJSON_IsObject(o)) MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON is not an object");
    /* cJSON keeps both copies of a repeated key and lookups see the first: which one "wins"
     * would differ between readers, so a repeated key is an error */
    for (const cJSON *a = o->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: the key '%.100s' appears twice; each "
                           "key must appear once", a->string);
    MVMOE_TRY(get_int(o, "img_size", &c->img_size, 1));
    MVMOE_TRY(get_int(o, "in_chans", &c->in_chans, 1));
    MVMOE_TRY(get_int(o, "patch", &c->patch, 1));
    MVMOE_TRY(get_int(o, "dim", &c->dim, 1));
    MVMOE_TRY(get_int(o, "depth", &c->depth, 1));
    MVMOE_TRY(get_int(o, "heads", &c->heads, 1));
    MVMOE_TRY(get_int(o, "mlp_dim", &c->mlp_dim, 1));
    int old_classes = c->num_classes;
    MVMOE_TRY(get_int(o, "num_classes", &c->num_classes, 1));
    if (c->num_classes != old_classes) {
        /* names / a map kept from before have old_classes entries: they no longer fit (and
         * freeing them by the new count would overrun them) */
        int k = c->num_classes;
        c->num_classes = old_classes;
        mvmoe_config_free(c);
        c->num_classes = k;
    }
    MVMOE_TRY(get_int(o, "experts", &c->experts, 0));
    MVMOE_TRY(get_int(o, "top_k", &c->top_k, 0));
    MVMOE_TRY(get_int(o, "moe_layers", &c->moe_layers, 0));
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "routing");
    if (r) {
        if (!cJSON_IsString(r)) MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: 'routing' must be a string");
        MVMOE_TRY(mvmoe_routing_parse(r->valuestring, &c->routing));
    }
    if (c->in_chans < 1 || c->in_chans > MVMOE_MAX_CHANNELS)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: in_chans %d not in 1..%d", c->in_chans,
                   MVMOE_MAX_CHANNELS);
    MVMOE_TRY(get_floats(o, "mean", c->mean, MVMOE_MAX_CHANNELS, c->in_chans));
    MVMOE_TRY(get_floats(o, "std", c->std, MVMOE_MAX_CHANNELS, c->in_chans));
    if (c->num_classes < 1 || c->num_classes > 100000)
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: num_classes %d not in 1..100000", c->num_classes);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(o, "class_names");
    if (names && !cJSON_IsNull(names)) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != c->num_classes)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "config JSON: 'class_names' must be an array of num_classes (%d) strings",
                       c->num_classes);
        const char **tmp;
        MVMOE_ALLOC(tmp, c->num_classes, "class names");
        int k = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, names) {
            if (!cJSON_IsString(e)) {
                free(tmp);
                MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: class_names[%d] is not a string", k);
            }
            tmp[k++] = e->valuestring;
        }
        mvmoe_status s = mvmoe_config_set_class_names(c, tmp, c->num_classes);
        free(tmp);
        MVMOE_TRY(s);
    }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "superclass_of");
    if (sc && !cJSON_IsNull(sc)) {
        if (!cJSON_IsArray(sc) || cJSON_GetArraySize(sc) != c->num_classes)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "config JSON: 'superclass_of' must be an array of num_classes (%d) integers",
                       c->num_classes);
        int *map;
        MVMOE_ALLOC(map, c->num_classes, "superclass map");
        int k = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, sc) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
                e->valuedouble < 0 || e->valuedouble > 1e6) {
                free(map);
                MVMOE_FAIL(MVMOE_ERR_FORMAT, "config JSON: superclass_of[%d] is not a class index", k);
            }
            map[k++] = (int)e->valuedouble;
        }
        free(c->superclass_of);
        c->superclass_of = map;
    }
    return MVMOE_OK;
}

mvmoe_status mvmoe_config_from_json(mvmoe_config *c, const char *json, size_t len) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o) MVMOE_FAIL(MVMOE_ERR_FORMAT, "config metadata is not valid JSON");
    /* parsed into a copy, so that a text rejected halfway leaves c as it was */
    mvmoe_config t;
    mvmoe_status s = mvmoe_config_copy(&t, c);
    if (s == MVMOE_OK) s = parse_object(&t, o);
    cJSON_Delete(o);
    if (s == MVMOE_OK) s = mvmoe_config_validate(&t);
    if (s != MVMOE_OK) {
        mvmoe_config_free(&t);
        return s;
    }
    mvmoe_config_free(c);
    *c = t;
    return MVMOE_OK;
}
