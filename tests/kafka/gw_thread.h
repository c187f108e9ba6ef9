/* gw_thread.h - a gateway run in-process on a thread of its own, as the daemon's main loop runs
 * it, for the tests that reload or stop it from the test's thread. */
#ifndef CG_GW_THREAD_H
#define CG_GW_THREAD_H

#include <pthread.h>
#include <stdint.h>

#include "cg_gateway.h"

typedef struct gw_thread {
    cg_gateway_t *gw;
    pthread_t th;
    cg_err_t rc; /* cg_gateway_run's, once joined */
    char err[512];
} gw_thread_t;

/* Runs t->gw (made by the caller) on a new thread. */
void gw_thread_start(gw_thread_t *t);
/* Stops it (as SIGTERM does) and joins the thread. */
void gw_thread_stop(gw_thread_t *t);
/* Asks for a reload (as SIGHUP does) and waits until the gateway's loop has done it; the
 * failures counted so far must then be want_failures. */
void gw_thread_reload(gw_thread_t *t, uint64_t want_failures);

#endif
