/* cli_parse.c - `cohortgate parse`: decode HL7 v2 files and print structure or values. */
#include "cg_cli.h"
#include "cg_hl7.h"

#include <string.h>

int cg_cli_parse(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: cohortgate parse [--get PATH]... [--stats] FILE...\n");
        return CG_EXIT_OK;
    }
    fprintf(stderr, "cohortgate parse: not implemented yet\n");
    return CG_EXIT_FAILURE;
}
