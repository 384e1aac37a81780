/* Internals shared by the dataset readers (IDX, CIFAR, image folders): path helpers, class-name
 * tables and the per-format loaders that mvmoe_dataset_load dispatches to. Not public API. */
#ifndef MVMOE_DATA_LOADERS_H
#define MVMOE_DATA_LOADERS_H

#include <stddef.h>

#include "mvmoe.h"

/* ---- files.c */
/* "a/b" in a fresh malloc'd string; NULL (error recorded) if out of memory. */
char *mvmoe_data_join(const char *dir, const char *name);
int mvmoe_data_is_file(const char *path); /* regular file (following links) */
int mvmoe_data_is_dir(const char *path);
/* Reads a text file of one name per line (blank lines and trailing \r / spaces dropped).
 * *names has *n owned strings; free with mvmoe_data_names_free. */
mvmoe_status mvmoe_data_read_names(const char *path, char ***names, int *n);

/* ---- names.c */
extern const char *const mvmoe_fashion_mnist_names[10];
extern const char *const mvmoe_cifar10_names[10];
extern const char *const mvmoe_cifar100_fine_names[100];
extern const char *const mvmoe_cifar100_coarse_names[20];
mvmoe_status mvmoe_data_names_copy(const char *const *src, int n, char ***out);
/* "0", "1", ..., "n-1" */
mvmoe_status mvmoe_data_names_numeric(int n, char ***out);
void mvmoe_data_names_free(char **names, int n);

/* ---- per-format loaders: fill a zeroed *ds (except source); on failure the caller frees it. */
/* True if dir holds IDX files (any split). */
int mvmoe_idx_detect(const char *dir);
mvmoe_status mvmoe_idx_load(mvmoe_dataset *ds, const char *dir, const char *split, int max_images);

/* CIFAR-10 / CIFAR-100 binary versions. *root (malloc'd) receives the folder that holds the
 * .bin files: dir itself, or its cifar-10-batches-bin / cifar-100-binary subfolder. Returns
 * 10, 100, or 0 if dir holds neither. */
int mvmoe_cifar_detect(const char *dir, char **root);
mvmoe_status mvmoe_cifar_load(mvmoe_dataset *ds, const char *root, int kind, const char *split,
                              int max_images);

mvmoe_status mvmoe_folder_load(mvmoe_dataset *ds, const char *dir, const char *split, int img_size,
                               int max_images);

#endif
