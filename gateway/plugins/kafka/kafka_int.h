/* kafka_int.h - what the Kafka plug-in's files share (gateway/plugins/kafka/), not installed:
 * the source and the sink plug-ins, and the handful of things one needs of the other. */
#ifndef CG_KAFKA_INT_H
#define CG_KAFKA_INT_H

#include "cg_kafka.h"
#include "cg_plugin.h"

extern const cg_source_plugin_t cg_kafka_source_plugin;
extern const cg_sink_plugin_t cg_kafka_sink_plugin;

/* The checks the loader runs when the config chooses the source or the sink (cg_plugin.h). */
int cg_kafka_source_check(const void *conf, const cg_config_t *cfg, cg_config_problem_t *pr);
int cg_kafka_sink_check(const void *conf, const cg_config_t *cfg, cg_config_problem_t *pr);

/* What check cannot see (cg_plugin.h's validate), for the source and the sink alike
 * (kafka_validate.c): every kafka.* property through rd_kafka_conf_set, then the producer and
 * consumer made from them (no bootstrap server: nothing connects), input topics listed once, and
 * for a mapping run (Kafka in and out) no output topic that is an input or another output. */
size_t cg_kafka_validate(const void *conf, const cg_config_t *cfg, cg_config_problem_t *prs,
                         size_t max);

/* Sets a kafka.* property from the config; errstr gets "'kafka.K': reason", with the value
 * blanked out of librdkafka's reason when it is a secret ({"env"}/{"file"}, or a key that names
 * a password or secret). */
int cg_kafka_conf_set_kv(rd_kafka_conf_t *conf, const cg_config_kv_t *kv, char *errstr,
                         size_t errstr_size);

/* Blanks the value of every secret kafka.* property of kc out of text (an error of librdkafka's
 * about a client made from them). */
void cg_kafka_redact(const cg_kafka_conf_t *kc, char *text);

/* librdkafka's log lines to cg_log (a log_cb). */
void cg_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Sets one property; errstr gets "kafka.K: reason". */
int cg_kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                      size_t errstr_size);

/* The bootstrap servers a Kafka source reads from (the embedded broker's when it runs one), so
 * that a Kafka sink with it uses the same cluster; NULL when src is not a Kafka source. */
const char *cg_kafka_source_bootstrap(const cg_source_t *src);

#endif
