/* Fuzz target: command-line numbers and flags of `mvmoe train` (cli/train_args.c over the
 * checked readers of cli/args.c), the --max-memory size parser (cli/memlimit.c) and
 * --precision (cli/precision.c).
 *
 * Input: argv entries separated by NUL bytes (argv[0] = "train" is added). A parse that
 * succeeds must leave every model and training field inside its documented range. The CLI
 * sources are compiled in here: they are not part of libmvmoe. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../cli/args.c"
#include "../cli/common.c"
#include "../cli/memlimit.c"
#include "../cli/precision.c"
#include "../cli/train_args.c"
#include "fuzz_util.h"

#define FZ_ARGS_MAX 64

int mvmoe_fuzz_args(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    FZ_ASSERT(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[FZ_ARGS_MAX + 2];
    int argc = 0;
    argv[argc++] = "train";
    for (size_t i = 0; i <= size && argc < FZ_ARGS_MAX; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
    argv[argc] = NULL;

    /* the readers print their complaints; keep the fuzzer's output readable */
    FILE *saved = stderr, *null = fopen("/dev/null", "w");
    if (null) stderr = null;
    train_args t;
    int rc = mvmoe_train_args_parse(&t, argc, argv);
    uint64_t bytes = 0;
    int size_ok = argc > 1 ? mvmoe_cli_parse_size(argv[1], &bytes) : -1;
    if (null) {
        stderr = saved;
        fclose(null);
    }
    FZ_ASSERT(rc == 0 || rc == MVMOE_EXIT_USAGE, "parse returned %d", rc);
    if (rc == 0) {
        FZ_ASSERT(t.data && t.out, "required flags missing after a successful parse");
        FZ_ASSERT(t.o.epochs >= 1 && t.o.batch >= 1 && t.o.batch <= 65536, "epochs/batch out of range");
        FZ_ASSERT(t.o.lr > 0 && t.o.lr <= 10 && t.o.min_lr >= 0 && t.o.min_lr <= t.o.lr, "lr");
        FZ_ASSERT(t.o.weight_decay >= 0 && t.o.weight_decay < 1, "weight decay");
        FZ_ASSERT(t.o.label_smoothing >= 0 && t.o.label_smoothing < 1, "label smoothing");
        FZ_ASSERT(t.o.drop_path >= 0 && t.o.drop_path < 1, "drop path");
        FZ_ASSERT(t.shape.img_size == -1 || (t.shape.img_size >= 1 && t.shape.img_size <= 4096), "img_size %d", t.shape.img_size);
        FZ_ASSERT(t.shape.dim == -1 || (t.shape.dim >= 1 && t.shape.dim <= 16384), "dim %d", t.shape.dim);
        FZ_ASSERT(t.shape.depth == -1 || (t.shape.depth >= 1 && t.shape.depth <= 256), "depth %d", t.shape.depth);
        FZ_ASSERT(!(t.resume && t.init), "--resume with --init accepted");
    }
    if (size_ok == 0) FZ_ASSERT(bytes < ((uint64_t)1 << 63), "size %llu", (unsigned long long)bytes);
    free(buf);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return mvmoe_fuzz_args(data, size); }
#endif
