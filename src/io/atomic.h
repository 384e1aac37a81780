/* Atomic file replacement: write a temporary file beside PATH, flush and fsync it, rename it
 * over PATH, fsync the folder. A crash or a full disk leaves either the old file or the new
 * one, never a mix (checkpoints, optimizer state, super-class maps). */
#ifndef MVMOE_IO_ATOMIC_H
#define MVMOE_IO_ATOMIC_H

#include <stdio.h>

#include "mvmoe.h"

/* body writes the whole content to fp and returns 0 or an errno value. */
typedef int (*mvmoe_atomic_body)(FILE *fp, void *ctx);

mvmoe_status mvmoe_atomic_write(const char *path, mvmoe_atomic_body body, void *ctx);

#endif
