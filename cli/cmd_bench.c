/* mvmoe bench: training and inference speed, MFU and memory of a preset or checkpoint, at one
 * or more thread counts (mvmoe_bench_run does the measuring). */
#include <cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "memlimit.h"
#include "precision.h"
#include "mvmoe.h"

#define MAX_THREAD_SETTINGS 8

static const char SYNOPSIS[] =
    "usage: mvmoe bench (--preset NAME [model flags] | --model CKPT) [--batch N] [--steps N]\n"
    "                   [--warmup N] [--threads 1,2] [--infer-batch N] [--latency-reps N]\n"
    "                   [--peak-gflops X,...] [--save-weights CKPT] [--check-out FILE] [--json]\n";

static void print_help(void) {
    mvmoe_bench_options d;
    mvmoe_bench_options_default(&d);
    printf("%s\n", SYNOPSIS);
    printf("Times a model on random data, at each thread count given:\n"
           "  training: steps of forward, loss, backward, gradient clipping and AdamW (as\n"
           "    'mvmoe train' does, without data loading/augmentation), after warm-up steps;\n"
           "    median and spread of the step times, images/s;\n"
           "  inference: batch-1 latency (median, p10, p90) and batch throughput (images/s);\n"
           "    with --precision int8 (inference-only) nothing else: no training steps;\n"
           "  MFU: achieved FLOP/s over the FP32 FMA peak measured at that thread count (about\n"
           "    0.3 s, or --peak-gflops); FLOPs = 2 per multiply-add, training = 3x forward;\n"
           "  memory: params + grads + AdamW moments + activation arena against peak RSS.\n\n"
           "Model (exactly one of):\n"
           "  --preset NAME        a preset ('mvmoe presets' lists them), randomly initialized\n"
           "  --model CKPT         a checkpoint (.safetensors)\n"
           "Model flags (with --preset; override the preset's values):\n"
           "  --img-size N  --in-chans N  --classes N  --patch N  --dim N  --depth N  --heads N\n"
           "  --mlp-dim N  --routing NAME  --experts N  --top-k N  --moe-layers N\n\n"
           "Measurement (defaults in brackets):\n"
           "  --batch N [%d]  --warmup N [%d]  --steps N [%d]\n"
           "  --threads N,N,... (0: all cores) [1,2]\n"
           "  --infer-batch N [%d]  --infer-reps N [%d]  --latency-reps N [%d]\n"
           "  --seed N [%llu]       random weights (--preset), inputs and labels\n"
           "  --peak-gflops X,...   FP32 peak per thread setting instead of measuring it\n"
           MVMOE_CLI_MEMLIMIT_HELP MVMOE_CLI_PRECISION_HELP "\n"
           "Output:\n"
           "  --save-weights CKPT  write the model's weights (before any step) to CKPT\n"
           "  --check-out FILE     write 8 random images and their logits (before any step)\n"
           "                       as safetensors, to check other frameworks against\n"
           "  --json               one JSON object instead of text\n\n"
           "Exit status: 0 done, 1 failure, 2 usage error.\n",
           d.batch, d.warmup, d.steps, d.infer_batch, d.infer_reps, d.latency_reps,
           (unsigned long long)d.seed);
}

typedef struct bench_args {
    const char *preset, *model, *save_weights;
    int json, n_threads, n_peak;
    int threads[MAX_THREAD_SETTINGS];
    float peak[MAX_THREAD_SETTINGS];
    mvmoe_cli_shape shape; /* model overrides */
    int routing_given;
    mvmoe_routing routing;
    mvmoe_bench_options o;
    mvmoe_cli_memlimit mem;
} bench_args;

static const mvmoe_cli_int_flag option_flags[] = {
    {"--batch", offsetof(mvmoe_bench_options, batch), 1, 65536},
    {"--steps", offsetof(mvmoe_bench_options, steps), 1, 1000000},
    {"--warmup", offsetof(mvmoe_bench_options, warmup), 0, 1000000},
    {"--infer-batch", offsetof(mvmoe_bench_options, infer_batch), 1, 65536},
    {"--infer-reps", offsetof(mvmoe_bench_options, infer_reps), 1, 1000000},
    {"--latency-reps", offsetof(mvmoe_bench_options, latency_reps), 1, 10000000},
};
#define N_OPTION_FLAGS (sizeof option_flags / sizeof option_flags[0])

static int table_flag(mvmoe_args *a, bench_args *b, int *rc) {
    return mvmoe_cli_shape_flag(a, &b->shape, 1, rc) ||
           mvmoe_cli_int_flag_parse(a, option_flags, N_OPTION_FLAGS, &b->o, rc) != NULL;
}

/* --threads 1,2: whole numbers 0..4096 */
static int parse_threads(mvmoe_args *a, bench_args *b) {
    float v[MAX_THREAD_SETTINGS];
    int n = 0, rc = mvmoe_args_floats(a, 0, 4096, MAX_THREAD_SETTINGS, v, &n);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        if (v[i] != (float)(int)v[i])
            return mvmoe_args_error(a, "invalid value '%g' in --threads: thread counts are whole numbers", (double)v[i]);
        b->threads[i] = (int)v[i];
    }
    b->n_threads = n;
    return 0;
}

static int parse(bench_args *b, int argc, char **argv) {
    memset(b, 0, sizeof *b);
    mvmoe_bench_options_default(&b->o);
    mvmoe_cli_shape_init(&b->shape);
    b->threads[0] = 1;
    b->threads[1] = 2;
    b->n_threads = 2;

    mvmoe_args a;
    mvmoe_args_init(&a, "bench", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give the model with --preset NAME or --model CKPT)", pos);
        if (table_flag(&a, b, &rc)) continue;
        if (mvmoe_cli_memlimit_flag(&a, &b->mem, &rc)) continue;
        if (mvmoe_cli_precision_flag(&a, "bench", &rc)) continue;
        if (mvmoe_args_is(&a, "--preset")) rc = mvmoe_args_str(&a, &b->preset);
        else if (mvmoe_args_is(&a, "--model")) rc = mvmoe_args_str(&a, &b->model);
        else if (mvmoe_args_is(&a, "--save-weights")) rc = mvmoe_args_str(&a, &b->save_weights);
        else if (mvmoe_args_is(&a, "--check-out")) rc = mvmoe_args_str(&a, &b->o.check_path);
        else if (mvmoe_args_is(&a, "--json")) { rc = mvmoe_args_switch(&a); b->json = 1; }
        else if (mvmoe_args_is(&a, "--seed")) rc = mvmoe_args_u64(&a, &b->o.seed);
        else if (mvmoe_args_is(&a, "--threads")) rc = parse_threads(&a, b);
        else if (mvmoe_args_is(&a, "--peak-gflops"))
            rc = mvmoe_args_floats(&a, 0, 1e9, MAX_THREAD_SETTINGS, b->peak, &b->n_peak);
        else if (mvmoe_args_is(&a, "--routing")) {
            const char *name;
            rc = mvmoe_args_str(&a, &name);
            if (rc == 0 && mvmoe_routing_parse(name, &b->routing) != MVMOE_OK)
                rc = mvmoe_args_error(&a, "invalid value '%s' for --routing: use dense, image-superclass, image-learned or token-learned", name);
            b->routing_given = 1;
        } else {
            return mvmoe_args_unknown(&a);
        }
    }
    if (rc) return rc;
    if (!b->preset == !b->model)
        return mvmoe_args_error(&a, "give either --preset NAME or --model CKPT (exactly one)");
    /* int8 is inference-only: time inference alone */
    b->o.inference_only = mvmoe_get_precision() == MVMOE_PRECISION_INT8;
    if (b->o.check_path && mvmoe_get_precision() != MVMOE_PRECISION_FP32)
        return mvmoe_args_error(&a, "--check-out writes logits for checking fp32 frameworks against; "
                                    "run it without --precision %s", mvmoe_precision_name(mvmoe_get_precision()));
    int overrides = b->routing_given || mvmoe_cli_shape_given(&b->shape, 1);
    if (b->model && overrides)
        return mvmoe_args_error(&a, "the model flags (--img-size, --dim, ...) apply to --preset; a checkpoint brings its own shape");
    if (b->n_peak && b->n_peak != b->n_threads)
        return mvmoe_args_error(&a, "--peak-gflops has %d values for %d thread settings; give one per --threads entry",
                                b->n_peak, b->n_threads);
    for (int i = 0; i < b->n_peak; i++)
        if (!(b->peak[i] > 0)) return mvmoe_args_error(&a, "--peak-gflops values must be > 0");
    return 0;
}

/* The preset with the flags' overrides. 0, or MVMOE_EXIT_USAGE after printing why. */
static int preset_config(const bench_args *b, mvmoe_config *c) {
    if (mvmoe_config_preset(c, b->preset) != MVMOE_OK) {
        fprintf(stderr, "mvmoe bench: invalid value '%s' for --preset: %s\n", b->preset, mvmoe_last_error());
        return MVMOE_EXIT_USAGE;
    }
    mvmoe_cli_shape_apply_sizes(&b->shape, c);
    if (b->routing_given) c->routing = b->routing;
    mvmoe_cli_shape_apply_moe(&b->shape, c);
    if (mvmoe_config_validate(c) != MVMOE_OK) {
        fprintf(stderr, "mvmoe bench: %s\nAdjust the model flags (or --preset); see 'mvmoe bench --help'.\n",
                mvmoe_last_error());
        return MVMOE_EXIT_USAGE;
    }
    return 0;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void print_text(const bench_args *b, const mvmoe_config *c, const mvmoe_bench_result *r, int n) {
    printf("%s %s\n", b->preset ? "preset" : "checkpoint", b->preset ? b->preset : b->model);
    mvmoe_cli_print_config(stdout, c, 1);
    if (b->o.inference_only)
        printf("inference only (%s products: no training); ", mvmoe_precision_name(mvmoe_get_precision()));
    else
        printf("training batch %d (%d warm-up + %d timed steps); ", b->o.batch, b->o.warmup, b->o.steps);
    printf("inference batch %d; latency reps %d; kernels %s, GEMMs %s, products %s\n", b->o.infer_batch,
           b->o.latency_reps, mvmoe_kernel_isa(), mvmoe_gemm_library(), mvmoe_precision_name(mvmoe_get_precision()));
    if (mvmoe_get_precision() != MVMOE_PRECISION_FP32)
        printf("note: with %s products, 'MFU' below is the achieved rate over the FP32 peak, which "
               "does not bound them (it can exceed 100%%)\n", mvmoe_precision_name(mvmoe_get_precision()));
    for (int i = 0; i < n; i++) {
        const mvmoe_bench_result *x = &r[i];
        printf("\nthreads %d  (FP32 peak %.1f GFLOP/s, %s)\n", x->threads, x->peak_gflops,
               x->peak_measured ? "measured" : "given");
        if (!b->o.inference_only) {
            printf("  train      %9.1f images/s   step %.2f ms median [min %.2f, p10 %.2f, p90 %.2f, max %.2f]   MFU %.1f%%\n",
                   x->train_images_per_s, x->step_ms_median, x->step_ms_min, x->step_ms_p10,
                   x->step_ms_p90, x->step_ms_max, 100 * x->train_mfu);
            printf("             phases (median ms): pack %.2f, forward %.2f, backward %.2f, optimizer %.2f\n",
                   x->phase_ms_pack, x->phase_ms_forward, x->phase_ms_backward, x->phase_ms_optimizer);
            printf("             loss %.4f -> %.4f\n", x->loss_first, x->loss_last);
        }
        printf("  latency    %9.3f ms median  [p10 %.3f, p90 %.3f]  (batch 1)   MFU %.1f%%\n",
               x->latency_ms_median, x->latency_ms_p10, x->latency_ms_p90, 100 * x->latency_mfu);
        printf("  throughput %9.1f images/s   (batch %d)   MFU %.1f%%\n", x->infer_images_per_s,
               b->o.infer_batch, 100 * x->infer_mfu);
        if (b->o.inference_only) {
            printf("  memory     params %.1f + inference activations %.1f MiB; peak RSS %.1f MiB\n",
                   mib(x->bytes_params), mib(x->bytes_infer_acts), mib(x->peak_rss_bytes));
            continue;
        }
        printf("  memory     params %.1f + grads %.1f + AdamW %.1f + activations %.1f = %.1f MiB;"
               " peak RSS %.1f MiB (%.2fx)\n",
               mib(x->bytes_params), mib(x->bytes_grads), mib(x->bytes_adam), mib(x->bytes_train_acts),
               mib(x->bytes_train_total), mib(x->peak_rss_bytes),
               x->bytes_train_total ? (double)x->peak_rss_bytes / (double)x->bytes_train_total : 0.0);
    }
}

static cJSON *result_json(const mvmoe_bench_result *x) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    struct { const char *k; double v; } f[] = {
        {"threads", x->threads},
        {"peak_gflops", x->peak_gflops},
        {"peak_measured", x->peak_measured},
        {"train_images_per_s", x->train_images_per_s},
        {"step_ms_median", x->step_ms_median},
        {"step_ms_min", x->step_ms_min},
        {"step_ms_p10", x->step_ms_p10},
        {"step_ms_p90", x->step_ms_p90},
        {"step_ms_max", x->step_ms_max},
        {"phase_ms_pack", x->phase_ms_pack},
        {"phase_ms_forward", x->phase_ms_forward},
        {"phase_ms_backward", x->phase_ms_backward},
        {"phase_ms_optimizer", x->phase_ms_optimizer},
        {"loss_first", x->loss_first},
        {"loss_last", x->loss_last},
        {"train_mfu", x->train_mfu},
        {"latency_ms_median", x->latency_ms_median},
        {"latency_ms_p10", x->latency_ms_p10},
        {"latency_ms_p90", x->latency_ms_p90},
        {"latency_mfu", x->latency_mfu},
        {"infer_images_per_s", x->infer_images_per_s},
        {"infer_mfu", x->infer_mfu},
        {"bytes_params", (double)x->bytes_params},
        {"bytes_grads", (double)x->bytes_grads},
        {"bytes_adam", (double)x->bytes_adam},
        {"bytes_train_acts", (double)x->bytes_train_acts},
        {"bytes_infer_acts", (double)x->bytes_infer_acts},
        {"bytes_train_total", (double)x->bytes_train_total},
        {"peak_rss_bytes", (double)x->peak_rss_bytes},
        {"rss_over_analytic", x->bytes_train_total ? (double)x->peak_rss_bytes / (double)x->bytes_train_total : 0.0},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!cJSON_AddNumberToObject(o, f[i].k, f[i].v)) {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

static int print_json(const bench_args *b, const mvmoe_config *c, const mvmoe_bench_result *r, int n) {
    char *cfg_text = NULL;
    if (mvmoe_config_to_json(c, &cfg_text) != MVMOE_OK) return mvmoe_cli_fail("bench");
    cJSON *cfg = cJSON_Parse(cfg_text);
    free(cfg_text);
    cJSON *o = cJSON_CreateObject(), *opt = cJSON_CreateObject(), *runs = cJSON_CreateArray();
    int ok = cfg && o && opt && runs;
    if (ok) {
        ok &= (b->preset ? cJSON_AddStringToObject(o, "preset", b->preset)
                         : cJSON_AddStringToObject(o, "checkpoint", b->model)) != NULL;
        ok &= cJSON_AddStringToObject(o, "kernel_isa", mvmoe_kernel_isa()) != NULL;
        ok &= cJSON_AddStringToObject(o, "gemm_library", mvmoe_gemm_library()) != NULL;
        ok &= cJSON_AddStringToObject(o, "precision", mvmoe_precision_name(mvmoe_get_precision())) != NULL;
        /* int8: inference only, the training fields are 0 */
        ok &= cJSON_AddBoolToObject(o, "inference_only", b->o.inference_only) != NULL;
        ok &= cJSON_AddItemToObject(o, "config", cfg);
        if (ok) cfg = NULL;
        ok &= cJSON_AddNumberToObject(o, "params", (double)mvmoe_config_num_params(c)) != NULL;
        ok &= cJSON_AddNumberToObject(o, "flops_per_image", mvmoe_config_flops(c)) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "batch", b->o.batch) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "warmup", b->o.warmup) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "steps", b->o.steps) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "infer_batch", b->o.infer_batch) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "infer_reps", b->o.infer_reps) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "latency_reps", b->o.latency_reps) != NULL;
        ok &= cJSON_AddNumberToObject(opt, "seed", (double)b->o.seed) != NULL;
        ok &= cJSON_AddItemToObject(o, "options", opt);
        if (ok) opt = NULL;
        for (int i = 0; ok && i < n; i++) {
            cJSON *x = result_json(&r[i]);
            ok &= x != NULL && cJSON_AddItemToArray(runs, x);
        }
        ok &= cJSON_AddItemToObject(o, "runs", runs);
        if (ok) runs = NULL;
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(cfg);
    cJSON_Delete(opt);
    cJSON_Delete(runs);
    cJSON_Delete(o);
    if (!text) {
        fprintf(stderr, "mvmoe bench: error: out of memory building the JSON output\n");
        return MVMOE_EXIT_FAIL;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

static int run(bench_args *b) {
    mvmoe_model *m = NULL;
    int rc = 0;
    /* training and inference arenas both live while benchmarking: bound them by the larger
     * batch, before a preset's weights are allocated (a checkpoint's are, once loaded) */
    int batch = b->o.batch > b->o.infer_batch && !b->o.inference_only ? b->o.batch : b->o.infer_batch;
    const int training = !b->o.inference_only;
    if (b->preset) {
        mvmoe_config c;
        if ((rc = preset_config(b, &c)) != 0) return rc;
        rc = mvmoe_cli_memlimit_check("bench", &b->mem, &c, batch, training, 0);
        if (rc == 0 && mvmoe_model_create(&m, &c, b->o.seed) != MVMOE_OK) rc = mvmoe_cli_fail("bench");
        mvmoe_config_free(&c);
    } else if (mvmoe_model_load(&m, b->model, NULL) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("bench", "--model");
    } else {
        rc = mvmoe_cli_memlimit_check("bench", &b->mem, mvmoe_model_config(m), batch, training, 1);
    }
    if (rc == 0 && b->save_weights && mvmoe_model_save(m, b->save_weights) != MVMOE_OK)
        rc = mvmoe_cli_fail("bench");
    mvmoe_bench_result r[MAX_THREAD_SETTINGS];
    for (int i = 0; rc == 0 && i < b->n_threads; i++) {
        mvmoe_bench_options o = b->o;
        o.threads = b->threads[i];
        o.peak_gflops = b->n_peak ? b->peak[i] : 0;
        if (i > 0) o.check_path = NULL; /* logits before any training step: the first run only */
        if (!b->json) fprintf(stderr, "mvmoe bench: measuring at %d thread(s)...\n", o.threads);
        if (mvmoe_bench_run(m, &o, &r[i]) != MVMOE_OK) rc = mvmoe_cli_fail("bench");
    }
    if (rc == 0) {
        const mvmoe_config *c = mvmoe_model_config(m);
        if (b->json) rc = print_json(b, c, r, b->n_threads);
        else print_text(b, c, r, b->n_threads);
    }
    mvmoe_model_free(m);
    return rc;
}

int mvmoe_cmd_bench(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    bench_args b;
    int rc = parse(&b, argc, argv);
    return rc ? rc : run(&b);
}
