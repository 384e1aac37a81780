/* mvmoe-run --page-report: expert paging, measured (docs/EDGE.md). Filled in below. */
#include <stdio.h>

#include "run_cli.h"

int run_page_report(const run_args *a) {
    (void)a;
    fprintf(stderr, "mvmoe-run: error: --page-report is not built yet\n");
    return RUN_EXIT_FAIL;
}
