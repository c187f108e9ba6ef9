/* cg_kafka.h - the Kafka plug-in's settings, librdkafka clients built from the config, the
 * embedded demo broker, and a topic printer. kafka.* settings go to librdkafka unchanged and its
 * error text is shown as is. */
#ifndef CG_KAFKA_H
#define CG_KAFKA_H

#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "cg_config.h"
#include "cg_err.h"

/* A raw topic the Kafka source consumes (inputs[]). */
typedef struct cg_kafka_input {
    char *topic;
    cg_input_format_t format;
    char *charset; /* HL7 v2 charset of its messages with an empty MSH-18; NULL: hl7's */
    /* message types ("SIU", "MFN^M02") this feed's messages of which are consumed as no
     * research content, or dead-lettered, whatever the specs do with them (cg_source_msg_t) */
    char **no_research_content;
    size_t n_no_research_content;
    char **dead_letter;
    size_t n_dead_letter;
} cg_kafka_input_t;

typedef struct cg_kafka_preload {
    char *topic;
    char *dir; /* absolute, or resolved against the config file's folder */
} cg_kafka_preload_t;

/* The Kafka plug-in's settings (gateway/plugins/kafka/kafka_config.c), one struct for its
 * source and its sink, which share the rows: the loader fills it from cg_kafka_config_map. */
typedef struct cg_kafka_conf {
    char *group_id;
    cg_kafka_input_t *inputs; /* the source's topics */
    size_t n_inputs;
    char *transactional_id; /* the sink's delivery.transactional_id, or NULL for the default */
    cg_config_kv_t *kafka;  /* kafka.*, for librdkafka */
    size_t n_kafka;
    int embedded_enabled;
    int embedded_partitions;
    cg_kafka_preload_t *preload;
    size_t n_preload;
    int topics_create;      /* topics.create: destinations are created before the first record */
    int topics_partitions;  /* topics.partitions; 0: the broker's num.partitions */
    int topics_replication; /* topics.replication_factor; 0: the broker's default */
    int topics_wait_ms;     /* topics.wait_ms: how long a new destination may hold records */
} cg_kafka_conf_t;

extern const cg_config_map_t cg_kafka_config_map[];

/* The Kafka settings of a loaded config (never NULL for one; NULL for cfg NULL). */
const cg_kafka_conf_t *cg_kafka_conf(const cg_config_t *cfg);
/* Value of a kafka.* setting, or NULL (kc may be NULL). */
const char *cg_kafka_get(const cg_kafka_conf_t *kc, const char *key);

typedef void(cg_kafka_dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
typedef void(cg_kafka_rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                    rd_kafka_topic_partition_list_t *parts, void *opaque);
typedef void(cg_kafka_commit_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *offsets, void *opaque);
/* librdkafka's statistics JSON (every statistics.interval.ms, 5000 unless kafka.* sets it);
 * return 0 to let librdkafka free json. */
typedef int(cg_kafka_stats_cb)(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);

/* Destinations made ready before their first record, so that a producer never writes to a
 * topic the broker is still creating (librdkafka 2.0 can then take a new topic's metadata for a
 * vanished topic, restart its idempotence sequence, and have acknowledged records dropped by the
 * broker as duplicates). One per producer; not thread-safe. */
typedef struct cg_kafka_topics cg_kafka_topics_t;
/* NULL when out of memory. Nothing connects until the first topic. */
cg_kafka_topics_t *cg_kafka_topics_new(const cg_config_t *cfg, const char *bootstrap);
void cg_kafka_topics_destroy(cg_kafka_topics_t *t);
typedef int(cg_kafka_stop_cb)(void *opaque);
/* Creates topic with the topics.* settings when topics.create (an existing topic is fine; a
 * refusal, e.g. not authorized, is logged and the wait still runs), then waits at most
 * topics.wait_ms until every partition of it has a leader. stop (may be NULL) ends the wait
 * early: a stopping gateway's drain has its own bound. 0: ready (or nothing to do: t NULL, the
 * embedded broker, topics.wait_ms 0); -1: not within the wait (logged; the producer then waits
 * on the topic as it would have). */
int cg_kafka_topics_ensure(cg_kafka_topics_t *t, const char *topic, cg_kafka_stop_cb *stop,
                           void *opaque);

/* The transactional.id of an exactly-once gateway: delivery.transactional_id, or
 * "GROUP_ID.HOSTNAME" (stable across restarts, distinct between hosts). Written to buf. */
const char *cg_kafka_transactional_id(const cg_config_t *cfg, char *buf, size_t size);

/* An idempotent producer (acks=all) with delivery reports to dr_cb; transactional (with
 * cg_kafka_transactional_id()) when cfg asks for exactly-once. cfg may be NULL (defaults). */
rd_kafka_t *cg_kafka_producer_new(const cg_config_t *cfg, const char *bootstrap,
                                  cg_kafka_dr_cb *dr_cb, void *opaque, char *errstr,
                                  size_t errstr_size);
/* A group consumer with manual offset commits, reading from the earliest offset when the group
 * has none, and only committed records of transactional producers (isolation.level
 * read_committed: the default, forced for exactly-once). Its group and kafka.* settings are kc's
 * (a source's own; NULL: cfg's). stats_cb may be NULL. */
rd_kafka_t *cg_kafka_consumer_new(const cg_config_t *cfg, const cg_kafka_conf_t *kc,
                                  const char *bootstrap, cg_kafka_rebalance_cb *rebalance_cb,
                                  cg_kafka_commit_cb *commit_cb, cg_kafka_stats_cb *stats_cb,
                                  void *opaque, char *errstr, size_t errstr_size);

/* A header's last value as a C string in buf (cut to size - 1 bytes), "" when the message has
 * none; returns buf. For callers that take strings, such as the metrics' labels. at: the index
 * the header has when the engine wrote the record (looked at first, so that a delivery report
 * per record need not scan them all), or -1. */
const char *cg_kafka_header(const rd_kafka_message_t *m, const char *name, int at, char *buf,
                            size_t size);

/* The embedded broker: librdkafka's in-process mock cluster, for the demo only. */
typedef struct cg_kafka_embedded cg_kafka_embedded_t;

/* Starts it, creates the config's topics and produces embedded_broker.preload files. */
cg_kafka_embedded_t *cg_kafka_embedded_start(const cg_config_t *cfg, char *errstr,
                                             size_t errstr_size);
const char *cg_kafka_embedded_bootstrap(const cg_kafka_embedded_t *eb);
/* NULL-safe. */
void cg_kafka_embedded_stop(cg_kafka_embedded_t *eb);

/* Reads each topic from the beginning to its end and prints a heading with the count, then up
 * to max_per_topic records (value, and the cg.error.* headers of dead letters). */
cg_err_t cg_kafka_print_topics(const char *bootstrap, const char *const *topics, size_t n_topics,
                               int max_per_topic, FILE *out);

#endif
