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
    "                    --run NAME=EVAL.json [--run NAME=EVAL.json ...]\n"
    "                    [--curve NAME=METRICS.jsonl ...]\n";

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
           "  --curve NAME=FILE    FILE is a training's metrics (`mvmoe train --metrics`, by default\n"
           "                       CKPT.metrics.jsonl): draws validation accuracy per epoch, the\n"
           "                       mean over the files sharing NAME (repeatable)\n"
           "\nFiles are written only when everything succeeded. SOURCE_DATE_EPOCH fixes the date.\n"
           "Exit status: 0 done, 1 failure (message names the file and field), 2 usage error.\n");
}

typedef struct report_args {
    mvmoe_report_options o;
    mvmoe_report_run *runs;
    mvmoe_report_curve *curves;
    int n_runs, n_curves;
} report_args;

/* A NAME=FILE value of `flag`: *name a copy, *path pointing into argv (argv lives until exit). */
static int name_file(mvmoe_args *a, const char *flag, const char *file, int n_given, const char **name_out,
                     const char **path_out) {
    const char *v;
    int rc = mvmoe_args_str(a, &v);
    if (rc) return rc;
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1])
        return mvmoe_args_error(a, "invalid value '%s' for %s: use NAME=%s (a name, '=', a file)", v, flag, file);
    if (n_given == MAX_RUNS) return mvmoe_args_error(a, "more than %d %s flags", MAX_RUNS, flag);
    size_t n = (size_t)(eq - v);
    char *name = malloc(n + 1);
    if (!name) {
        fprintf(stderr, "mvmoe report: error: out of memory\n");
        return MVMOE_EXIT_FAIL;
    }
    memcpy(name, v, n);
    name[n] = '\0';
    *name_out = name;
    *path_out = eq + 1;
    return 0;
}

static int add_run(mvmoe_args *a, report_args *r) {
    mvmoe_report_run *x = &r->runs[r->n_runs];
    int rc = name_file(a, "--run", "EVAL.json", r->n_runs, &x->name, &x->eval_path);
    if (rc == 0) r->n_runs++;
    return rc;
}

static int add_curve(mvmoe_args *a, report_args *r) {
    mvmoe_report_curve *x = &r->curves[r->n_curves];
    int rc = name_file(a, "--curve", "METRICS.jsonl", r->n_curves, &x->name, &x->metrics_path);
    if (rc == 0) r->n_curves++;
    r->o.curves = r->curves;
    r->o.n_curves = r->n_curves;
    return rc;
}

static int parse(report_args *r, int argc, char **argv) {
    mvmoe_args a;
    mvmoe_args_init(&a, "report", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give eval files as --run NAME=FILE)", pos);
        if (mvmoe_args_is(&a, "--run")) rc = add_run(&a, r);
        else if (mvmoe_args_is(&a, "--curve")) rc = add_curve(&a, r);
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
    r.curves = calloc(MAX_RUNS, sizeof *r.curves);
    if (!r.runs || !r.curves) {
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
        printf(" (%d run%s", r.n_runs, r.n_runs == 1 ? "" : "s");
        if (r.n_curves) printf(", %d learning curve%s", r.n_curves, r.n_curves == 1 ? "" : "s");
        printf(")\n");
    }
    for (int i = 0; i < r.n_runs; i++) free((char *)r.runs[i].name);
    for (int i = 0; i < r.n_curves; i++) free((char *)r.curves[i].name);
    free(r.runs);
    free(r.curves);
    return rc;
}
