/* mvmoe: the command-line program. Dispatches to one command per file (cli/cmd_*.c) and is
 * the only place that ends the process: every command returns its exit code here. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", mvmoe_cmd_train, "train a model on a dataset and save a checkpoint"},
    {"eval", mvmoe_cmd_eval, "accuracy, per-class accuracy, confusion matrix, logits"},
    {"predict", mvmoe_cmd_predict, "top classes of image files"},
    {"info", mvmoe_cmd_info, "configuration, parameters and FLOPs of a checkpoint or preset"},
    {"presets", mvmoe_cmd_presets, "list the model presets"},
    {"superclasses", mvmoe_cmd_superclasses, "group classes into super-classes (one per expert) by confusion"},
    {"bench", mvmoe_cmd_bench, "training/inference speed, MFU and memory of a model"},
    {"report", mvmoe_cmd_report, "HTML report (inline SVG) and JSON summary of evaluated runs"},
    {"export", mvmoe_cmd_export, "write a checkpoint as an ONNX model (dense and per-image MoE)"},
    {"quantize", mvmoe_cmd_quantize, "write a checkpoint with int8 weights (about 4x smaller)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: mvmoe COMMAND [flags]   (mvmoe COMMAND --help for its flags)\n\n"
               "Trains, evaluates and runs small Vision Transformers on the CPU.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --help     this message (also: mvmoe help [COMMAND])\n"
               "  --version  print the version (also: mvmoe version)\n"
               "  --verbose  (before COMMAND; or MVMOE_VERBOSE=1) errors also say where in mvmoe's\n"
               "             sources they were raised, for bug reports\n");
}

static const command *find(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int main(int argc, char **argv) {
    int rc;
    /* Past a file-size limit (ulimit -f) the kernel's default would kill the process with no
     * message and leave a temporary file behind; ignored, the write fails with EFBIG instead
     * and the writer's error path reports it and removes the temporary file. */
    signal(SIGXFSZ, SIG_IGN);
    const char *env = getenv("MVMOE_VERBOSE");
    mvmoe_cli_verbose = env && *env && strcmp(env, "0") != 0;
    if (argc >= 2 && strcmp(argv[1], "--verbose") == 0) { /* global: before the command */
        mvmoe_cli_verbose = 1;
        argv[1] = argv[0];
        argc--, argv++;
    }
    if (argc < 2) {
        usage(stderr);
        rc = MVMOE_EXIT_USAGE;
    } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        rc = MVMOE_EXIT_OK;
    } else if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("mvmoe %s\n", mvmoe_version());
        rc = MVMOE_EXIT_OK;
    } else if (strcmp(argv[1], "help") == 0) {
        /* "mvmoe help train" = "mvmoe train --help" */
        const command *c = argc > 2 ? find(argv[2]) : NULL;
        if (c) {
            char *help_argv[] = {argv[2], "--help", NULL};
            rc = c->run(2, help_argv);
        } else if (argc > 2) {
            fprintf(stderr, "mvmoe: unknown command '%s'\n", argv[2]);
            usage(stderr);
            rc = MVMOE_EXIT_USAGE;
        } else {
            usage(stdout);
            rc = MVMOE_EXIT_OK;
        }
    } else {
        const command *c = find(argv[1]);
        if (c) {
            rc = c->run(argc - 1, argv + 1);
        } else {
            fprintf(stderr, "mvmoe: unknown %s '%s'\n", argv[1][0] == '-' ? "flag" : "command", argv[1]);
            usage(stderr);
            rc = MVMOE_EXIT_USAGE;
        }
    }
    /* Output to a full disk or a closed pipe shows up only here, at the final flush. */
    if (fflush(stdout) != 0 && rc == MVMOE_EXIT_OK) {
        perror("mvmoe: cannot write to standard output");
        rc = MVMOE_EXIT_FAIL;
    }
    exit(rc);
}
