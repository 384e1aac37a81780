/* Extras of the data layer for other modules (trainer, CLI) beyond the public header:
 * CIFAR-100 super-class names / map. */
#ifndef MVMOE_DATA_DATA_H
#define MVMOE_DATA_DATA_H

#include <stdint.h>

#include "data/augment.h"
#include "mvmoe.h"

/* Names of the coarse (super-)classes of a dataset with ds->coarse (CIFAR-100): read from
 * coarse_label_names.txt beside the data when present, else the standard CIFAR-100 names.
 * *names has *n = ds->num_coarse owned strings (free each, then the array). */
mvmoe_status mvmoe_dataset_coarse_names(const mvmoe_dataset *ds, char ***names, int *n);

/* map[k] = the coarse label of fine class k, read off the labels (-1 for a class with no
 * images). FORMAT if one fine class appears under two coarse labels. *map is malloc'd
 * [num_classes]. INVALID if ds has no coarse labels. */
mvmoe_status mvmoe_dataset_superclass_map(const mvmoe_dataset *ds, int **map);


#endif
