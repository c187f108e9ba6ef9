/* testing.h - hooks for the tests only: not installed, not in any public header, and no
 * production code path sets them. Tests that need one add gateway/engine to their include
 * path. */
#ifndef CG_ENGINE_TESTING_H
#define CG_ENGINE_TESTING_H

#include "cg_gateway.h"

/* The next n exactly-once commits are turned into aborts, as if the sink had returned an
 * abortable error (the transaction's records are flushed first, then really aborted, and its
 * inputs rewound and consumed again). Call between cg_gateway_new() and cg_gateway_run(). */
void cg_engine_testing_inject_aborts(cg_gateway_t *gw, int n);

#endif
