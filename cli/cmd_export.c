/* mvmoe export: a checkpoint as an ONNX model file (mvmoe_export_onnx; docs/EXPORT.md). */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "mvmoe.h"

static const char SYNOPSIS[] =
    "usage: mvmoe export --model M.safetensors --onnx OUT.onnx [--int8]\n"
    "                    [--heads N --mean a,b,c --std a,b,c --img-size N]\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Writes a checkpoint as one ONNX model (opset 17) for ONNX Runtime and other\n"
           "runtimes: input 'pixels' float32 [N, C, H, W] = the uint8 image values / 255 (the\n"
           "model's mean/std normalization is inside the graph), outputs 'logits' float32\n"
           "[N, classes] and, for Mobile V-MoE models, 'routes' int64 [N, top_k] (each image's\n"
           "experts, most probable first). Dense models and per-image routing (image-superclass,\n"
           "image-learned; any top_k); the graph has no control flow and gathers each image's\n"
           "k experts' weights, so a batch of one computes only its k experts. The graph and\n"
           "its tensor names: docs/EXPORT.md.\n\n"
           "  --model M            checkpoint (.safetensors: ours, or a plain timm ViT)\n"
           "  --onnx OUT.onnx      the ONNX file to write (atomically: temporary file, rename)\n"
           "  --int8               int8 products in ONNX's dynamic-quantization form, which ONNX\n"
           "                       Runtime runs with its int8 kernels: the weights of --precision\n"
           "                       int8 (patch embedding, qkv, proj, fc1, fc2, experts; the values\n"
           "                       and scales of 'mvmoe quantize'), activations quantized by\n"
           "                       DynamicQuantizeLinear (uint8, one scale per tensor: unlike\n"
           "                       mvmoe's per-token int8, results depend on the batch). Router\n"
           "                       and head stay float32. --model may be an int8 checkpoint.\n"
           "  --img-size N        export at this image size (position embeddings resampled)\n"
           "  --heads N           attention heads, for plain timm checkpoints (no config inside)\n"
           "  --mean a,b,c        per-channel input mean (0..1), for plain timm checkpoints\n"
           "  --std a,b,c         per-channel input std, for plain timm checkpoints\n"
           "\nNot exported: token-learned routing (every token picks its own experts in every MoE\n"
           "block: no static per-image form) and --adaptive-k.\n"
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

typedef struct export_args {
    const char *model, *onnx;
    int int8;
    mvmoe_cli_load load;
} export_args;

static int parse(export_args *e, int argc, char **argv) {
    memset(e, 0, sizeof *e);
    mvmoe_cli_load_init(&e->load);
    mvmoe_args a;
    mvmoe_args_init(&a, "export", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give the checkpoint with --model and the output with --onnx)", pos);
        if (mvmoe_args_is(&a, "--adaptive-k"))
            return mvmoe_args_error(&a, "--adaptive-k is not exported: the ONNX graph always runs each image's top_k experts");
        if (mvmoe_cli_load_flag(&a, &e->load, &rc)) continue;
        if (mvmoe_args_is(&a, "--model")) rc = mvmoe_args_str(&a, &e->model);
        else if (mvmoe_args_is(&a, "--onnx")) rc = mvmoe_args_str(&a, &e->onnx);
        else if (mvmoe_args_is(&a, "--int8")) {
            rc = mvmoe_args_switch(&a);
            e->int8 = 1;
        } else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (!e->model) return mvmoe_args_error(&a, "--model M.safetensors is required");
    if (!e->onnx) return mvmoe_args_error(&a, "--onnx OUT.onnx is required");
    return mvmoe_cli_load_finish(&a, &e->load);
}

static int run(const export_args *e) {
    if (mvmoe_output_check(e->onnx, "--onnx") != MVMOE_OK) return mvmoe_cli_fail("export");
    mvmoe_model *m = NULL;
    if (mvmoe_model_load(&m, e->model, &e->load.o) != MVMOE_OK) return mvmoe_cli_fail_flag("export", "--model");
    int rc = 0;
    const mvmoe_export_options o = {.int8 = e->int8};
    if (mvmoe_export_onnx(m, e->onnx, &o) != MVMOE_OK) {
        rc = mvmoe_cli_fail("export");
    } else {
        const mvmoe_config *c = mvmoe_model_config(m);
        printf("wrote '%s': %s%s", e->onnx, e->int8 ? "int8 products, " : "", mvmoe_routing_name(c->routing));
        if (c->routing != MVMOE_ROUTING_DENSE)
            printf(", %d experts, top-%d, %d MoE blocks", c->experts, c->top_k, c->moe_layers);
        printf(", input pixels [N, %d, %d, %d], output logits [N, %d]%s\n", c->in_chans, c->img_size,
               c->img_size, c->num_classes, c->routing != MVMOE_ROUTING_DENSE ? " and routes [N, top_k]" : "");
    }
    mvmoe_model_free(m);
    return rc;
}

int mvmoe_cmd_export(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    export_args e;
    int rc = parse(&e, argc, argv);
    return rc ? rc : run(&e);
}
