/* kafka_util.h - helpers for tests that talk to the real broker started by tests/scripts/test.sh.
 */
#ifndef CG_TEST_KAFKA_UTIL_H
#define CG_TEST_KAFKA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* The broker's bootstrap address, or NULL when COHORTGATE_TEST_BOOTSTRAP is unset. */
const char *tk_bootstrap(void);
/* A topic or group name unique to this run: PREFIX-<pid>-<time>-<n>. */
void tk_unique_name(char *out, size_t n, const char *prefix);
/* Creates a topic; returns 0 or -1 (reason printed). */
int tk_create_topic(const char *topic, int partitions);
/* An idempotent producer with default settings; fatal on failure. */
rd_kafka_t *tk_producer(void);

typedef struct tk_msg {
    int32_t partition;
    int64_t offset;
    char *key; /* NUL-terminated copy; NULL when the record had none */
    size_t key_len;
    char *value; /* NUL-terminated copy; NULL when the record had none */
    size_t value_len;
    char *headers; /* "name=value\n" per header */
} tk_msg_t;

/* Reads a topic from the beginning to its end. Returns the count; *out is malloc'ed. */
size_t tk_read_all(const char *topic, tk_msg_t **out);
void tk_msgs_free(tk_msg_t *m, size_t n);
/* Value of header name in m->headers, copied to buf; NULL when absent. */
const char *tk_header(const tk_msg_t *m, const char *name, char *buf, size_t n);

/* Sum over partitions of (high watermark) and of the group's committed offset. */
int tk_group_lag(const char *group, const char *topic, int partitions, int64_t *end_sum,
                 int64_t *committed_sum);

#endif
