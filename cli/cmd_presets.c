/* mvmoe presets: the named model shapes that `train --preset` and `info --preset` accept. */
#include <string.h>

#include "args.h"
#include "commands.h"
#include "mvmoe.h"

static const char SYNOPSIS[] = "usage: mvmoe presets\n";

int mvmoe_cmd_presets(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        printf("%s\nLists the model presets (name and shape), for 'mvmoe train --preset NAME'\n"
               "and 'mvmoe info --preset NAME'.\n",
               SYNOPSIS);
        return MVMOE_EXIT_OK;
    }
    mvmoe_args a;
    mvmoe_args_init(&a, "presets", SYNOPSIS, argc, argv);
    const char *pos;
    int kind = mvmoe_args_next(&a, &pos);
    if (kind == 1) return mvmoe_args_unknown(&a);
    if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (presets takes none)", pos);
    const char *list = mvmoe_preset_list();
    size_t len = strlen(list);
    fputs(list, stdout);
    if (len > 0 && list[len - 1] != '\n') putchar('\n');
    return MVMOE_EXIT_OK;
}
