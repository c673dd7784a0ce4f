/* Placeholder until the module lands. */
#include "commands.h"

#include <stdio.h>

int demo_main(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "%s: not built yet\n", argv[0]);
    return 1;
}
