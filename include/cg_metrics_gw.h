/* cg_metrics_gw.h - the gateway's own metric set on a cg_metrics registry, and its /healthz
 * answer. Kafka-free: callers pass the strings they read from Kafka (topics, headers) and the
 * producer's queue length through a callback.
 *
 * cohortgate_messages_in_total{topic}           input messages taken from Kafka (input topic)
 * cohortgate_rows_out_total{topic,spec}         records delivered, by output topic and spec
 * cohortgate_dead_letter_total{stage,code}      dead letters delivered, by stage and error code
 * cohortgate_quality_records_total{spec,reason} quality records delivered (entries left out)
 * cohortgate_inputs_total{outcome,type}         inputs mapped, by how they ended: records,
 *                                               no_rows, no_research_content, dead_letter
 *                                               (type "" when no spec took it); counted when
 *                                               mapped, so a replay counts again
 * cohortgate_mapping_latency_seconds            decode + map time per message (histogram)
 * cohortgate_consumer_lag{topic,partition}      messages behind the committed offset (librdkafka
 *                                               statistics; assigned partitions only)
 * cohortgate_producer_queue_messages            records in the producer's queue
 * cohortgate_transactions_total{result}         committed / aborted Kafka transactions
 * cohortgate_reloads_total{result}              SIGHUP reloads, ok / failed
 * cohortgate_paused                             1 while input is paused (backpressure)
 * cohortgate_assigned_partitions                input partitions assigned to this instance
 * cohortgate_up, cohortgate_build_info{version}, process_resident_memory_bytes,
 * process_start_time_seconds
 */
#ifndef CG_METRICS_GW_H
#define CG_METRICS_GW_H

#include <stddef.h>

#include "cg_metrics.h"

typedef struct cg_metrics_gw cg_metrics_gw_t;

/* health_grace_ms: how long /healthz stays 200 without a partition assignment, from the start
 * and from the moment the last partition was revoked. */
cg_metrics_gw_t *cg_metrics_gw_new(size_t max_series, int health_grace_ms);
/* Stops the endpoint first, then frees. NULL-safe. */
void cg_metrics_gw_destroy(cg_metrics_gw_t *g);
cg_metrics_t *cg_metrics_gw_registry(cg_metrics_gw_t *g);

/* The length of a queue, read on the endpoint's thread at every scrape. */
typedef int(cg_metrics_gw_queue_fn)(void *opaque);

/* How long the longest-busy worker has been on its current message, in ms (0: none busy), with
 * what it is on ("worker 2 at hosp-a.raw [3] offset 118273") in what. Read on the endpoint's
 * thread: it must only read atomics. */
typedef int64_t(cg_metrics_gw_busy_fn)(void *opaque, char *what, size_t what_size);

/* /healthz answers 503 once a worker has been on one message for stuck_ms (0: never): a
 * message that holds a worker (a decoder bound not set tight enough) stalls its partition,
 * and a liveness probe should see it. Call before cg_metrics_gw_serve(). */
void cg_metrics_gw_set_stuck(cg_metrics_gw_t *g, int stuck_ms, cg_metrics_gw_busy_fn *busy,
                             void *opaque);

/* Starts the endpoint on listen (unless off), with queue_len(queue_opaque) as
 * cohortgate_producer_queue_messages (queue_len NULL: 0); queue_opaque must outlive the set or
 * its endpoint. Logs the address (event metrics.listening), or the failure (metrics.failed) and
 * carries on without: the pipeline is worth more than its metrics. Returns 0 when serving or
 * off. */
int cg_metrics_gw_serve(cg_metrics_gw_t *g, const char *listen, cg_metrics_gw_queue_fn *queue_len,
                        void *queue_opaque);
/* The endpoint's bound port, or -1 when it is not serving. */
int cg_metrics_gw_port(const cg_metrics_gw_t *g);

void cg_metrics_gw_message_in(cg_metrics_gw_t *g, const char *topic);
void cg_metrics_gw_latency(cg_metrics_gw_t *g, double seconds);
/* From the delivery report of a successful delivery: a row (its output topic and cg.spec
 * header) or a dead letter (its cg.error.stage and cg.error.code headers). Values are cut to
 * CG_METRICS_MAX_VALUE bytes; NULL counts as "". */
void cg_metrics_gw_row_out(cg_metrics_gw_t *g, const char *topic, const char *spec);
void cg_metrics_gw_dead_letter(cg_metrics_gw_t *g, const char *stage, const char *code);
/* A quality record (its cg.spec and cg.quality.reason headers). */
void cg_metrics_gw_quality(cg_metrics_gw_t *g, const char *spec, const char *reason);
/* One mapped input's outcome (cg_map_outcome_name, or "dead_letter") and its type label. */
void cg_metrics_gw_input(cg_metrics_gw_t *g, const char *outcome, const char *type);
/* Graded release: n records of a level handed to a subscriber's topic; n rows withheld from it
 * for a reason (cg_release_outcome_name); whether its agreement is in force. */
void cg_metrics_gw_released(cg_metrics_gw_t *g, const char *subscriber, int level, uint64_t n);
/* The series cg_metrics_gw_released() counts into, for a caller that keeps it (one per
 * subscriber and level) rather than find it by its labels per record; NULL without metrics. */
cg_metric_series_t *cg_metrics_gw_released_series(cg_metrics_gw_t *g, const char *subscriber,
                                                  int level);
void cg_metrics_gw_withheld(cg_metrics_gw_t *g, const char *subscriber, const char *reason,
                            uint64_t n);
void cg_metrics_gw_agreement(cg_metrics_gw_t *g, const char *subscriber, int in_force);
/* result: "committed" or "aborted". */
void cg_metrics_gw_transaction(cg_metrics_gw_t *g, const char *result);
void cg_metrics_gw_reload(cg_metrics_gw_t *g, int ok);
void cg_metrics_gw_paused(cg_metrics_gw_t *g, int paused);
void cg_metrics_gw_assigned(cg_metrics_gw_t *g, int n_partitions);
/* Takes a librdkafka statistics JSON (stats_cb) and sets cohortgate_consumer_lag from its
 * partitions' consumer_lag; partitions without one (-1, not assigned) are hidden. Returns -1
 * when the JSON does not parse. */
int cg_metrics_gw_kafka_stats(cg_metrics_gw_t *g, const char *json, size_t len);
/* The gateway's state for /healthz: stopping (draining or stopped), or fatal with a reason. */
void cg_metrics_gw_stopping(cg_metrics_gw_t *g);
void cg_metrics_gw_fatal(cg_metrics_gw_t *g, const char *reason);
/* /healthz's answer (a cg_metrics_health_fn; opaque is the set). */
int cg_metrics_gw_health(void *opaque, char *reason, size_t reason_size);

#endif
