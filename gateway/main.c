/* main.c - the cohortgate executable; everything lives in the gateway library. */
#include "cg_cli.h"

int main(int argc, char **argv)
{
    return cg_cli_main(argc, argv);
}
