/* The library's version at run time, from the header's macros (the one source of truth). */
#include "mvmoe.h"

const char *mvmoe_version(void) { return MVMOE_VERSION; }
