/* cg_gateway.h - the streaming gateway: Kafka raw topics in, records and dead letters out.
 *
 * Life cycle: cg_gateway_new() (connects nothing yet; starts the embedded broker when the
 * config asks for one), cg_gateway_run() (consumes until stopped or idle), cg_gateway_destroy().
 * Delivery is at-least-once: an input offset is committed only after every record it caused
 * has a successful delivery report.
 */
#ifndef CG_GATEWAY_H
#define CG_GATEWAY_H

#include <stdint.h>
#include <stdio.h>

#include "cg_config.h"
#include "cg_err.h"

typedef struct cg_gateway cg_gateway_t;

typedef struct cg_gateway_opts {
    /* Stop once this many ms pass with partitions assigned, nothing consumed and nothing in
     * flight; 0 runs until cg_gateway_stop(). For demos, tests and batch replays. */
    int idle_exit_ms;
    /* Where cg_gateway_report_topics() prints; NULL for stdout. */
    FILE *report;
} cg_gateway_opts_t;

typedef struct cg_gateway_stats {
    uint64_t consumed;      /* input messages taken from Kafka */
    uint64_t records_out;   /* records delivered to output topics */
    uint64_t dead_lettered; /* input messages delivered to the dead-letter topic */
    uint64_t delivery_errors;
    uint64_t commits; /* successful offset commits */
    uint64_t reloads; /* reloads attempted (SIGHUP), failed or not */
    uint64_t reload_failures;
} cg_gateway_stats_t;

/* cfg must outlive the gateway. Returns NULL with a reason in errstr. */
cg_gateway_t *cg_gateway_new(const cg_config_t *cfg, const cg_gateway_opts_t *opts, char *errstr,
                             size_t errstr_size);
/* Runs until cg_gateway_stop(), idle exit, or a fatal error; then drains in-flight records,
 * commits what was delivered and closes the consumer. CG_OK on a clean stop. */
cg_err_t cg_gateway_run(cg_gateway_t *gw, char *errstr, size_t errstr_size);
/* Asks run() to stop; async-signal-safe. */
void cg_gateway_stop(cg_gateway_t *gw);
/* Asks run() to recompile the specs and cohorts before the next message and use them if they
 * all compile (otherwise the running ones stay and the error is logged); async-signal-safe. */
void cg_gateway_reload(cg_gateway_t *gw);
/* Bootstrap servers the gateway uses (the embedded broker's when enabled). */
const char *cg_gateway_bootstrap(const cg_gateway_t *gw);
void cg_gateway_get_stats(const cg_gateway_t *gw, cg_gateway_stats_t *out);
/* Reads the output and dead-letter topics from the beginning and prints, per topic, the count
 * and each record (the demo's report). */
cg_err_t cg_gateway_report_topics(cg_gateway_t *gw, int max_per_topic);
/* NULL-safe. Stops the embedded broker. */
void cg_gateway_destroy(cg_gateway_t *gw);

#endif
