/* fuzz_shipped.h - the state the mapping fuzz targets share: the shipped mapping bundle (every
 * shipped spec with the shipped vocabularies and the golden test key, loaded once as the
 * commands load it) and one worker of it with tracing on. Identifiers without an assigning
 * authority take their sending facility's (missing "facility", an alias and a default too), so
 * that inputs without PID-3.4 reach the rules. */
#ifndef FUZZ_SHIPPED_H
#define FUZZ_SHIPPED_H

#include <stdlib.h>

#include "cg_mapping.h"
#include "cg_pseudo.h"

static cg_mapping_t *shipped;
static cg_mapping_worker_t *worker;
/* The bundle keeps its authorities to itself: fuzz_spec compiles specs of its own with these */
static cg_pseudo_authorities_t *authorities;

static void fuzz_shipped_init(void)
{
    char err[256];
    static const cg_pseudo_pair_t aliases[] = {{"2.16.840.1.113883.19.5", "HOSP"}};
    static const cg_pseudo_pair_t defaults[] = {{"H", "HOSP"}};
    cg_pseudo_authority_opts_t ao = {aliases, 1, defaults, 1, CG_PSEUDO_MISSING_FACILITY};
    authorities = cg_pseudo_authorities_new(&ao, NULL, err, sizeof(err));
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .key_file = CG_SOURCE_DIR "/tests/golden/key",
                           .date_shift_days = 30,
                           .source_utc_offset = "+01:00",
                           .authorities = ao};
    size_t n;
    shipped = cg_mapping_load(&o, NULL, 0, &n);
    if (!shipped || !authorities)
        abort(); /* the shipped specs must compile */
    worker = cg_mapping_worker_new(shipped, err, sizeof(err));
    if (!worker)
        abort();
    cg_mapping_worker_set_trace(worker, 1);
}

#endif
