/* mvmoe: train, evaluate and run (Mobile V-MoE) Vision Transformers on the CPU.
 *
 * The one public header. Every function that can fail returns an mvmoe_status; on failure
 * mvmoe_last_error() holds a message saying what went wrong, where, and what to do.
 * Checkpoints follow docs/CHECKPOINT_FORMAT.md (timm names in safetensors). */
#ifndef MVMOE_H
#define MVMOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version
 * The one place the version is written: the Makefile reads these three numbers for the
 * shared library's name (libmvmoe.so.MAJOR -> libmvmoe.so.MAJOR.MINOR.PATCH) and mvmoe.pc;
 * `mvmoe --version` prints MVMOE_VERSION. */
#define MVMOE_VERSION_MAJOR 0
#define MVMOE_VERSION_MINOR 1
#define MVMOE_VERSION_PATCH 0
#define MVMOE_VERSION_STR_(x) #x
#define MVMOE_VERSION_STR(x) MVMOE_VERSION_STR_(x)
#define MVMOE_VERSION                                                                       \
    MVMOE_VERSION_STR(MVMOE_VERSION_MAJOR) "." MVMOE_VERSION_STR(MVMOE_VERSION_MINOR) "."   \
    MVMOE_VERSION_STR(MVMOE_VERSION_PATCH)

/* The version of the library linked at run time ("0.1.0"), which may differ from the header
 * a program was compiled with (MVMOE_VERSION) when a shared library was replaced. */
const char *mvmoe_version(void);

/* ---------------------------------------------------------------- status */
typedef enum {
    MVMOE_OK = 0,
    MVMOE_ERR_IO,          /* a file could not be opened, read or written */
    MVMOE_ERR_FORMAT,      /* a file's contents are malformed */
    MVMOE_ERR_NOMEM,       /* an allocation failed or would exceed a limit */
    MVMOE_ERR_INVALID,     /* an argument or configuration makes no sense */
    MVMOE_ERR_UNSUPPORTED, /* valid, but not implemented here */
    MVMOE_ERR_NUMERIC,     /* NaN/Inf appeared in a loss or gradient */
    MVMOE_ERR_INTERRUPTED  /* stopped on request (SIGINT/SIGTERM) */
} mvmoe_status;

const char *mvmoe_status_name(mvmoe_status s);
/* Message of the last failure on this thread ("" if none): what failed, in which file or
 * argument, and what to do. */
const char *mvmoe_last_error(void);
/* Where in mvmoe's sources that failure was raised ("" if none), e.g. "config.c:94 <
 * checkpoint.c:168" (innermost first): for bug reports and `mvmoe --verbose`, not for users. */
const char *mvmoe_last_error_where(void);

/* Whether `path` can be written as mvmoe writes files (a temporary file beside it, renamed
 * over it): MVMOE_OK if it is a regular file or does not exist yet and its folder is
 * writable; an error naming `flag` (e.g. "--out"; NULL: none) if it is a folder, a device, a
 * FIFO or a socket, or its folder is missing or read-only. For checking outputs before long
 * work; every writer of the library checks again. */
mvmoe_status mvmoe_output_check(const char *path, const char *flag);

/* ---------------------------------------------------------------- config */
#define MVMOE_MAX_CHANNELS 4

typedef enum {
    MVMOE_ROUTING_DENSE = 0,
    MVMOE_ROUTING_IMAGE_SUPERCLASS,
    MVMOE_ROUTING_IMAGE_LEARNED,
    MVMOE_ROUTING_TOKEN_LEARNED
} mvmoe_routing;

/* The model's shape: the `config` object of the checkpoint contract. */
typedef struct mvmoe_config {
    int img_size, in_chans, patch;
    int dim, depth, heads, mlp_dim, num_classes;
    mvmoe_routing routing;
    int experts, top_k, moe_layers;
    float mean[MVMOE_MAX_CHANNELS], std[MVMOE_MAX_CHANNELS];
    char **class_names; /* [num_classes] owned strings, or NULL */
    int *superclass_of; /* [num_classes] owned, or NULL */
} mvmoe_config;

const char *mvmoe_routing_name(mvmoe_routing r);
mvmoe_status mvmoe_routing_parse(const char *name, mvmoe_routing *out);

/* Fills `c` from a named preset (see mvmoe_preset_list / docs/MODELS.md). Owned fields NULL. */
mvmoe_status mvmoe_config_preset(mvmoe_config *c, const char *name);
/* Newline-separated "name: description" lines of every preset (static storage). */
const char *mvmoe_preset_list(void);
/* Checks every field for sense (heads divide dim, patch divides img_size, ...). */
mvmoe_status mvmoe_config_validate(const mvmoe_config *c);
/* JSON text of the contract's config object; caller frees *json with free(). */
mvmoe_status mvmoe_config_to_json(const mvmoe_config *c, char **json);
/* Parses the contract's config JSON. Missing optional fields keep the values already in `c`. */
mvmoe_status mvmoe_config_from_json(mvmoe_config *c, const char *json, size_t len);
mvmoe_status mvmoe_config_copy(mvmoe_config *dst, const mvmoe_config *src);
/* Replaces class names (copied) / the super-class map (copied). n must equal num_classes. */
mvmoe_status mvmoe_config_set_class_names(mvmoe_config *c, const char *const *names, int n);
void mvmoe_config_free(mvmoe_config *c);
/* Tokens per image, including the class token: 1 + (img_size/patch)^2. */
int mvmoe_config_tokens(const mvmoe_config *c);
/* Forward multiply-adds x2 per image (the standard FLOP count, router included), and
 * parameter counts: all of them, and those one image activates at inference (its top_k
 * experts' MLPs in each MoE block, not the others). */
double mvmoe_config_flops(const mvmoe_config *c);
size_t mvmoe_config_num_params(const mvmoe_config *c);
size_t mvmoe_config_active_params(const mvmoe_config *c);

/* ---------------------------------------------------------------- model */
typedef struct mvmoe_model mvmoe_model;

/* New model with freshly initialized weights (timm's init: trunc-normal 0.02, zero biases). */
mvmoe_status mvmoe_model_create(mvmoe_model **out, const mvmoe_config *c, uint64_t seed);

typedef struct mvmoe_load_options {
    int img_size;           /* > 0: run at this size; pos_embed resampled (bicubic) if it differs */
    int heads;              /* > 0: for checkpoints without config (plain timm); else 0 */
    int in_chans_mean_std;  /* number of valid entries in mean/std below (0: none given) */
    float mean[MVMOE_MAX_CHANNELS], std[MVMOE_MAX_CHANNELS];
    float adaptive_k;       /* > 0 (MoE with top_k >= 2 only): an item uses its 2nd..k-th experts
                               only when its top router probability is below this; 0: off */
} mvmoe_load_options;

/* Loads a safetensors checkpoint (ours, or a plain timm ViT). opts may be NULL. */
mvmoe_status mvmoe_model_load(mvmoe_model **out, const char *path, const mvmoe_load_options *opts);
/* Writes the weights (and config metadata) atomically: temp file, fsync, rename. */
mvmoe_status mvmoe_model_save(const mvmoe_model *m, const char *path);
/* The same with the weights of the int8 products (patch embedding, qkv, proj, fc1, fc2,
 * experts) as I8 tensors, symmetric per output channel, each with an F32 scale tensor
 * "<name>_scale"; the rest F32; metadata "quantization" = MVMOE_INT8_QUANTIZATION
 * (docs/CHECKPOINT_FORMAT.md, "int8 checkpoints"). mvmoe_model_load reads such files (the
 * weights dequantized to fp32; MVMOE_PRECISION_INT8 re-derives the same int8 values). */
#define MVMOE_INT8_QUANTIZATION "int8-symmetric-per-output-channel"
mvmoe_status mvmoe_model_save_int8(const mvmoe_model *m, const char *path);
void mvmoe_model_free(mvmoe_model *m);
/* "Upcycling": fills the MoE model `moe` from a dense model of the same shape: every shared
 * tensor copied, each MoE block's experts all copies of that block's dense MLP; routers keep
 * their fresh initialization. */
mvmoe_status mvmoe_model_upcycle(mvmoe_model *moe, const mvmoe_model *dense);
const mvmoe_config *mvmoe_model_config(const mvmoe_model *m);
mvmoe_config *mvmoe_model_config_mut(mvmoe_model *m); /* for names / super-class maps only */

/* Inference on uint8 images [n, C, H, W] (H = W = img_size); logits [n, num_classes]. */
mvmoe_status mvmoe_model_logits(mvmoe_model *m, const uint8_t *images, int n, float *logits);
/* mvmoe_model_logits (the same logits, bit for bit) plus, if routes is not NULL, each image's
 * experts: routes [n, top_k] receives the experts the per-image router chose (image-superclass
 * and image-learned routing), most probable first, -1 where adaptive k dropped a choice.
 * routes != NULL fails with MVMOE_ERR_INVALID for a dense model (it has no experts) and with
 * MVMOE_ERR_UNSUPPORTED for token-learned routing (experts are chosen per token and per MoE
 * block, not per image). */
mvmoe_status mvmoe_model_predict(mvmoe_model *m, const uint8_t *images, int n, float *logits,
                                 int32_t *routes);

/* ---------------------------------------------------------------- ONNX export */
typedef struct mvmoe_export_options {
    /* 1: the products --precision int8 runs in int8 (patch embedding, qkv, proj, fc1, fc2,
     * experts) as DynamicQuantizeLinear -> MatMulInteger with the int8 weights and per-output-
     * channel scales of mvmoe_model_save_int8 (zero point 0); router and head stay float32.
     * The activations are quantized per tensor (uint8), not per token as mvmoe does. */
    int int8;
} mvmoe_export_options;

/* Writes m as one ONNX model file (opset 17, IR version 8; docs/EXPORT.md), atomically.
 * Input "pixels": float32 [N, C, H, W], the uint8 image values / 255 (the checkpoint's mean/std
 * are applied inside); outputs "logits" float32 [N, num_classes] and, for per-image MoE
 * models, "routes" int64 [N, top_k] (each image's experts, most probable first). Dense and
 * per-image routing (image-superclass, image-learned); token-learned routing and adaptive k
 * give MVMOE_ERR_UNSUPPORTED. No control flow (If/Loop): a batch of one computes only
 * its k experts, gathered from the stacked expert weights. o may be NULL. */
mvmoe_status mvmoe_export_onnx(const mvmoe_model *m, const char *path, const mvmoe_export_options *o);

/* ---------------------------------------------------------------- data */
typedef struct mvmoe_dataset {
    int n, c, h, w;      /* images are uint8 [n, c, h, w] */
    int num_classes;
    uint8_t *images;
    int32_t *labels;     /* [n] in 0 .. num_classes-1 */
    int32_t *coarse;     /* [n] CIFAR-100 coarse labels, else NULL */
    int num_coarse;
    char **class_names;  /* [num_classes], owned, or NULL */
    char *source;        /* path it came from (for messages) */
} mvmoe_dataset;

/* Loads `split` ("train" or "test") of an IDX folder (MNIST/Fashion-MNIST, .gz or not),
 * a CIFAR-10/100 binary folder, or an image-folder dataset (DIR/SPLIT/CLASS/IMAGE.jpg or .png).
 * For image folders, `img_size` > 0 sets the stored size: resized (shorter side) then
 * center-cropped; 0 for fixed-size formats. max_images > 0 caps how many are read. */
mvmoe_status mvmoe_dataset_load(mvmoe_dataset *ds, const char *dir, const char *split,
                                int img_size, int max_images);
void mvmoe_dataset_free(mvmoe_dataset *ds);
/* Relabels an image-folder dataset by a model's class names (names[K], e.g. the checkpoint's):
 * each of the dataset's classes is matched by name and its images take that class's index,
 * so a split that lacks classes or orders them otherwise is scored against the right ones.
 * An error names the first class the model does not know. No-op when either side has no
 * names or the dataset is not an image folder (IDX and CIFAR labels are fixed by the format). */
mvmoe_status mvmoe_dataset_match_classes(mvmoe_dataset *ds, const char *const *names, int K);

/* Deterministic split of 0..n-1 into train / validation index lists (fraction `val` held
 * out, per class stratified, fixed by seed). Caller frees both arrays with free(). */
mvmoe_status mvmoe_dataset_split(const mvmoe_dataset *ds, float val, uint64_t seed,
                                 int32_t **train_idx, int *n_train, int32_t **val_idx,
                                 int *n_val);

/* Decodes one PNG/JPEG into uint8 [C, S, S]: gray or RGB, shorter side resized to S, center
 * crop (what `predict` feeds the model). *out is allocated; free() it. */
mvmoe_status mvmoe_image_load(const char *path, int C, int S, uint8_t **out);

/* ---------------------------------------------------------------- training */
typedef struct mvmoe_train_options {
    int epochs;
    int batch;
    float lr, min_lr, weight_decay, beta1, beta2, eps;
    float warmup_epochs;
    float clip_norm;        /* <= 0: no clipping */
    float label_smoothing;
    uint64_t seed;
    float val_fraction;     /* held out of the training set (fixed by seed) */
    /* augmentation (DeiT recipe, small-scale defaults) */
    int crop_pad;           /* random crop with this padding; 0: off */
    int hflip;              /* random horizontal flip */
    int rrc;                /* random-resized-crop (image folders) */
    float drop_path;        /* stochastic depth rate (max, linearly increasing) */
    float mixup, cutmix;    /* alpha; 0: off */
    int randaug_n, randaug_m;
    float erase_prob;       /* random erasing */
    float ema_decay;        /* 0: off */
    float superclass_lambda; /* λ of the router loss (image-superclass routing) */
    float aux_weight;       /* weight of the load-balancing losses (image-/token-learned) */
    float capacity_ratio;   /* token-learned: expert capacity factor in training; 0: none */
    int threads;            /* 0: all cores */
    int eval_every;         /* epochs between validation passes; 0: only at the end */
    const char *out_path;   /* checkpoint written at each epoch end and at the end */
    const char *resume_path; /* optimizer state + step read from here if set */
    int max_steps;          /* > 0: stop after this many steps (tests, benchmarks) */
    int keep_every;         /* > 0: at every keep_every-th epoch end, also keep the weights as
                               OUT.epochN.safetensors (N = epochs done; e.g. to upcycle from) */
    int expert_parallel;    /* 1: per-image expert parallelism over the ranks (MoE models with
                               one router per image, top-1, ranks dividing the experts;
                               docs/SCALING.md); 0: data parallel */
} mvmoe_train_options;

void mvmoe_train_options_default(mvmoe_train_options *o);

typedef struct mvmoe_progress {
    int epoch, epochs;
    int64_t step, steps_total;      /* global optimizer step */
    int step_in_epoch, steps_per_epoch;
    float loss, lr, grad_norm;
    double images_per_s, eta_s, elapsed_s;
    int event;                      /* 0: step, 1: epoch end (val fields valid), 2: done */
    float train_acc, val_acc, val_loss; /* val_acc < 0: not measured */
    /* data parallel (event 0): this step's seconds in the cross-rank sums (MPI_Wtime around
     * them, waiting for the slowest rank included) and the bytes each rank sends in them (a
     * ring all-reduce's 2(N−1)/N per byte summed); 0 in one process */
    double comm_s, comm_bytes;
    /* expert parallel (event 0): the bytes this rank sent to other ranks in this step's
     * all-to-alls (images there, their gradients back; comm_s includes their time) */
    double a2a_bytes;
} mvmoe_progress;

typedef void (*mvmoe_progress_fn)(const mvmoe_progress *p, void *user);

/* Trains `m` on `train_idx` of `ds`, validating on `val_idx` (may be empty). Blocks. Every
 * step is the library's one training step (pack weights, forward, loss, backward, clip, AdamW;
 * src/train/step.c), the same one `mvmoe bench` times; the MoE loss settings above are
 * options of the run, not properties of the model. */
mvmoe_status mvmoe_train(mvmoe_model *m, const mvmoe_dataset *ds, const int32_t *train_idx,
                         int n_train, const int32_t *val_idx, int n_val,
                         const mvmoe_train_options *o, mvmoe_progress_fn cb, void *user);

/* ---------------------------------------------------------------- evaluation */
/* MoE measures (routing != dense). For per-image routing an "assignment" is an image sent to
 * one of its top_k experts; for token-learned routing, a token in one MoE block. */
typedef struct mvmoe_moe_eval {
    int experts;
    double router_acc;        /* image-*: fraction whose top-1 expert == superclass_of[label]
                                 (< 0 when the model has no super-class map) */
    int64_t *expert_load;     /* [experts] assignments per expert (all k choices, all blocks) */
    int64_t *expert_images;   /* [experts] images whose top-1 expert is e (image-* routing) */
    double *expert_acc;       /* [experts] top-1 accuracy of those images (< 0 if none) */
    double experts_per_item;  /* kept choices per router item (image, or token per block): top_k,
                                 or fewer with adaptive k */
    /* image-* with a super-class map: images whose top-1 expert is not their class's
     * super-class, and the top-1 accuracy of those and of the others (< 0 when undefined) */
    int64_t misrouted;
    double misrouted_acc, routed_acc;
    int32_t *routes;          /* [n, top_k] image-* routing: each image's experts, most probable
                                 first (-1: a choice adaptive k did not run); else NULL */
} mvmoe_moe_eval;

typedef struct mvmoe_eval_result {
    int n, num_classes;
    double top1, top5, loss;  /* accuracies in [0,1], mean cross-entropy */
    int64_t *confusion;       /* [num_classes * num_classes], row = true, col = predicted */
    double *per_class;        /* [num_classes] accuracy */
    mvmoe_moe_eval moe;       /* experts == 0 for dense models */
} mvmoe_eval_result;

/* Evaluates on `idx` (NULL: all images). logits_out, if not NULL, receives [n, K]. Runs the
 * inference forward (src/model/evaluate.c, next to mvmoe_model_logits); the trainer's
 * validation calls it too. */
mvmoe_status mvmoe_evaluate(mvmoe_model *m, const mvmoe_dataset *ds, const int32_t *idx, int n,
                            int batch, mvmoe_eval_result *r, float *logits_out);
void mvmoe_eval_result_free(mvmoe_eval_result *r);
/* FLOPs per image an evaluation spent: mvmoe_config_flops at the experts per item it measured
 * (with adaptive k, fewer than the config's top_k). */
double mvmoe_eval_flops(const mvmoe_config *c, const mvmoe_eval_result *r);

/* ---------------------------------------------------------------- eval-result JSON
 * The one form an evaluation takes on disk (src/io/eval_json.c): `mvmoe eval --json` prints
 * it; `mvmoe superclasses --confusion` and `mvmoe report` read it with the same reader. */
typedef struct mvmoe_eval_meta {
    const char *model, *data, *split; /* what was evaluated, as the file records it */
    const char *logits;               /* the raw logits file written beside it, or NULL */
    const char *const *class_names;   /* [num_classes]; NULL entries (or NULL): the index */
    float adaptive_k;                 /* the threshold the model ran with (0: off) */
} mvmoe_eval_meta;

/* One line of JSON (no newline) for evaluation r of a model of config c; free *json. */
mvmoe_status mvmoe_eval_json_format(const mvmoe_eval_result *r, const mvmoe_config *c,
                                    const mvmoe_eval_meta *meta, char **json);

/* The confusion matrix of an eval JSON file and what describes it. */
typedef struct mvmoe_eval_confusion {
    int K, n;            /* classes; images evaluated (0: unknown) */
    int64_t *confusion;  /* [K*K] row = true, col = predicted */
    char **class_names;  /* [K] owned, entries may be NULL; or NULL */
    double top1;         /* < 0: unknown */
} mvmoe_eval_confusion;

/* Reads an eval JSON file (size-capped) whose "confusion" matrix is required; every field
 * present is checked, and a malformed one fails with a message naming the file and field. */
mvmoe_status mvmoe_eval_confusion_load(const char *path, mvmoe_eval_confusion *out);
void mvmoe_eval_confusion_free(mvmoe_eval_confusion *c);

/* ---------------------------------------------------------------- super-classes
 * Paper Sec. 3.2: cluster the dense model's confusion graph into E super-classes. */
typedef enum { MVMOE_PARTITION_METIS = 0, MVMOE_PARTITION_SPECTRAL } mvmoe_partition_method;

/* Partitions K classes into E balanced groups from a confusion matrix [K*K] (row = true,
 * col = predicted): graph weights w(i,j) = C[i][j] + C[j][i], i != j. superclass_of [K]
 * receives 0..E-1; every group is non-empty. Deterministic for a given seed. */
mvmoe_status mvmoe_superclass_partition(const int64_t *confusion, int K, int E,
                                        mvmoe_partition_method method, uint64_t seed,
                                        int *superclass_of);
/* Reads a class -> super-class map: a JSON file with "superclass_of": [K ints] (what
 * `mvmoe superclasses` writes), or a text file of K integers. Checks 0 <= s < E and that every
 * super-class is used, and the JSON extras ("experts", "sizes", "groups", "method",
 * "source") where present, as `mvmoe report` reads them (one reader); *E_out receives the
 * number of super-classes. Nothing is written on failure. */
mvmoe_status mvmoe_superclass_map_load(const char *path, int K, int *superclass_of, int *E_out);
/* Writes the JSON map (superclass_of, experts, sizes, groups by class name, method, source). */
mvmoe_status mvmoe_superclass_map_save(const char *path, const int *superclass_of, int K, int E,
                                       const char *const *class_names, const char *method,
                                       const char *source);

/* How a confusion matrix [K*K] (row = true, col = predicted) splits over a map: the diagonal,
 * the mistakes within one super-class, and those across. */
typedef struct mvmoe_superclass_stats {
    int64_t correct, within, across;
} mvmoe_superclass_stats;
/* superclass_of [K] in 0..E-1; sizes [E] (or NULL) receives each super-class's class count. */
mvmoe_superclass_stats mvmoe_superclass_confusion_stats(const int64_t *confusion, int K,
                                                        const int *superclass_of, int E, int *sizes);

/* A partition and what it was computed from, as `mvmoe superclasses --json` reports it. */
typedef struct mvmoe_superclass_summary {
    const char *out;                /* the map file written */
    const char *source;             /* what the confusion matrix came from (the map's "source") */
    const char *method;             /* "metis" or "spectral" */
    uint64_t seed;
    int K, E;                       /* classes, super-classes */
    int images;                     /* images evaluated; 0: unknown (null) */
    double top1;                    /* < 0: unknown (null) */
    const int64_t *confusion;       /* [K*K] row = true, col = predicted */
    const char *const *class_names; /* [K]; NULL entries (or NULL): the index */
    const int *superclass_of;       /* [K] in 0..E-1 */
} mvmoe_superclass_summary;
/* One line of JSON (no newline): out, source, method, seed, num_classes, experts, images, top1,
 * the mvmoe_superclass_stats counts and within_fraction, superclass_of, sizes, groups (class
 * names), and class_names + confusion in `mvmoe eval --json` form (so it works as
 * `superclasses --confusion`); free *json. */
mvmoe_status mvmoe_superclass_summary_json(const mvmoe_superclass_summary *s, char **json);

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): the one clock behind step times,
 * progress lines and benchmarks. Only differences of two readings mean anything. */
double mvmoe_clock_seconds(void);

/* Threads used by the library's kernels (OpenMP). 0: all cores. */
void mvmoe_set_threads(int n);

/* Precision of the layers' linear products, for the whole process (default FP32).
 * MVMOE_PRECISION_BF16 rounds both operands of those products to bfloat16 and keeps the sums
 * in fp32, on the CPU's AMX / AVX-512 BF16 units: several times faster products, but results
 * that are no longer fp32's (no parity with PyTorch to float tolerance; accuracy measured in
 * docs/PERFORMANCE.md, "bf16 products"). Attention, normalization, activations, the loss and
 * the optimizer stay fp32. MVMOE_ERR_UNSUPPORTED if this CPU has no bf16 kernel. Set it
 * before training or inference starts, not while another thread runs the library. */
/* MVMOE_PRECISION_INT8 (inference only: training refuses it) runs the same products with
 * int8 weights (symmetric, per output channel, quantized once with the packed copies) and
 * int8 activations (per token, at run time), int32 sums, fp32 out; the router, the head,
 * attention, normalization and activations stay fp32 (docs/EDGE.md, "int8"). Plain C where
 * the CPU lacks AVX-512 VNNI, with the same results. */
typedef enum { MVMOE_PRECISION_FP32 = 0, MVMOE_PRECISION_BF16, MVMOE_PRECISION_INT8 } mvmoe_precision;
mvmoe_status mvmoe_set_precision(mvmoe_precision p);
mvmoe_precision mvmoe_get_precision(void);
/* "fp32", "bf16" or "int8" */
const char *mvmoe_precision_name(mvmoe_precision p);

/* Asks a running mvmoe_train to save a checkpoint at the end of the current step and return
 * MVMOE_ERR_INTERRUPTED. Async-signal-safe and thread-safe. Call it from a thread that waits
 * for SIGINT/SIGTERM (sigwait, with the signals blocked in every other thread), not from a
 * handler that may interrupt a computing thread: oneDNN 2.6's JIT sgemm runs with its stack
 * pointer on a heap buffer, and a handler's signal frame written there corrupts the heap
 * (cli/stopsig.c). */
void mvmoe_request_stop(void);

/* ---------------------------------------------------------------- data-parallel training
 * `mpirun -np N mvmoe train ...` (docs/SCALING.md): each rank trains on its contiguous share
 * of every global batch, the gradients are summed across ranks before clipping and AdamW, so
 * every rank keeps the same weights and optimizer state. */

/* Starts MPI when the process was launched by mpirun (OMPI_COMM_WORLD_SIZE or PMIX_SIZE in the
 * environment), otherwise does nothing: one process is rank 0 of 1. Call it once, before
 * mvmoe_train, from the main thread, after blocking SIGINT/SIGTERM (threads MPI starts inherit
 * the mask). Fails when launched with several ranks by a build without MPI. */
mvmoe_status mvmoe_dist_init(void);
int mvmoe_dist_rank(void); /* 0 without MPI */
int mvmoe_dist_size(void); /* 1 without MPI */
/* 1 when MVMOE_OVERLAP_ALLREDUCE=1 was in the environment at mvmoe_dist_init and there are
 * several ranks: the training step then starts each tensor's gradient sum (MPI_Iallreduce) as
 * soon as the backward has finished it, instead of one MPI_Allreduce after the backward
 * (docs/SCALING.md). The ranks' inputs check compares it: a blocking and a non-blocking sum
 * never meet. */
int mvmoe_dist_overlap(void);
/* 1 when the last error is one every rank met alike before training (mismatched inputs, N
 * larger than the batch, ...): no rank waits in a collective, so the job need not be aborted
 * and rank 0's message is enough. */
int mvmoe_dist_failed_together(void);
/* Ends every rank of the job with `code` (MPI_Abort); returns only when MPI is not running. */
void mvmoe_dist_abort(int code);
/* MPI_Finalize when mvmoe_dist_init started MPI; then one process again. */
void mvmoe_dist_finalize(void);

/* ---------------------------------------------------------------- benchmarks
 * What `mvmoe bench` and build/bench/peak measure (docs/PERFORMANCE.md, "Benchmarks").
 * Times are wall-clock (CLOCK_MONOTONIC); FLOPs count 2 per multiply-add. */

/* FP32 peak: independent FMA chains (AVX-512 if the CPU has it, else AVX2) on `threads`
 * threads for about `seconds`. *isa (may be NULL) receives "avx512f" or "avx2". */
mvmoe_status mvmoe_bench_peak_gflops(int threads, double seconds, double *gflops,
                                     const char **isa);
/* STREAM triad a = b + s·c on three arrays of bytes_per_array; best of `reps`; GB/s counting
 * the 3 arrays once (STREAM's convention). */
mvmoe_status mvmoe_bench_triad_gbs(int threads, size_t bytes_per_array, int reps, double *gbs);

typedef struct mvmoe_bench_options {
    int batch;            /* training batch */
    int warmup, steps;    /* untimed, then timed training steps */
    int infer_batch;      /* throughput batch */
    int infer_reps;       /* timed throughput passes (after one warm-up) */
    int latency_reps;     /* timed batch-1 passes (after a few warm-ups) */
    int threads;          /* 0: all cores */
    uint64_t seed;        /* random inputs and labels */
    double peak_gflops;   /* > 0: the FP32 peak at `threads`; else measured (~0.3 s) */
    const char *check_path; /* if set: 8 random uint8 images and their logits (before any
                               training step) as safetensors "images" [8,C,S,S] (F32 0..255)
                               and "logits" [8,K], so other frameworks can check they compute
                               the same function */
    int inference_only;   /* 1: no training steps (their results stay 0): what int8, an
                             inference-only precision, can be timed on */
} mvmoe_bench_options;

typedef struct mvmoe_bench_result {
    int threads;
    /* training step: forward, loss, backward, gradient clipping, AdamW (trainer defaults);
     * random normalized inputs, no augmentation */
    double step_ms_median, step_ms_min, step_ms_max, step_ms_p10, step_ms_p90;
    double train_images_per_s;   /* batch / median step time */
    /* where a step's time goes, median ms of each phase over the timed steps: packing the
     * weights, forward + loss, backward, optimizer (gradient clipping + AdamW) */
    double phase_ms_pack, phase_ms_forward, phase_ms_backward, phase_ms_optimizer;
    double loss_first, loss_last;
    /* inference on random uint8 images through mvmoe_model_logits */
    double latency_ms_median, latency_ms_p10, latency_ms_p90; /* batch 1 */
    double infer_images_per_s;   /* batch infer_batch, median pass */
    /* cost */
    double flops_per_image;      /* forward (mvmoe_config_flops); training counts 3x */
    double peak_gflops;
    int peak_measured;           /* 1: measured here, 0: given */
    double train_mfu, infer_mfu, latency_mfu; /* achieved / peak */
    /* memory: training footprint as allocated (params, grads, 2 AdamW moments, activation
     * workspace; arenas padded per tensor) against the process's peak resident set
     * (getrusage ru_maxrss: the whole process, all runs so far); params = num_params */
    size_t params, bytes_params, bytes_grads, bytes_adam, bytes_train_acts, bytes_infer_acts;
    size_t bytes_train_total;    /* params + grads + adam + train acts */
    size_t peak_rss_bytes;
} mvmoe_bench_result;

void mvmoe_bench_options_default(mvmoe_bench_options *o);
/* The vector width our own kernels (GELU, attention) run at: "avx512" or "avx2" (chosen at
 * run time; MVMOE_ISA=avx2 in the environment forces the narrower one). Their results do not
 * depend on it. */
const char *mvmoe_kernel_isa(void);
/* The GEMM library and its version, e.g. "oneDNN 2.6.3" (its kernels are chosen by CPU). */
const char *mvmoe_gemm_library(void);
/* Measures training steps (unless o->inference_only), then batch-1 latency and batch
 * throughput at o->threads, in the current precision (mvmoe_set_precision). Takes optimizer
 * steps on m (its weights change; save them first if they matter). */
mvmoe_status mvmoe_bench_run(mvmoe_model *m, const mvmoe_bench_options *o, mvmoe_bench_result *r);

/* ---------------------------------------------------------------- memory
 * Bytes a model of config c will take, computed before allocating anything: its weights;
 * for batch > 0 also one inference pass of `batch` images (mvmoe_evaluate's arena and
 * confusion matrix); when training also the gradients, the two AdamW moments and the
 * training activations for `batch`. Datasets are not included. SIZE_MAX for an invalid config
 * or a size beyond size_t. Lets callers refuse a model or batch that cannot fit (--max-memory)
 * instead of being killed or swapping. */
size_t mvmoe_model_memory_estimate(const mvmoe_config *c, int batch, int training);

/* ---------------------------------------------------------------- report
 * `mvmoe report`: one self-contained HTML page (inline SVG and CSS, no script, nothing
 * fetched) that compares evaluated models -- a table (top-1/top-5 mean and sample std over
 * seeds, FLOPs, parameters, router accuracy, difference to the dense model of the same
 * width), accuracy vs FLOPs (the paper's Fig. 1), the confusion matrix ordered by
 * super-class, each MoE model's expert load and per-expert accuracy, the super-classes --
 * and optionally the same numbers as JSON. Inputs are the files `mvmoe eval --json` prints
 * and the map `mvmoe superclasses` writes; absent fields leave their part out, malformed ones
 * fail with a message naming the file and field. Nothing is written unless all succeeds. */
typedef struct mvmoe_report_run {
    const char *name;      /* runs with the same name are one model over several seeds */
    const char *eval_path; /* output of `mvmoe eval --json` */
} mvmoe_report_run;

/* A training's metrics (`mvmoe train --metrics`, JSON Lines) for the learning-curve figure;
 * curves with the same name are one model over several seeds. */
typedef struct mvmoe_report_curve {
    const char *name;
    const char *metrics_path;
} mvmoe_report_curve;

typedef struct mvmoe_report_options {
    const char *html_path;       /* required */
    const char *json_path;       /* NULL: no JSON summary */
    const char *title;           /* NULL: "Mobile V-MoE report" */
    const char *superclass_path; /* NULL: none; else a map as `mvmoe superclasses` writes */
    const char *confusion_path;  /* eval JSON whose confusion matrix is drawn; NULL: the first
                                    dense run's */
    const mvmoe_report_curve *curves; /* validation accuracy per epoch; NULL / 0: no figure */
    int n_curves;
} mvmoe_report_options;

mvmoe_status mvmoe_report_write(const mvmoe_report_run *runs, int n_runs, const mvmoe_report_options *o);

#ifdef __cplusplus
}
#endif
#endif
