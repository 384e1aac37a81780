/* Image-folder datasets (torchvision ImageFolder layout): DIR/SPLIT/CLASS/IMAGE with IMAGE
 * a .jpg, .jpeg or .png file.
 * Classes are the sorted sub-folder names (byte order, like Python's sorted), labels their
 * index; files are taken in sorted order, decoded, resized (shorter side) and center-cropped to
 * img_size, stored RGB. Decoding runs in parallel (OpenMP); the first failure is reported. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"
#include "data/imageio.h"
#include "data/loaders.h"

#define FOLDER_MAX_CLASSES (1 << 20)

typedef struct {
    char **s;
    int n, cap;
} strlist;

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static mvmoe_status strlist_push(strlist *l, const char *v, const char *where) {
    if (l->n == l->cap) {
        if (l->cap >= INT_MAX / 2) MVMOE_FAIL(MVMOE_ERR_NOMEM, "too many entries in %s", where);
        int ncap = l->cap ? 2 * l->cap : 16;
        char **ns = realloc(l->s, (size_t)ncap * sizeof *ns);
        if (!ns) MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot list the entries of %s", where);
        l->s = ns;
        l->cap = ncap;
    }
    l->s[l->n] = strdup(v);
    if (!l->s[l->n]) MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot list the entries of %s", where);
    l->n++;
    return MVMOE_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0);
}

/* Sorted names in dir: sub-folders (want_dirs) or image files; hidden entries skipped. */
static mvmoe_status list_dir(const char *dir, int want_dirs, strlist *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) MVMOE_FAIL(MVMOE_ERR_IO, "cannot open folder %s: %s", dir, strerror(errno));
    mvmoe_status s = MVMOE_OK;
    struct dirent *e;
    while (s == MVMOE_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!want_dirs && !is_image_name(e->d_name)) continue; /* README, .txt, ...: skip */
        char *p = mvmoe_data_join(dir, e->d_name);
        if (!p) {
            s = MVMOE_ERR_NOMEM;
            break;
        }
        int keep = want_dirs ? mvmoe_data_is_dir(p) : mvmoe_data_is_file(p);
        free(p);
        if (keep) s = strlist_push(out, e->d_name, dir);
    }
    closedir(d);
    if (s != MVMOE_OK) {
        strlist_free(out);
        return s;
    }
    if (out->n > 1) qsort(out->s, (size_t)out->n, sizeof *out->s, cmp_str);
    return MVMOE_OK;
}

/* DIR/SPLIT; ImageNet-style sets call the test split "val". */
static char *split_dir(const char *dir, const char *split) {
    char *p = mvmoe_data_join(dir, split);
    if (!p || mvmoe_data_is_dir(p) || strcmp(split, "test") != 0) return p;
    char *v = mvmoe_data_join(dir, "val");
    if (v && mvmoe_data_is_dir(v)) {
        free(p);
        return v;
    }
    free(v);
    return p;
}

/* With a cap, take images round-robin over classes so a small capped load still has every
 * class: take[c] = how many of class c's (sorted) files are used. */
static void cap_per_class(const strlist *files, int nclass, int max_images, int *take) {
    long long total = 0;
    for (int c = 0; c < nclass; c++) {
        take[c] = files[c].n;
        total += files[c].n;
    }
    if (max_images <= 0 || total <= max_images) return;
    for (int c = 0; c < nclass; c++) take[c] = 0;
    int left = max_images;
    for (int r = 0; left > 0; r++) {
        for (int c = 0; c < nclass && left > 0; c++) {
            if (r < files[c].n) {
                take[c]++;
                left--;
            }
        }
    }
}

static mvmoe_status decode_all(mvmoe_dataset *ds, char **paths, int S) {
    size_t per = (size_t)3 * S * S;
    int first_fail = -1, failed = 0;
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < ds->n; i++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        if (mvmoe_image_load_into(paths[i], 3, S, ds->images + (size_t)i * per) != MVMOE_OK) {
#pragma omp critical(mvmoe_folder_fail)
            {
                if (first_fail < 0 || i < first_fail) first_fail = i;
            }
#pragma omp atomic write
            failed = 1;
        }
    }
    if (first_fail >= 0) {
        /* Error messages are thread-local: decode the failing file again on this thread. */
        mvmoe_status s = mvmoe_image_load_into(paths[first_fail], 3, S,
                                               ds->images + (size_t)first_fail * per);
        if (s != MVMOE_OK) return s;
        MVMOE_FAIL(MVMOE_ERR_IO, "decoding %s failed in a worker thread but not when retried; "
                   "is the file changing?", paths[first_fail]);
    }
    return MVMOE_OK;
}

/* label_of[c]: the label of the images in class folder c (NULL: c itself). */
static mvmoe_status load_classes(mvmoe_dataset *ds, const char *sdir, const strlist *classes,
                                 const int *label_of, int S, int max_images) {
    int K = classes->n;
    strlist *files = calloc((size_t)K, sizeof *files);
    int *take = calloc((size_t)K, sizeof *take);
    char **paths = NULL;
    mvmoe_status s = MVMOE_OK;
    if (!files || !take) s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                             "cannot list %d classes of %s", K, sdir);
    long long total = 0;
    for (int c = 0; s == MVMOE_OK && c < K; c++) {
        char *cdir = mvmoe_data_join(sdir, classes->s[c]);
        if (!cdir) s = MVMOE_ERR_NOMEM;
        else s = list_dir(cdir, 0, &files[c]);
        free(cdir);
        if (s == MVMOE_OK) total += files[c].n;
    }
    if (s == MVMOE_OK && total == 0) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "no .jpg/.jpeg/.png images in the %d class folders of %s", K, sdir);
    }
    if (s == MVMOE_OK && total > INT_MAX) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s holds %lld images, more than %d; use max_images", sdir, total,
                            INT_MAX);
    }
    if (s == MVMOE_OK) {
        cap_per_class(files, K, max_images, take);
        int n = 0;
        for (int c = 0; c < K; c++) n += take[c];
        size_t bytes = 0;
        if (mvmoe_mul_size((size_t)n, (size_t)3 * S * S, &bytes) != 0) {
            s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                "%d images of 3x%dx%d overflow memory; use max_images", n, S, S);
        }
        if (s == MVMOE_OK) {
            ds->n = n;
            ds->images = malloc(bytes ? bytes : 1);
            ds->labels = malloc((size_t)n * sizeof *ds->labels);
            paths = calloc((size_t)n, sizeof *paths);
            if (!ds->images || !ds->labels || !paths) {
                s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                                    "cannot allocate %d images of 3x%dx%d (%zu bytes) from %s; "
                                    "use max_images or a smaller img_size", n, S, S, bytes, sdir);
            }
        }
        for (int c = 0, i = 0; s == MVMOE_OK && c < K; c++) {
            for (int j = 0; j < take[c] && s == MVMOE_OK; j++, i++) {
                char *cdir = mvmoe_data_join(sdir, classes->s[c]);
                paths[i] = cdir ? mvmoe_data_join(cdir, files[c].s[j]) : NULL;
                free(cdir);
                if (!paths[i]) s = MVMOE_ERR_NOMEM;
                ds->labels[i] = label_of ? label_of[c] : c;
            }
        }
        if (s == MVMOE_OK) s = decode_all(ds, paths, S);
    }
    if (paths)
        for (int i = 0; i < ds->n; i++) free(paths[i]);
    free(paths);
    for (int c = 0; files && c < K; c++) strlist_free(&files[c]);
    free(files);
    free(take);
    return s;
}

/* For a split other than train, when DIR/train exists: ref = its class folders and
 * label_of[c] = the position of the split's class folder c among them; a class the training
 * split lacks is an error. Without DIR/train, ref and label_of stay empty (labels by the
 * split's own folders). */
static mvmoe_status reference_classes(const char *dir, const char *sdir, const strlist *classes,
                                      strlist *ref, int **label_of) {
    char *tdir = mvmoe_data_join(dir, "train");
    if (!tdir) return MVMOE_ERR_NOMEM;
    mvmoe_status s = MVMOE_OK;
    if (mvmoe_data_is_dir(tdir)) s = list_dir(tdir, 1, ref);
    if (s == MVMOE_OK && ref->s) {
        *label_of = malloc(sizeof(int) * (size_t)(classes->n ? classes->n : 1));
        if (!*label_of) s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__, "class labels of %s", sdir);
        for (int c = 0; s == MVMOE_OK && c < classes->n; c++) {
            int at = -1;
            for (int r = 0; r < ref->n && at < 0; r++)
                if (strcmp(classes->s[c], ref->s[r]) == 0) at = r;
            if (at < 0)
                s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                    "class folder '%.200s' of %s is not among the %d classes of %s "
                                    "(labels are matched by class name); rename or remove it",
                                    classes->s[c], sdir, ref->n, tdir);
            else
                (*label_of)[c] = at;
        }
    }
    free(tdir);
    return s;
}

mvmoe_status mvmoe_folder_load(mvmoe_dataset *ds, const char *dir, const char *split, int img_size,
                               int max_images) {
    if (img_size <= 0) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "image-folder dataset %s needs an image size (img_size > 0, "
                   "e.g. 224): its images have different sizes", dir);
    }
    if (!split[0] || strchr(split, '/') || strcmp(split, "..") == 0 || strcmp(split, ".") == 0) {
        MVMOE_FAIL(MVMOE_ERR_INVALID, "split '%s' of image-folder dataset %s: use a sub-folder "
                   "name such as \"train\" or \"test\"", split, dir);
    }
    char *sdir = split_dir(dir, split);
    if (!sdir) return MVMOE_ERR_NOMEM;
    if (!mvmoe_data_is_dir(sdir)) {
        mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__,
                        "no folder %s: an image-folder dataset is DIR/SPLIT/CLASS/*.jpg|png (for "
                        "\"test\", DIR/val is also accepted)", sdir);
        free(sdir);
        return MVMOE_ERR_IO;
    }
    strlist classes;
    mvmoe_status s = list_dir(sdir, 1, &classes);
    if (s == MVMOE_OK && (classes.n == 0 || classes.n > FOLDER_MAX_CLASSES)) {
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s has %d class sub-folders; expected 1..%d (DIR/SPLIT/CLASS/*.jpg)",
                            sdir, classes.n, FOLDER_MAX_CLASSES);
    }
    /* Labels are positions in the TRAINING split's class list, matched by name: a test split
     * that lacks a class, or orders its folders otherwise, must not shift the labels of the
     * others (scored against the wrong classes, it could even report 100 %). */
    strlist ref = {0};
    int *label_of = NULL;
    if (s == MVMOE_OK && strcmp(split, "train") != 0) s = reference_classes(dir, sdir, &classes, &ref, &label_of);
    strlist *names = ref.s ? &ref : &classes;
    if (s == MVMOE_OK) {
        ds->c = 3;
        ds->h = ds->w = img_size;
        ds->num_classes = names->n;
        s = load_classes(ds, sdir, &classes, label_of, img_size, max_images);
    }
    if (s == MVMOE_OK) {
        ds->class_names = names->s; /* ownership moves to the dataset */
        names->s = NULL;
        names->n = 0;
    }
    if (classes.s) strlist_free(&classes);
    if (ref.s) strlist_free(&ref);
    free(label_of);
    free(sdir);
    return s;
}
