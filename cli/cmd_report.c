/* mvmoe report: the pipeline's summary page. Reads the `mvmoe eval --json` files of the
 * trained models (repeats over seeds share a name) and writes one self-contained HTML page
 * with inline SVG figures, and optionally the numbers as JSON. The work is in the library
 * (mvmoe_report_write); this file only parses the flags. */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "mvmoe.h"

/* More would be a mistake in a script, not a report anyone reads. */
#define MAX_RUNS 4096

static const char SYNOPSIS[] =
    "usage: mvmoe report --out REPORT.html [--json REPORT.json] [--title TEXT]\n"
    "                    [--superclasses MAP.json] [--confusion VAL_EVAL.json]\n"
    "                    --run NAME=EVAL.json [--run NAME=EVAL.json ...]\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Writes one HTML page (inline SVG, no script, opens offline in any browser) comparing\n"
           "evaluated models: a table of top-1/top-5 (mean \xC2\xB1 sample std over seeds), FLOPs,\n"
           "parameters, router accuracy and the difference to the dense model of the same width;\n"
           "accuracy vs FLOPs; the confusion matrix ordered by super-class; each MoE model's\n"
           "expert load and per-expert accuracy; the super-classes.\n\n"
           "  --run NAME=FILE      FILE is the output of `mvmoe eval --json` for one model; give\n"
           "                       the same NAME to repeats of one model over seeds (repeatable)\n"
           "  --out FILE           the HTML page to write\n"
           "  --json FILE          also write the numbers as JSON (title, runs, superclasses)\n"
           "  --title TEXT         page title (default \"Mobile V-MoE report\")\n"
           "  --superclasses FILE  super-class map (`mvmoe superclasses` output): orders the\n"
           "                       confusion matrix and labels the experts\n"
           "  --confusion FILE     eval JSON whose confusion matrix is drawn, e.g. the dense model\n"
           "                       on the validation split (default: the first dense run's)\n"
           "\nFiles are written only when everything succeeded. SOURCE_DATE_EPOCH fixes the date.\n"
           "Exit status: 0 done, 1 failure (message names the file and field), 2 usage error.\n");
}

typedef struct report_args {
    mvmoe_report_options o;
    mvmoe_report_run *runs;
    int n_runs;
} report_args;

static int add_run(mvmoe_args *a, report_args *r) {
    const char *v;
    int rc = mvmoe_args_str(a, &v);
    if (rc) return rc;
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1])
        return mvmoe_args_error(a, "invalid value '%s' for --run: use NAME=EVAL.json (a name, '=', a file)", v);
    if (r->n_runs == MAX_RUNS) return mvmoe_args_error(a, "more than %d --run flags", MAX_RUNS);
    /* argv strings live until exit: the name is a copy, the path points into argv */
    size_t n = (size_t)(eq - v);
    char *name = malloc(n + 1);
    if (!name) {
        fprintf(stderr, "mvmoe report: error: out of memory\n");
        return MVMOE_EXIT_FAIL;
    }
    memcpy(name, v, n);
    name[n] = '\0';
    r->runs[r->n_runs].name = name;
    r->runs[r->n_runs].eval_path = eq + 1;
    r->n_runs++;
    return 0;
}

static int parse(report_args *r, int argc, char **argv) {
    mvmoe_args a;
    mvmoe_args_init(&a, "report", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give eval files as --run NAME=FILE)", pos);
        if (mvmoe_args_is(&a, "--run")) rc = add_run(&a, r);
        else if (mvmoe_args_is(&a, "--out")) rc = mvmoe_args_str(&a, &r->o.html_path);
        else if (mvmoe_args_is(&a, "--json")) rc = mvmoe_args_str(&a, &r->o.json_path);
        else if (mvmoe_args_is(&a, "--title")) rc = mvmoe_args_str(&a, &r->o.title);
        else if (mvmoe_args_is(&a, "--superclasses")) rc = mvmoe_args_str(&a, &r->o.superclass_path);
        else if (mvmoe_args_is(&a, "--confusion")) rc = mvmoe_args_str(&a, &r->o.confusion_path);
        else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (!r->o.html_path) return mvmoe_args_error(&a, "--out REPORT.html is required");
    if (r->n_runs == 0) return mvmoe_args_error(&a, "at least one --run NAME=EVAL.json is required");
    if (r->o.json_path && strcmp(r->o.json_path, r->o.html_path) == 0)
        return mvmoe_args_error(&a, "--json and --out name the same file '%s'", r->o.html_path);
    return 0;
}

int mvmoe_cmd_report(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    report_args r;
    memset(&r, 0, sizeof r);
    r.runs = calloc(MAX_RUNS, sizeof *r.runs);
    if (!r.runs) {
        fprintf(stderr, "mvmoe report: error: out of memory\n");
        return MVMOE_EXIT_FAIL;
    }
    int rc = parse(&r, argc, argv);
    if (rc == 0 && (mvmoe_output_check(r.o.html_path, "--out") != MVMOE_OK ||
                    (r.o.json_path && mvmoe_output_check(r.o.json_path, "--json") != MVMOE_OK)))
        rc = mvmoe_cli_fail("report");
    if (rc == 0 && mvmoe_report_write(r.runs, r.n_runs, &r.o) != MVMOE_OK) rc = mvmoe_cli_fail("report");
    if (rc == 0) {
        printf("wrote %s", r.o.html_path);
        if (r.o.json_path) printf(" and %s", r.o.json_path);
        printf(" (%d run%s)\n", r.n_runs, r.n_runs == 1 ? "" : "s");
    }
    for (int i = 0; i < r.n_runs; i++) free((char *)r.runs[i].name);
    free(r.runs);
    return rc;
}
