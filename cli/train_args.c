/* `mvmoe train` flags: table-driven numbers (each range-checked), switches, and the checks
 * between flags that need no data. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "precision.h"
#include "train_args.h"

static const char SYNOPSIS[] =
    "usage: mvmoe train --data DIR --out CKPT.safetensors [--preset NAME | model flags]\n"
    "                   [training flags] [--metrics FILE.jsonl] [--resume | --init CKPT]\n";

void mvmoe_train_args_help(void) {
    mvmoe_train_options d;
    mvmoe_train_options_default(&d);
    printf("%s\n", SYNOPSIS);
    printf("Trains a Vision Transformer on DIR's train split (IDX/Fashion-MNIST, CIFAR-10/100\n"
           "binary, or DIR/train/CLASS/*.png|jpg), holding out a validation part, writes the\n"
           "checkpoint to CKPT (also at each epoch end), then evaluates on DIR's test split.\n\n");
    printf("Required:\n"
           "  --data DIR            dataset folder\n"
           "  --out CKPT            checkpoint to write (.safetensors)\n\n");
    printf("Model (the preset, overridden by any flag given; image size, channels, classes and\n"
           "the input mean/std come from the dataset):\n"
           "  --preset NAME         model preset (default %s; 'mvmoe presets' lists them)\n"
           "  --img-size N          input size (default: the dataset's; image folders: the preset's)\n"
           "  --in-chans N          input channels (must match the dataset)\n"
           "  --patch N  --dim N  --depth N  --heads N  --mlp-dim N\n"
           "  --routing NAME        dense, image-superclass, image-learned or token-learned\n"
           "  --experts N  --top-k N  --moe-layers N   (MoE defaults: 4 experts or the map's\n"
           "                        super-classes, top-1, the last 2 blocks)\n"
           "  --superclasses MAP    class -> super-class map (from 'mvmoe superclasses', or a text\n"
           "                        file of one integer per class); implies image-superclass routing\n"
           "  --upcycle DENSE       start the MoE from a trained dense model of the same shape: experts\n"
           "                        copy its MLPs, the router starts fresh (docs/MOE.md)\n\n",
           MVMOE_TRAIN_DEFAULT_PRESET);
    printf("Training (defaults in brackets):\n"
           "  --epochs N [%d]  --batch N [%d]  --lr X [%g]  --min-lr X [%g]\n"
           "  --weight-decay X [%g]  --warmup EPOCHS [%g]  --clip X (0: off) [%g]\n"
           "  --label-smoothing X [%g]  --seed N [%llu]  --val-fraction X [%g]\n"
           "  --eval-every N (epochs; 0: at the end only) [%d]\n"
           "  --max-steps N (0: no limit) [%d]\n"
           "  --max-images N (read only the first N images of the train and test splits; 0: all) [0]\n"
           "  --threads N (0: all cores) [%d]\n"
           "  --expert-parallel     under mpirun: spread the experts over the ranks and send each\n"
           "                        image to its (first) expert's rank (per-image routing, ranks\n"
           "                        dividing the experts; docs/SCALING.md); default: data parallel\n"
           MVMOE_CLI_MEMLIMIT_HELP MVMOE_CLI_PRECISION_HELP "\n",
           d.epochs, d.batch, (double)d.lr, (double)d.min_lr, (double)d.weight_decay,
           (double)d.warmup_epochs, (double)d.clip_norm, (double)d.label_smoothing,
           (unsigned long long)d.seed, (double)d.val_fraction, d.eval_every, d.max_steps,
           d.threads);
    printf("Augmentation and regularization:\n"
           "  --crop-pad N [%d]  --hflip | --no-hflip [%s]  --rrc | --no-rrc [%s]\n"
           "  --drop-path X [%g]  --mixup ALPHA [%g]  --cutmix ALPHA [%g]\n"
           "  --randaug N,M (0,0: off) [%d,%d]  --erase P [%g]  --ema DECAY (0: off) [%g]\n"
           "  --superclass-lambda X (image-superclass router loss weight) [%g]\n"
           "  --aux-weight X        (learned routing: importance + load loss weight) [%g]\n"
           "  --capacity-ratio X    (token-learned: expert capacity in training; 0: none) [%g]\n\n",
           d.crop_pad, d.hflip ? "on" : "off", d.rrc ? "on" : "off", (double)d.drop_path,
           (double)d.mixup, (double)d.cutmix, d.randaug_n, d.randaug_m, (double)d.erase_prob,
           (double)d.ema_decay, (double)d.superclass_lambda, (double)d.aux_weight,
           (double)d.capacity_ratio);
    printf("Output and continuation:\n"
           "  --metrics FILE        JSON Lines metrics (default: CKPT.metrics.jsonl)\n"
           "  --metrics-every N     steps between metrics lines (epoch ends always) [10]\n"
           "  --keep-every N        also keep the weights of every N-th epoch end as\n"
           "                        CKPT-stem.epochE.safetensors (0: off) [0]\n"
           "  --resume              continue the run saved in CKPT (weights, optimizer, step)\n"
           "  --init CKPT0          start from CKPT0's weights (fine-tuning)\n\n"
           "Exit status: 0 done, 1 failure, 2 usage error, 130 interrupted (Ctrl-C / SIGTERM;\n"
           "the checkpoint is saved first, continue with --resume).\n");
}



/* Training-option flags: a float in mvmoe_train_options at `offset`, in [lo, hi]. */
typedef struct {
    const char *flag;
    size_t offset;
    double lo, hi;
    int open;
} float_flag;

static const float_flag option_floats[] = {
    {"--lr", offsetof(mvmoe_train_options, lr), 0, 10, MVMOE_ARGS_LO_OPEN},
    {"--min-lr", offsetof(mvmoe_train_options, min_lr), 0, 10, 0},
    {"--weight-decay", offsetof(mvmoe_train_options, weight_decay), 0, 1, MVMOE_ARGS_HI_OPEN},
    {"--warmup", offsetof(mvmoe_train_options, warmup_epochs), 0, 1e6, 0},
    {"--clip", offsetof(mvmoe_train_options, clip_norm), 0, 1e9, 0},
    {"--label-smoothing", offsetof(mvmoe_train_options, label_smoothing), 0, 1, MVMOE_ARGS_HI_OPEN},
    {"--val-fraction", offsetof(mvmoe_train_options, val_fraction), 0, 1, MVMOE_ARGS_HI_OPEN},
    {"--drop-path", offsetof(mvmoe_train_options, drop_path), 0, 1, MVMOE_ARGS_HI_OPEN},
    {"--mixup", offsetof(mvmoe_train_options, mixup), 0, 100, 0},
    {"--cutmix", offsetof(mvmoe_train_options, cutmix), 0, 100, 0},
    {"--erase", offsetof(mvmoe_train_options, erase_prob), 0, 1, 0},
    {"--ema", offsetof(mvmoe_train_options, ema_decay), 0, 1, MVMOE_ARGS_HI_OPEN},
    {"--superclass-lambda", offsetof(mvmoe_train_options, superclass_lambda), 0, 100, 0},
    {"--aux-weight", offsetof(mvmoe_train_options, aux_weight), 0, 100, 0},
    {"--capacity-ratio", offsetof(mvmoe_train_options, capacity_ratio), 0, 1000, 0},
};
#define N_OPTION_FLOATS (sizeof option_floats / sizeof option_floats[0])

/* Training-option ints in mvmoe_train_options. */
static const mvmoe_cli_int_flag option_ints[] = {
    {"--epochs", offsetof(mvmoe_train_options, epochs), 1, 1000000},
    {"--batch", offsetof(mvmoe_train_options, batch), 1, 65536},
    {"--crop-pad", offsetof(mvmoe_train_options, crop_pad), 0, 1024},
    {"--threads", offsetof(mvmoe_train_options, threads), 0, 4096},
    {"--eval-every", offsetof(mvmoe_train_options, eval_every), 0, 1000000},
    {"--max-steps", offsetof(mvmoe_train_options, max_steps), 0, 2147483647L},
    {"--keep-every", offsetof(mvmoe_train_options, keep_every), 0, 1000000},
};
#define N_OPTION_INTS (sizeof option_ints / sizeof option_ints[0])

/* Returns 1 if the current flag was one of the table-driven ones (*rc set), else 0. */
static int table_flag(mvmoe_args *a, train_args *t, int *rc) {
    if (mvmoe_cli_shape_flag(a, &t->shape, 0, rc)) return 1;
    const mvmoe_cli_int_flag *f = mvmoe_cli_int_flag_parse(a, option_ints, N_OPTION_INTS, &t->o, rc);
    if (f) {
        if (*rc == 0 && strcmp(f->flag, "--threads") == 0) t->threads_given = 1;
        return 1;
    }
    for (size_t k = 0; k < N_OPTION_FLOATS; k++)
        if (mvmoe_args_is(a, option_floats[k].flag)) {
            const float_flag *f = &option_floats[k];
            *rc = mvmoe_args_float(a, f->lo, f->hi, f->open, (float *)((char *)&t->o + f->offset));
            return 1;
        }
    return 0;
}

int mvmoe_train_args_parse(train_args *t, int argc, char **argv) {
    memset(t, 0, sizeof *t);
    mvmoe_train_options_default(&t->o);
    mvmoe_cli_shape_init(&t->shape);

    mvmoe_args a;
    mvmoe_args_init(&a, "train", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (every input is given by a flag, e.g. --data DIR)", pos);
        if (table_flag(&a, t, &rc)) continue;
        if (mvmoe_cli_memlimit_flag(&a, &t->mem, &rc)) continue;
        if (mvmoe_cli_precision_flag(&a, "train", &rc)) continue;
        if (mvmoe_args_is(&a, "--data")) rc = mvmoe_args_str(&a, &t->data);
        else if (mvmoe_args_is(&a, "--out")) rc = mvmoe_args_str(&a, &t->out);
        else if (mvmoe_args_is(&a, "--preset")) rc = mvmoe_args_str(&a, &t->preset);
        else if (mvmoe_args_is(&a, "--metrics")) rc = mvmoe_args_str(&a, &t->metrics);
        else if (mvmoe_args_is(&a, "--init")) rc = mvmoe_args_str(&a, &t->init);
        else if (mvmoe_args_is(&a, "--superclasses")) rc = mvmoe_args_str(&a, &t->superclasses);
        else if (mvmoe_args_is(&a, "--upcycle")) rc = mvmoe_args_str(&a, &t->upcycle);
        else if (mvmoe_args_is(&a, "--resume")) { rc = mvmoe_args_switch(&a); t->resume = 1; }
        else if (mvmoe_args_is(&a, "--hflip")) { rc = mvmoe_args_switch(&a); t->o.hflip = 1; }
        else if (mvmoe_args_is(&a, "--no-hflip")) { rc = mvmoe_args_switch(&a); t->o.hflip = 0; }
        else if (mvmoe_args_is(&a, "--expert-parallel")) { rc = mvmoe_args_switch(&a); t->o.expert_parallel = 1; }
        else if (mvmoe_args_is(&a, "--rrc")) { rc = mvmoe_args_switch(&a); t->o.rrc = 1; }
        else if (mvmoe_args_is(&a, "--no-rrc")) { rc = mvmoe_args_switch(&a); t->o.rrc = 0; }
        else if (mvmoe_args_is(&a, "--seed")) rc = mvmoe_args_u64(&a, &t->o.seed);
        else if (mvmoe_args_is(&a, "--metrics-every")) rc = mvmoe_args_int(&a, 1, 2147483647L, &t->metrics_every);
        else if (mvmoe_args_is(&a, "--max-images")) rc = mvmoe_args_int(&a, 0, 2147483647L, &t->max_images);
        else if (mvmoe_args_is(&a, "--randaug")) {
            /* RandAugment (Cubuk et al. 2020): N ops of magnitude M, M on timm's 0..10 scale */
            static const long lo[2] = {0, 0}, hi[2] = {16, 10};
            int nm[2] = {0, 0};
            rc = mvmoe_args_ints(&a, 2, lo, hi, nm);
            t->o.randaug_n = nm[0];
            t->o.randaug_m = nm[1];
        } else if (mvmoe_args_is(&a, "--routing")) {
            const char *name;
            rc = mvmoe_args_str(&a, &name);
            if (rc == 0 && mvmoe_routing_parse(name, &t->routing) != MVMOE_OK)
                rc = mvmoe_args_error(&a, "invalid value '%s' for --routing: use dense, image-superclass, image-learned or token-learned", name);
            t->routing_given = 1;
        } else {
            return mvmoe_args_unknown(&a);
        }
    }
    if (rc) return rc;
    if (t->o.min_lr > t->o.lr)
        return mvmoe_args_error(&a, "--min-lr %g is above --lr %g: the schedule decays from lr down to min-lr",
                                (double)t->o.min_lr, (double)t->o.lr);
    if (!t->data) return mvmoe_args_error(&a, "--data DIR is required");
    if (!t->out) return mvmoe_args_error(&a, "--out CKPT is required");
    if (t->resume && t->init)
        return mvmoe_args_error(&a, "--resume and --init exclude each other (--resume continues '%s' itself)", t->out);
    int arch = t->preset || t->routing_given;
    arch |= mvmoe_cli_shape_given(&t->shape, 0);
    if ((t->resume || t->init) && arch)
        return mvmoe_args_error(&a, "--preset and the model-shape flags cannot be combined with %s: the model comes from the checkpoint",
                                t->resume ? "--resume" : "--init");
    if ((t->resume || t->init) && (t->superclasses || t->upcycle))
        return mvmoe_args_error(&a, "--superclasses and --upcycle describe a new model; they cannot be combined with %s",
                                t->resume ? "--resume" : "--init");
    if (t->resume && t->shape.img_size >= 0)
        return mvmoe_args_error(&a, "--img-size cannot be combined with --resume: the run continues at the checkpoint's size");
    return 0;
}
