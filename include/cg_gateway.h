/* cg_gateway.h - the streaming gateway: input messages from a source plug-in in, records and dead
 * letters to a sink plug-in out (cg_plugin.h; Kafka for both unless the config names others).
 *
 * Life cycle: cg_gateway_new() (connects nothing yet; starts the embedded broker when the
 * config asks for one), cg_gateway_run() (consumes until stopped or idle), cg_gateway_destroy().
 * Delivery is at-least-once by default: an input offset is committed only after every record it
 * caused has a successful delivery report. With delivery.semantics exactly-once, records and
 * input offsets are committed together in Kafka transactions (consume-transform-produce); an
 * abortable error aborts the transaction and rewinds the consumer to the last committed offsets.
 * Decoding and mapping run on `workers` threads, per-partition order kept; while the producer
 * cannot keep up, consumption pauses. A stop drains and commits within delivery.drain_timeout_ms.
 */
#ifndef CG_GATEWAY_H
#define CG_GATEWAY_H

#include <stdint.h>
#include <stdio.h>

#include "cg_config.h"
#include "cg_err.h"

/* The engine (gateway/engine/) between a source and a sink plug-in (cg_plugin.h). */
typedef struct cg_engine cg_gateway_t;

typedef struct cg_gateway_opts {
    /* Stop once this many ms pass with partitions assigned, nothing consumed and nothing in
     * flight; 0 runs until cg_gateway_stop(). For demos, tests and batch replays. */
    int idle_exit_ms;
    /* Where cg_gateway_report_topics() prints; NULL for stdout. */
    FILE *report;
    /* No mapping (`cohortgate listen`): every input goes unchanged, with its key and the
     * source's headers, to the destination the source names (cg_source_msg_t.dest), and what is
     * delivered is committed at once (an MLLP ACK waits on it). No specs are loaded. */
    int passthrough;
} cg_gateway_opts_t;

#define CG_GATEWAY_MAX_WORKERS 32

/* Counters since cg_gateway_new(); any thread may read them (cg_gateway_get_stats). After an
 * aborted transaction its inputs are consumed, and their records delivered, again: consumed,
 * records_out and dead_lettered count those twice. */
typedef struct cg_gateway_stats {
    uint64_t consumed;      /* input messages taken from Kafka */
    uint64_t records_out;   /* records delivered to output topics (quality records too) */
    uint64_t dead_lettered; /* input messages delivered to the dead-letter topic */
    uint64_t delivery_errors;
    uint64_t commits; /* successful offset commits (exactly-once: transactions with offsets) */
    uint64_t reloads; /* reloads attempted (SIGHUP), failed or not */
    uint64_t reload_failures;
    uint64_t transactions_committed; /* exactly-once */
    uint64_t transactions_aborted;   /* exactly-once; each rewinds the consumer */
    uint64_t stalls;     /* times consumption waited on the output side (full queue, in flight) */
    uint64_t pauses;     /* of those, times the wait lasted delivery.pause_after_ms: paused */
    uint64_t queue_full; /* times a record met a full producer queue */
    uint64_t workers;    /* decode+map threads (1: mapping on the consumer thread) */
    uint64_t assigned;   /* input partitions assigned now */
    uint64_t worker_messages[CG_GATEWAY_MAX_WORKERS]; /* inputs each worker decoded and mapped */
} cg_gateway_stats_t;

/* cfg must outlive the gateway. Returns NULL with a reason in errstr. */
cg_gateway_t *cg_gateway_new(const cg_config_t *cfg, const cg_gateway_opts_t *opts, char *errstr,
                             size_t errstr_size);
/* Runs until cg_gateway_stop(), idle exit, or a fatal error; then drains in-flight records,
 * commits what was delivered (exactly-once: commits the open transaction) and closes the
 * consumer, all within delivery.drain_timeout_ms. CG_OK on a clean stop; CG_ERR_KAFKA_RETRY when
 * the drain ran out of time (the uncommitted inputs are consumed again on restart). */
cg_err_t cg_gateway_run(cg_gateway_t *gw, char *errstr, size_t errstr_size);
/* Asks run() to stop; async-signal-safe. */
void cg_gateway_stop(cg_gateway_t *gw);
/* Asks run() to recompile the specs and cohorts before the next message and use them if they
 * all compile (otherwise the running ones stay and the error is logged); async-signal-safe. */
void cg_gateway_reload(cg_gateway_t *gw);
/* delivery.drain_timeout_ms: how long a stop may take (the daemons' bound after a signal). */
int cg_gateway_drain_timeout_ms(const cg_gateway_t *gw);
/* The port /metrics and /healthz are served on (metrics.listen), or -1 when they are not. */
int cg_gateway_metrics_port(const cg_gateway_t *gw);
void cg_gateway_get_stats(const cg_gateway_t *gw, cg_gateway_stats_t *out);
/* Reads the output and dead-letter topics from the beginning and prints, per topic, the count
 * and each record (the demo's report). */
cg_err_t cg_gateway_report_topics(cg_gateway_t *gw, int max_per_topic);
/* NULL-safe. Stops the embedded broker. */
void cg_gateway_destroy(cg_gateway_t *gw);

#endif
