/* cg_plugin.h - the stage plug-ins of the gateway: sources hand out input messages, sinks take
 * encoded records; the engine between them (gateway/engine/) knows them only through this file.
 *
 * As Fluent Bit's flb_input_plugin / flb_output_plugin and nginx's module list: a plug-in is a
 * const struct of callbacks (cg_source_plugin_t, cg_sink_plugin_t) listed in the static
 * registry (gateway/plugins/registry.c); an instance (cg_source_t, cg_sink_t) pairs it with its
 * own context (ctx, made by init) and its own config (conf, a struct the loader filled from the
 * plug-in's config rows, cg_config.h). Adding a plug-in is a folder under gateway/plugins/ and a
 * line in the registry.
 *
 * Threads: every callback runs on the engine's thread (the caller of cg_gateway_run), and a
 * plug-in calls the cg_engine_* functions below only from inside a callback of its own (a
 * librdkafka callback fired from inside poll counts), so neither side needs locks.
 *
 * Delivery: every input the source hands out is tracked by the engine until each record it
 * caused (rows and dead letters) is delivered by the sink (cg_engine_delivered with the record's
 * token); then the source is told through commit() (Kafka commits offsets, an MLLP listener
 * ACKs). Exactly-once (consume-transform-produce) needs a transactional sink and a source that
 * can rewind (seek) and, when the sink commits offsets inside its transaction, give it what it
 * commits them with (txn_context_new: Kafka's consumer group metadata). A source without
 * transactions (MLLP) leaves those NULL and is run at-least-once.
 */
#ifndef CG_PLUGIN_H
#define CG_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cg_config.h"
#include "cg_err.h"
#include "cg_mapping.h"

typedef struct cg_engine cg_engine_t;
typedef struct cg_metrics_gw cg_metrics_gw_t;

/* A place in a source: Kafka's (topic, partition, offset); an MLLP listener's (listener name,
 * connection, sequence). Per (topic, partition), offsets are handed out in increasing order and
 * the engine keeps their order. Strings are borrowed. */
typedef struct cg_source_pos {
    const char *topic;
    int32_t partition;
    int64_t offset; /* in commit() and seek(): the next one to hand out */
} cg_source_pos_t;

/* One input message. Field names follow rd_kafka_message_t's, so the mapping step reads the
 * same with any source. Everything is borrowed from the source until release(). */
typedef struct cg_source_msg {
    const void *payload; /* the input's bytes, untouched; NULL when empty */
    size_t len;
    const void *key; /* dead letters carry it on */
    size_t key_len;
    const char *topic; /* position: see cg_source_pos_t */
    int32_t partition;
    int64_t offset;
    cg_input_format_t format; /* how the engine decodes it (the source's config says) */
    const char *charset;      /* HL7 v2 charset when MSH-18 is empty (inputs[].charset); NULL: the
                               * config's hl7.default_charset. Stable for the run. */
    /* The feed's own handling of HL7 v2 message types ("SIU", "MFN^M02"), over the specs':
     * consumed as no research content, or dead-lettered (inputs[].no_research_content,
     * dead_letter). Stable for the run; NULL and 0 when none. */
    char *const *nrc_types;
    size_t n_nrc_types;
    char *const *dl_types;
    size_t n_dl_types;
    void *opaque; /* the source's own (Kafka: the rd_kafka_message_t) */
    /* A pass-through run (cg_gateway_opts_t.passthrough, `cohortgate listen`) writes the input
     * unchanged to dest with these headers (name, value, ...; n_headers counts both) and its
     * key; a mapping run ignores them. */
    const char *dest; /* stable for the run: sinks cache by the pointer */
    const char *const *headers;
    size_t n_headers;
} cg_source_msg_t;

/* What poll() found. */
typedef enum cg_source_event {
    CG_SOURCE_NONE = 0, /* nothing within the timeout */
    CG_SOURCE_MSG,      /* a message in *msg: the engine calls release() once done with it */
    CG_SOURCE_END,      /* msg->topic/partition reached its end (what is there is consumed) */
    CG_SOURCE_ERROR,    /* a passing error, logged by the source */
} cg_source_event_t;

/* What a sink's transactional call came to. */
typedef enum cg_txn_result {
    CG_TXN_OK = 0,
    CG_TXN_ABORT,   /* abortable: the engine aborts, rewinds the source and consumes again */
    CG_TXN_TIMEOUT, /* the drain ran out of time: inputs are consumed again on restart */
    CG_TXN_FATAL,   /* the sink reported it with cg_engine_fatal() */
} cg_txn_result_t;

/* What produce() did with a record. */
typedef enum cg_sink_result {
    CG_SINK_OK = 0, /* queued: its delivery is reported with cg_engine_delivered() */
    CG_SINK_FULL,   /* the queue is full: the engine tries again after poll() */
    CG_SINK_FAILED, /* reported already (cg_engine_fatal or cg_engine_txn_failed) */
} cg_sink_result_t;

/* What every init() gets. */
typedef struct cg_plugin_env {
    const cg_config_t *cfg; /* the whole config (outlives the instance) */
    const void *conf;       /* this plug-in's config struct (cg_config_plugin_conf) */
    cg_engine_t *engine;
    cg_metrics_gw_t *metrics;
    int exactly_once; /* delivery.semantics is exactly-once */
    int passthrough;  /* a pass-through run: a source hands out the inputs' headers (a mapping
                       * run reads none, so a source need not copy them) */
    const struct cg_source *source; /* for a sink: the instance it runs with, already made */
} cg_plugin_env_t;

typedef struct cg_source_plugin {
    const char *name; /* the config's "source" value */
    const char *desc;
    const cg_config_map_t *config_map; /* rows of its settings, bound into a conf_size struct */
    size_t conf_size;
    /* When the config chooses it: checks its settings against each other (conf, filled from
     * config_map) and against the core's, as rows cannot. -1 with *problem filled; NULL: none. */
    int (*check)(const void *conf, const cg_config_t *cfg, cg_config_problem_t *problem);
    /* What check cannot see without the plug-in's own library or the whole config (Kafka:
     * kafka.* through librdkafka, topics read and written), run by cg_config_validate for
     * `check -c` and the daemons alike: every problem found, up to max in problems; returns how
     * many there were. NULL: none. */
    size_t (*validate)(const void *conf, const cg_config_t *cfg, cg_config_problem_t *problems,
                       size_t max);
    /* Makes the context; connects nothing yet. NULL with a reason in errstr. */
    void *(*init)(const cg_plugin_env_t *env, char *errstr, size_t errstr_size);
    /* Starts consuming (Kafka: subscribes). -1 with a reason. */
    int (*start)(void *ctx, char *errstr, size_t errstr_size);
    /* Waits up to timeout_ms for the next message or event. Rebalances are served from in
     * here (cg_engine_assigned, cg_engine_revoke). */
    cg_source_event_t (*poll)(void *ctx, int timeout_ms, cg_source_msg_t *msg);
    /* Gives back a message poll() handed out. */
    void (*release)(void *ctx, cg_source_msg_t *msg);
    /* Every output of the inputs before these positions is delivered (at-least-once): record
     * it (Kafka commits the offsets; MLLP ACKs). sync: wait, at most cg_engine_remaining_ms(),
     * and report with cg_engine_committed(); else in the background. -1 when a sync commit got
     * no answer in time. */
    int (*commit)(void *ctx, const cg_source_pos_t *pos, size_t n, int sync);
    /* Backpressure: stop or go on fetching (what is assigned later follows suit). */
    void (*pause)(void *ctx, int paused);
    /* Stops consuming and leaves (Kafka: closes the consumer, leaving the group). */
    void (*close)(void *ctx);
    /* NULL-safe on ctx. */
    void (*destroy)(void *ctx);

    /* ---- exactly-once; NULL when the source has no transactions ---- */
    /* After an aborted transaction: hands out again from these positions. -1 with a reason. */
    int (*seek)(void *ctx, const cg_source_pos_t *pos, size_t n, char *errstr, size_t errstr_size);
    /* What a transactional sink commits the positions with (Kafka: a new
     * rd_kafka_consumer_group_metadata_t); freed with txn_context_free. */
    void *(*txn_context_new)(void *ctx);
    void (*txn_context_free)(void *txn_ctx);
    /* For logs: "4 topic(s) from HOST:PORT as group G". */
    void (*describe)(void *ctx, char *buf, size_t size);
    /* SIGHUP: re-reads what the source takes from files (MLLP: TLS certificates, key, client
     * CA and CRL). fresh: the config file read again (NULL when it did not load, or the config
     * came from no file): the plug-in may take settings of it, keeping no pointer into it. -1
     * with a reason when they do not load; the running ones then stay. NULL: nothing to
     * re-read. */
    int (*reload)(void *ctx, const cg_config_t *fresh, char *errstr, size_t errstr_size);

    /* ---- at-least-once sources that answer for each input (MLLP); NULL for Kafka ---- */
    /* A record of the input at pos could not be delivered: the source tells its sender (MLLP:
     * AR) and the input counts as done, so later ones go on. Without it such a failure stops
     * the gateway and the input stays uncommitted. */
    void (*reject)(void *ctx, const cg_source_pos_t *pos, const char *reason);
    /* Adds the sink's wake fd (cg_sink_plugin_t.wake_fd) to what poll() waits on: when it
     * becomes readable, poll() drains it and returns CG_SOURCE_NONE at once, so delivery
     * reports are served (and answered) without waiting out the timeout. NULL: the engine
     * polls the sink on a short timer instead. */
    void (*watch)(void *ctx, int fd);
} cg_source_plugin_t;

/* One encoded record, borrowed for the duration of produce(). */
typedef struct cg_sink_record {
    const char *dest; /* topic (or table): a stable pointer, so sinks may cache by it */
    int dead_letter;  /* dest is the dead-letter destination */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const char *const *headers; /* name, value, name, value, ... */
    size_t n_headers;           /* names and values: twice the pairs */
    void *token;                /* handed back to cg_engine_delivered() */
} cg_sink_record_t;

typedef struct cg_sink_plugin {
    const char *name; /* the config's "output.sink" value */
    const char *desc;
    const cg_config_map_t *config_map; /* a source's and a sink's may be one (Kafka's) */
    size_t conf_size;
    int (*check)(const void *conf, const cg_config_t *cfg, cg_config_problem_t *problem);
    size_t (*validate)(const void *conf, const cg_config_t *cfg, cg_config_problem_t *problems,
                       size_t max); /* as the source's */
    void *(*init)(const cg_plugin_env_t *env, char *errstr, size_t errstr_size);
    /* Queues a record; never blocks. */
    cg_sink_result_t (*produce)(void *ctx, const cg_sink_record_t *rec);
    /* Serves delivery reports, waiting up to timeout_ms for one. */
    void (*poll)(void *ctx, int timeout_ms);
    /* Waits up to timeout_ms for every queued record to be reported; 0 when none is left. */
    int (*flush)(void *ctx, int timeout_ms);
    /* Records queued and not yet reported (backpressure, /metrics). Called from the metrics
     * endpoint's thread too: must be safe to call from any thread. */
    int (*queue_len)(void *ctx);
    /* Whether the sink cannot go on; fills reason (may be NULL). */
    int (*fatal)(void *ctx, char *reason, size_t size);
    /* Prints what the destinations hold (the demo's report); NULL: nothing to print. */
    cg_err_t (*report)(void *ctx, const char *const *dests, size_t n, int max_per_dest, FILE *out);
    void (*destroy)(void *ctx);

    /* ---- transactions; NULL when the sink has none (then exactly-once is refused) ---- */
    /* Once, before the first record (Kafka: init_transactions fences an older instance). */
    cg_txn_result_t (*txn_init)(void *ctx, char *errstr, size_t errstr_size);
    cg_txn_result_t (*txn_begin)(void *ctx);
    /* Commits the open transaction together with the source's positions (n may be 0), the
     * source giving what they are committed with (txn_context_new). Every queued record is
     * delivered before this is called. */
    cg_txn_result_t (*txn_commit)(void *ctx, const cg_source_pos_t *pos, size_t n,
                                  const struct cg_source *source);
    /* Aborts it: its records are never seen by read_committed consumers. */
    cg_txn_result_t (*txn_abort)(void *ctx);

    /* ---- sinks that store the source's positions themselves; NULL for the others ---- */
    /* A database sink commits the positions in the transaction of its rows (txn_commit), so
     * they, not the source's own commits, say where to go on: on an assignment the source asks
     * (cg_engine_stored_positions) and starts each partition at pos[i].offset, which this fills
     * with the next offset to hand out, or -1 where the sink holds none (the source's own rule
     * applies). 0, or -1 with a reason (the engine stops). */
    int (*stored_positions)(void *ctx, cg_source_pos_t *pos, size_t n, char *errstr,
                            size_t errstr_size);

    /* SIGHUP: re-reads what the sink takes from files (PostgreSQL: its live settings of fresh,
     * the config file read again as for a source's reload, and the cohort definitions), taking
     * it into use between transactions. -1 with a reason when they do not load; the running
     * ones then stay. NULL: nothing to re-read. */
    int (*reload)(void *ctx, const cg_config_t *fresh, char *errstr, size_t errstr_size);

    /* A non-blocking fd that becomes readable when poll() has reports to serve (Kafka: the
     * main queue went from empty to not empty), for a source that waits on fds (watch); -1 or
     * NULL: none. Owned by the sink. */
    int (*wake_fd)(void *ctx);
} cg_sink_plugin_t;

/* Instances: a plug-in, its context and its config. */
typedef struct cg_source {
    const cg_source_plugin_t *p;
    void *ctx;
    void *conf;
} cg_source_t;

typedef struct cg_sink {
    const cg_sink_plugin_t *p;
    void *ctx;
    void *conf;
} cg_sink_t;

/* ---- the registry (gateway/plugins/registry.c): NULL-terminated ---- */
extern const cg_source_plugin_t *const cg_source_plugins[];
extern const cg_sink_plugin_t *const cg_sink_plugins[];
const cg_source_plugin_t *cg_source_plugin_find(const char *name);
const cg_sink_plugin_t *cg_sink_plugin_find(const char *name);

/* ---- what the engine offers plug-ins (gateway/engine/engine_api.c) ---- */

/* A record of produce() was delivered (ok) or dropped (purged by an aborted transaction:
 * nothing to report). */
void cg_engine_delivered(cg_engine_t *e, void *token, int dead_letter);
/* A record could not be delivered: with exactly-once and abortable, the open transaction is
 * aborted and its inputs consumed again; otherwise the gateway stops (its input stays
 * uncommitted, so a restart replays it). */
void cg_engine_delivery_failed(cg_engine_t *e, cg_err_t code, const char *reason, int abortable);
/* The record of token could not be delivered: the source rejects its input when it can
 * (reject, at-least-once), else as cg_engine_delivery_failed(). */
void cg_engine_record_failed(cg_engine_t *e, void *token, cg_err_t code, const char *reason,
                             int abortable);
/* The open transaction cannot commit any more (an abortable error): it is aborted. */
void cg_engine_txn_failed(cg_engine_t *e, const char *reason);
/* The gateway stops with this error (the first one wins). */
void cg_engine_fatal(cg_engine_t *e, cg_err_t code, const char *reason);
/* Partitions are being assigned: fills pos[i].offset with where the sink's own store says
 * to start (-1: no stored position). 1 when the sink keeps positions (then a partition without
 * one starts as the source starts a group that never committed, from the start by default: the
 * group's own commits, made for monitoring, must not skip what a new database lacks); 0 when it
 * does not (the source's rule applies); -1 after reporting a fatal error. A source that can
 * start at an offset calls it before taking the partitions. */
int cg_engine_stored_positions(cg_engine_t *e, cg_source_pos_t *pos, size_t n);
/* The source now holds n_assigned partitions, after an assignment. */
void cg_engine_assigned(cg_engine_t *e, int n_assigned);
/* Partitions are about to be taken away (lost: they cannot be committed any more): the engine
 * delivers and commits what it holds of them (or aborts), then forgets them; n_left are held
 * after. Called before the source lets go of them. */
void cg_engine_revoke(cg_engine_t *e, const cg_source_pos_t *parts, size_t n, int lost, int n_left);
/* The source recorded these positions (a commit acknowledged). */
void cg_engine_committed(cg_engine_t *e, const cg_source_pos_t *pos, size_t n);
/* What a blocking call may take now: what is left of the drain once stopping, else the drain
 * timeout. */
int cg_engine_remaining_ms(cg_engine_t *e);
/* Stopping, and the drain's time is out. */
int cg_engine_out_of_time(cg_engine_t *e);
int cg_engine_stopping(cg_engine_t *e);

#endif
