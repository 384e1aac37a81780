#include "common.h"

#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

int mvmoe_cli_verbose;

int mvmoe_cli_fail(const char *cmd) {
    const char *msg = mvmoe_last_error(), *where = mvmoe_last_error_where();
    /* an error every rank met alike (mismatched inputs, ...): rank 0 says it for all */
    const int together = mvmoe_dist_failed_together();
    if (together && mvmoe_dist_rank() != 0) return MVMOE_EXIT_FAIL;
    if (mvmoe_dist_size() > 1 && !together) /* under mpirun: which rank failed */
        fprintf(stderr, "mvmoe %s: rank %d: error: %s\n", cmd, mvmoe_dist_rank(), msg && *msg ? msg : "unknown failure");
    else
        fprintf(stderr, "mvmoe %s: error: %s\n", cmd, msg && *msg ? msg : "unknown failure");
    if (mvmoe_cli_verbose && where && *where) fprintf(stderr, "  (raised at %s)\n", where);
    return MVMOE_EXIT_FAIL;
}

int mvmoe_cli_fail_flag(const char *cmd, const char *flag) {
    const char *msg = mvmoe_last_error(), *where = mvmoe_last_error_where();
    if (mvmoe_dist_size() > 1)
        fprintf(stderr, "mvmoe %s: rank %d: error: %s: %s\n", cmd, mvmoe_dist_rank(), flag,
                msg && *msg ? msg : "unknown failure");
    else
        fprintf(stderr, "mvmoe %s: error: %s: %s\n", cmd, flag, msg && *msg ? msg : "unknown failure");
    if (mvmoe_cli_verbose && where && *where) fprintf(stderr, "  (raised at %s)\n", where);
    return MVMOE_EXIT_FAIL;
}

void mvmoe_cli_format_flops(double flops, char *buf, size_t cap) {
    if (flops >= 1e9)
        snprintf(buf, cap, "%.2f GFLOPs", flops / 1e9);
    else if (flops >= 1e6)
        snprintf(buf, cap, "%.2f MFLOPs", flops / 1e6);
    else
        snprintf(buf, cap, "%.2f kFLOPs", flops / 1e3);
}

/* 1234567 -> "1,234,567" */
static void format_count(size_t v, char *buf, size_t cap) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%zu", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

static void print_floats(FILE *f, const float *v, int n) {
    for (int i = 0; i < n; i++) fprintf(f, "%s%.4f", i ? ", " : "", v[i]);
}

/* Long class lists (ImageNet's 1000) are cut in the text form; --json prints them all. */
#define MAX_NAMES_SHOWN 20

void mvmoe_cli_print_config(FILE *f, const mvmoe_config *c, int compact) {
    char params[48], flops[48];
    size_t np = mvmoe_config_num_params(c);
    format_count(np, params, sizeof params);
    mvmoe_cli_format_flops(mvmoe_config_flops(c), flops, sizeof flops);
    int chans = c->in_chans > 0 && c->in_chans <= MVMOE_MAX_CHANNELS ? c->in_chans : 0;
    if (compact) {
        fprintf(f, "model: %dx%d x%d, patch %d, dim %d, depth %d, heads %d, mlp %d, %d classes, routing %s",
                c->img_size, c->img_size, c->in_chans, c->patch, c->dim, c->depth, c->heads,
                c->mlp_dim, c->num_classes, mvmoe_routing_name(c->routing));
        if (c->routing != MVMOE_ROUTING_DENSE)
            fprintf(f, " (%d experts, top-%d, %d MoE layers)", c->experts, c->top_k, c->moe_layers);
        fprintf(f, "\n       %s parameters (%.2f M), %s per image, %d tokens per image\n", params,
                (double)np / 1e6, flops, mvmoe_config_tokens(c));
        fprintf(f, "       mean ");
        print_floats(f, c->mean, chans);
        fprintf(f, "  std ");
        print_floats(f, c->std, chans);
        fprintf(f, "\n");
        return;
    }
    fprintf(f, "img_size       %d\n", c->img_size);
    fprintf(f, "in_chans       %d\n", c->in_chans);
    fprintf(f, "patch          %d\n", c->patch);
    fprintf(f, "dim            %d\n", c->dim);
    fprintf(f, "depth          %d\n", c->depth);
    fprintf(f, "heads          %d\n", c->heads);
    fprintf(f, "mlp_dim        %d\n", c->mlp_dim);
    fprintf(f, "num_classes    %d\n", c->num_classes);
    fprintf(f, "routing        %s\n", mvmoe_routing_name(c->routing));
    fprintf(f, "experts        %d\n", c->experts);
    fprintf(f, "top_k          %d\n", c->top_k);
    fprintf(f, "moe_layers     %d\n", c->moe_layers);
    fprintf(f, "mean           ");
    print_floats(f, c->mean, chans);
    fprintf(f, "\nstd            ");
    print_floats(f, c->std, chans);
    fprintf(f, "\nclass_names    ");
    if (!c->class_names) {
        fprintf(f, "(none)");
    } else {
        for (int i = 0; i < c->num_classes && i < MAX_NAMES_SHOWN; i++)
            fprintf(f, "%s%s", i ? ", " : "", c->class_names[i] ? c->class_names[i] : "?");
        if (c->num_classes > MAX_NAMES_SHOWN)
            fprintf(f, ", ... (%d more; --json lists all)", c->num_classes - MAX_NAMES_SHOWN);
    }
    fprintf(f, "\nsuperclass_of  ");
    if (!c->superclass_of) {
        fprintf(f, "(none)");
    } else {
        for (int i = 0; i < c->num_classes && i < MAX_NAMES_SHOWN; i++)
            fprintf(f, "%s%d", i ? ", " : "", c->superclass_of[i]);
        if (c->num_classes > MAX_NAMES_SHOWN)
            fprintf(f, ", ... (%d more; --json lists all)", c->num_classes - MAX_NAMES_SHOWN);
    }
    fprintf(f, "\nparameters     %s (%.2f M)\n", params, (double)np / 1e6);
    if (c->routing != MVMOE_ROUTING_DENSE) {
        char active[48];
        format_count(mvmoe_config_active_params(c), active, sizeof active);
        fprintf(f, "active params  %s per image (top-%d of %d experts in %d MoE blocks)\n", active,
                c->top_k, c->experts, c->moe_layers);
    }
    fprintf(f, "flops          %s per image (router included)\n", flops);
    fprintf(f, "tokens         %d per image\n", mvmoe_config_tokens(c));
    /* the paper's x-axis: what each routing mode costs at this shape */
    int E = c->experts > 0 ? c->experts : 4, k = c->top_k > 0 && c->experts > 0 ? c->top_k : 1;
    int L = c->moe_layers > 0 ? c->moe_layers : (c->depth > 2 ? 2 : 1);
    if (L >= c->depth) L = c->depth - 1;
    if (L < 1) return;
    fprintf(f, "\nby routing mode at this shape (E %d, k %d, L %d):\n  %-17s %14s %14s %12s\n", E, k,
            L, "routing", "params", "active/image", "FLOPs/image");
    for (int r = 0; r < 4; r++) {
        mvmoe_config v = *c;
        v.class_names = NULL;
        v.superclass_of = NULL;
        v.routing = (mvmoe_routing)r;
        v.experts = r ? E : 0;
        v.top_k = r ? k : 1;
        v.moe_layers = r ? L : 0;
        if (mvmoe_config_validate(&v) != MVMOE_OK) continue;
        char a1[48], a2[48], a3[48];
        format_count(mvmoe_config_num_params(&v), a1, sizeof a1);
        format_count(mvmoe_config_active_params(&v), a2, sizeof a2);
        mvmoe_cli_format_flops(mvmoe_config_flops(&v), a3, sizeof a3);
        fprintf(f, "  %-17s %14s %14s %12s\n", mvmoe_routing_name(v.routing), a1, a2, a3);
    }
}

int mvmoe_cli_is_image_folder(const char *dir, const char *split) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, split);
    if (n < 0 || (size_t)n >= sizeof path) return 0;
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void mvmoe_cli_load_init(mvmoe_cli_load *l) { memset(l, 0, sizeof *l); }

int mvmoe_cli_load_flag(mvmoe_args *a, mvmoe_cli_load *l, int *rc) {
    if (mvmoe_args_is(a, "--img-size")) {
        *rc = mvmoe_args_int(a, 1, 8192, &l->o.img_size);
    } else if (mvmoe_args_is(a, "--heads")) {
        *rc = mvmoe_args_int(a, 1, 4096, &l->o.heads);
    } else if (mvmoe_args_is(a, "--mean")) {
        *rc = mvmoe_args_floats(a, 0.0, 1.0, MVMOE_MAX_CHANNELS, l->o.mean, &l->n_mean);
    } else if (mvmoe_args_is(a, "--adaptive-k")) {
        *rc = mvmoe_args_float(a, 0.0, 1.0, 1, &l->o.adaptive_k);
    } else if (mvmoe_args_is(a, "--std")) {
        /* a std of 0 would divide by zero when normalizing */
        *rc = mvmoe_args_floats(a, 1e-6, 1e6, MVMOE_MAX_CHANNELS, l->o.std, &l->n_std);
    } else {
        return 0;
    }
    return 1;
}

int mvmoe_cli_load_finish(const mvmoe_args *a, mvmoe_cli_load *l) {
    if (l->n_mean != l->n_std)
        return mvmoe_args_error(a, "--mean has %d values but --std has %d: give one per channel to both",
                                l->n_mean, l->n_std);
    l->o.in_chans_mean_std = l->n_mean;
    return 0;
}

/* ---------------------------------------------------------------- model-shape flags */

const mvmoe_cli_int_flag *mvmoe_cli_int_flag_parse(mvmoe_args *a, const mvmoe_cli_int_flag *table,
                                                   size_t n, void *base, int *rc) {
    for (size_t k = 0; k < n; k++)
        if (mvmoe_args_is(a, table[k].flag)) {
            *rc = mvmoe_args_int(a, table[k].lo, table[k].hi, (int *)((char *)base + table[k].offset));
            return &table[k];
        }
    return NULL;
}

static const mvmoe_cli_int_flag shape_flags[] = {
    {"--img-size", offsetof(mvmoe_cli_shape, img_size), 1, 4096},
    {"--in-chans", offsetof(mvmoe_cli_shape, in_chans), 1, MVMOE_MAX_CHANNELS},
    {"--classes", offsetof(mvmoe_cli_shape, classes), 1, 100000},
    {"--patch", offsetof(mvmoe_cli_shape, patch), 1, 4096},
    {"--dim", offsetof(mvmoe_cli_shape, dim), 1, 16384},
    {"--depth", offsetof(mvmoe_cli_shape, depth), 1, 256},
    {"--heads", offsetof(mvmoe_cli_shape, heads), 1, 16384},
    {"--mlp-dim", offsetof(mvmoe_cli_shape, mlp_dim), 1, 65536},
    {"--experts", offsetof(mvmoe_cli_shape, experts), 0, 1024},
    {"--top-k", offsetof(mvmoe_cli_shape, top_k), 1, 1024},
    {"--moe-layers", offsetof(mvmoe_cli_shape, moe_layers), 0, 256},
};

void mvmoe_cli_shape_init(mvmoe_cli_shape *s) {
    for (size_t k = 0; k < sizeof shape_flags / sizeof shape_flags[0]; k++)
        *(int *)((char *)s + shape_flags[k].offset) = -1;
}

int mvmoe_cli_shape_flag(mvmoe_args *a, mvmoe_cli_shape *s, int with_classes, int *rc) {
    /* train takes the class count from its data: there --classes is no flag */
    if (!with_classes && mvmoe_args_is(a, "--classes")) return 0;
    return mvmoe_cli_int_flag_parse(a, shape_flags, sizeof shape_flags / sizeof shape_flags[0], s, rc) != NULL;
}

int mvmoe_cli_shape_given(const mvmoe_cli_shape *s, int with_img_size) {
    int given = 0;
    for (size_t k = 0; k < sizeof shape_flags / sizeof shape_flags[0]; k++)
        if (with_img_size || shape_flags[k].offset != offsetof(mvmoe_cli_shape, img_size))
            given |= *(const int *)((const char *)s + shape_flags[k].offset) >= 0;
    return given;
}

void mvmoe_cli_shape_apply_sizes(const mvmoe_cli_shape *s, mvmoe_config *c) {
    if (s->img_size > 0) c->img_size = s->img_size;
    if (s->in_chans > 0) c->in_chans = s->in_chans;
    if (s->classes > 0) c->num_classes = s->classes;
    if (s->patch > 0) c->patch = s->patch;
    if (s->dim > 0) c->dim = s->dim;
    if (s->depth > 0) c->depth = s->depth;
    if (s->heads > 0) c->heads = s->heads;
    if (s->mlp_dim > 0) c->mlp_dim = s->mlp_dim;
}

void mvmoe_cli_shape_apply_moe(const mvmoe_cli_shape *s, mvmoe_config *c) {
    if (s->experts >= 0) c->experts = s->experts;
    if (s->top_k > 0) c->top_k = s->top_k;
    if (s->moe_layers >= 0) c->moe_layers = s->moe_layers;
}
