#include "precision.h"

#include <stdio.h>
#include <string.h>

#include "mvmoe.h"

int mvmoe_cli_precision_flag(mvmoe_args *a, const char *cmd, int *rc) {
    if (!mvmoe_args_is(a, "--precision")) return 0;
    const char *name = NULL;
    if ((*rc = mvmoe_args_str(a, &name)) != 0) return 1;
    mvmoe_precision p;
    if (strcmp(name, "fp32") == 0) p = MVMOE_PRECISION_FP32;
    else if (strcmp(name, "bf16") == 0) p = MVMOE_PRECISION_BF16;
    else if (strcmp(name, "int8") == 0) p = MVMOE_PRECISION_INT8;
    else {
        *rc = mvmoe_args_error(a, "invalid value '%s' for --precision: use fp32, bf16 or int8", name);
        return 1;
    }
    *rc = 0;
    if (mvmoe_set_precision(p) != MVMOE_OK) { /* as mvmoe_cli_fail, which the fuzzer does not link */
        fprintf(stderr, "mvmoe %s: error: %s\n", cmd, mvmoe_last_error());
        *rc = MVMOE_EXIT_FAIL;
    }
    return 1;
}
