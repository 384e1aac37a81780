/* Standard class-name tables (used when a dataset folder ships no names file) and helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/loaders.h"

/* Fashion-MNIST (Xiao et al. 2017), label order of the official repository. */
const char *const mvmoe_fashion_mnist_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* CIFAR-10 batches.meta.txt order. */
const char *const mvmoe_cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                             "dog",      "frog",       "horse", "ship", "truck"};

/* CIFAR-100 fine_label_names.txt order (alphabetical). */
const char *const mvmoe_cifar100_fine_names[100] = {
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"};

/* CIFAR-100 coarse_label_names.txt order. */
const char *const mvmoe_cifar100_coarse_names[20] = {
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"};

void mvmoe_data_names_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

mvmoe_status mvmoe_data_names_copy(const char *const *src, int n, char ***out) {
    char **names;
    MVMOE_ALLOC(names, n, "class names");
    for (int i = 0; i < n; i++) {
        names[i] = strdup(src[i]);
        if (!names[i]) {
            mvmoe_data_names_free(names, i);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate class name %d", i);
        }
    }
    *out = names;
    return MVMOE_OK;
}

mvmoe_status mvmoe_data_names_numeric(int n, char ***out) {
    char **names;
    MVMOE_ALLOC(names, n, "class names");
    for (int i = 0; i < n; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        names[i] = strdup(buf);
        if (!names[i]) {
            mvmoe_data_names_free(names, i);
            MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate class name %d", i);
        }
    }
    *out = names;
    return MVMOE_OK;
}
