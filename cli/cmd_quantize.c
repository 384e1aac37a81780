/* mvmoe quantize: an fp32 checkpoint as an int8 one (mvmoe_model_save_int8;
 * docs/CHECKPOINT_FORMAT.md, "int8 checkpoints"; docs/EDGE.md, "int8"). */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "mvmoe.h"

static const char SYNOPSIS[] =
    "usage: mvmoe quantize --model M.safetensors --out Q.safetensors\n"
    "                      [--heads N --mean a,b,c --std a,b,c --img-size N]\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Writes the checkpoint with the weights of the linear layers (patch embedding, qkv,\n"
           "proj, fc1, fc2, every expert's fc1/fc2) as int8, symmetric per output channel, each\n"
           "with an F32 scale tensor '<name>_scale'; the routers, the head, norms, biases and\n"
           "embeddings stay F32. About 4x smaller. eval, predict and info read it; run it with\n"
           "--precision int8 to compute in int8 (docs/EDGE.md, \"int8\").\n\n"
           "  --model M            checkpoint to quantize (.safetensors: ours, or a plain timm ViT)\n"
           "  --out Q              the int8 checkpoint to write (atomically: temporary file, rename)\n"
           "  --img-size N        quantize at this image size (position embeddings resampled)\n"
           "  --heads N           attention heads, for plain timm checkpoints (no config inside)\n"
           "  --mean a,b,c        per-channel input mean (0..1), for plain timm checkpoints\n"
           "  --std a,b,c         per-channel input std, for plain timm checkpoints\n"
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

typedef struct quantize_args {
    const char *model, *out;
    mvmoe_cli_load load;
} quantize_args;

static int parse(quantize_args *q, int argc, char **argv) {
    memset(q, 0, sizeof *q);
    mvmoe_cli_load_init(&q->load);
    mvmoe_args a;
    mvmoe_args_init(&a, "quantize", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give the checkpoint with --model and the output with --out)", pos);
        if (mvmoe_args_is(&a, "--adaptive-k"))
            return mvmoe_args_error(&a, "--adaptive-k is an inference option, not part of a checkpoint: give it to eval or predict");
        if (mvmoe_cli_load_flag(&a, &q->load, &rc)) continue;
        if (mvmoe_args_is(&a, "--model")) rc = mvmoe_args_str(&a, &q->model);
        else if (mvmoe_args_is(&a, "--out")) rc = mvmoe_args_str(&a, &q->out);
        else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (!q->model) return mvmoe_args_error(&a, "--model M.safetensors is required");
    if (!q->out) return mvmoe_args_error(&a, "--out Q.safetensors is required");
    return mvmoe_cli_load_finish(&a, &q->load);
}

static int run(const quantize_args *q) {
    if (mvmoe_output_check(q->out, "--out") != MVMOE_OK) return mvmoe_cli_fail("quantize");
    mvmoe_model *m = NULL;
    if (mvmoe_model_load(&m, q->model, &q->load.o) != MVMOE_OK) return mvmoe_cli_fail_flag("quantize", "--model");
    int rc = 0;
    if (mvmoe_model_save_int8(m, q->out) != MVMOE_OK) rc = mvmoe_cli_fail("quantize");
    else printf("wrote '%s': int8 weights per output channel (%s)\n", q->out, MVMOE_INT8_QUANTIZATION);
    mvmoe_model_free(m);
    return rc;
}

int mvmoe_cmd_quantize(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    quantize_args q;
    int rc = parse(&q, argc, argv);
    return rc ? rc : run(&q);
}
