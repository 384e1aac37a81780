/* mvmoe info: a model's configuration and cost (parameters, FLOPs, tokens per image), read from
 * a checkpoint or a preset. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "mvmoe.h"

static const char SYNOPSIS[] = "usage: mvmoe info CKPT.safetensors | --preset NAME [--json]\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Prints a model's configuration (every field of the checkpoint's config), its\n"
           "parameter count, FLOPs per image (2 x multiply-adds of the forward pass) and tokens\n"
           "per image (patches + class token).\n\n"
           "  CKPT                a checkpoint (.safetensors)\n"
           "  --preset NAME       a preset instead ('mvmoe presets' lists them)\n"
           "  --json              print one JSON object instead of text\n"
           MVMOE_CLI_LOAD_FLAGS
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

typedef struct info_args {
    const char *ckpt, *preset;
    int json;
    mvmoe_cli_load load;
} info_args;

static int parse(info_args *in, int argc, char **argv) {
    memset(in, 0, sizeof *in);
    mvmoe_cli_load_init(&in->load);
    mvmoe_args a;
    mvmoe_args_init(&a, "info", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) {
            if (in->ckpt) return mvmoe_args_error(&a, "one checkpoint at a time (got '%s' and '%s')", in->ckpt, pos);
            in->ckpt = pos;
            continue;
        }
        if (mvmoe_cli_load_flag(&a, &in->load, &rc)) continue;
        if (mvmoe_args_is(&a, "--preset")) rc = mvmoe_args_str(&a, &in->preset);
        else if (mvmoe_args_is(&a, "--json")) { rc = mvmoe_args_switch(&a); in->json = 1; }
        else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (!in->ckpt == !in->preset)
        return mvmoe_args_error(&a, "give either a checkpoint or --preset NAME (exactly one)");
    if (in->preset && (in->load.n_mean || in->load.n_std || in->load.o.heads || in->load.o.img_size ||
                       in->load.o.adaptive_k > 0))
        return mvmoe_args_error(&a, "--img-size, --heads, --mean, --std and --adaptive-k apply to checkpoints, not to --preset");
    return mvmoe_cli_load_finish(&a, &in->load);
}

static int print_json(const info_args *in, const mvmoe_config *c) {
    char *cfg_text = NULL;
    if (mvmoe_config_to_json(c, &cfg_text) != MVMOE_OK) return mvmoe_cli_fail("info");
    cJSON *cfg = cJSON_Parse(cfg_text);
    free(cfg_text);
    cJSON *o = cJSON_CreateObject();
    int ok = cfg && o;
    if (ok) {
        ok &= (in->ckpt ? cJSON_AddStringToObject(o, "checkpoint", in->ckpt)
                        : cJSON_AddStringToObject(o, "preset", in->preset)) != NULL;
        ok &= cJSON_AddItemToObject(o, "config", cfg);
        if (ok) cfg = NULL; /* owned by o */
        ok &= cJSON_AddNumberToObject(o, "params", (double)mvmoe_config_num_params(c)) != NULL;
        ok &= cJSON_AddNumberToObject(o, "active_params", (double)mvmoe_config_active_params(c)) != NULL;
        ok &= cJSON_AddNumberToObject(o, "flops", mvmoe_config_flops(c)) != NULL;
        ok &= cJSON_AddNumberToObject(o, "tokens", mvmoe_config_tokens(c)) != NULL;
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(cfg);
    cJSON_Delete(o);
    if (!text) {
        fprintf(stderr, "mvmoe info: error: out of memory building the JSON output\n");
        return MVMOE_EXIT_FAIL;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

static int run(const info_args *in) {
    mvmoe_config preset;
    memset(&preset, 0, sizeof preset);
    mvmoe_model *m = NULL;
    const mvmoe_config *c;
    int rc = 0;
    if (in->preset) {
        if (mvmoe_config_preset(&preset, in->preset) != MVMOE_OK) {
            fprintf(stderr, "mvmoe info: invalid value '%s' for --preset: %s\n", in->preset, mvmoe_last_error());
            return MVMOE_EXIT_USAGE;
        }
        c = &preset;
    } else {
        /* Loading the weights just to read the config costs a second at most; it also proves
         * the file is whole. */
        if (mvmoe_model_load(&m, in->ckpt, &in->load.o) != MVMOE_OK) return mvmoe_cli_fail("info");
        c = mvmoe_model_config(m);
    }
    if (in->json) {
        rc = print_json(in, c);
    } else {
        if (in->ckpt) printf("checkpoint     %s\n", in->ckpt);
        else printf("preset         %s\n", in->preset);
        mvmoe_cli_print_config(stdout, c, 0);
    }
    mvmoe_config_free(&preset);
    if (m) mvmoe_model_free(m);
    return rc;
}

int mvmoe_cmd_info(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    info_args in;
    int rc = parse(&in, argc, argv);
    return rc ? rc : run(&in);
}
