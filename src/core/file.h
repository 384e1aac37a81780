/* Whole-file reads with a size cap: the one reader behind every file the library takes in
 * whole (checkpoints, eval JSON, super-class maps, class-name lists, images). */
#ifndef MVMOE_CORE_FILE_H
#define MVMOE_CORE_FILE_H

#include <stddef.h>

#include "mvmoe.h"

/* Reads the regular file at `path` into *buf (malloc'd, NUL-terminated: (*buf)[*len] == 0;
 * free() it). `what` names the file in messages ("super-class map"). Refuses, with a message
 * naming the path and the cap: anything but a regular file (checked before any blocking
 * read, so a FIFO cannot hang the caller) -- MVMOE_ERR_IO; more than max_bytes --
 * MVMOE_ERR_FORMAT; a file that changes size while it is read -- MVMOE_ERR_IO. */
mvmoe_status mvmoe_file_read(const char *path, const char *what, size_t max_bytes, char **buf,
                             size_t *len);

#endif
