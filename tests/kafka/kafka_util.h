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
/* Partitions of topic as the broker reports it; 0 when it does not exist (never creates it). */
int tk_partitions(const char *topic);
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

/* Produces inputs 0..n-1 of make (which writes input i into buf and returns its length) to
 * topic, keyed "k%06d" by i, and flushes. Returns 0, or -1 when a record was not delivered. */
int tk_produce_each(const char *topic, int n, size_t (*make)(int i, char *buf, size_t size));

/* Sum over partitions of (high watermark) and of the group's committed offset. */
int tk_group_lag(const char *group, const char *topic, int partitions, int64_t *end_sum,
                 int64_t *committed_sum);

/* ---- for the process-level failure tests and the gateway benchmark ---- */

#include <sys/types.h>

typedef enum tk_gen_kind {
    TK_GEN_ORU,        /* ORU^R01: HbA1c, HbA1c + glucose, or eGFR results */
    TK_GEN_ADT,        /* ADT^A01 with a diagnosis, or ADT^A08 without one */
    TK_GEN_UNMAPPABLE, /* HL7 v2 that decodes but cannot be mapped (no patient identifier) */
    TK_GEN_JUNK,       /* not HL7 v2: JSON, binary with NUL bytes, an MSA line, empty */
} tk_gen_kind_t;

/* Input i of a mixed feed, written to buf (up to n bytes); returns its length (0: an empty
 * value). HL7 messages carry MSH-10 = G<i as 7 digits>; patients repeat (97 of them); some
 * results and diagnoses fall in the shipped t2dm and ckd cohorts. Without with_junk every input
 * is a mappable ORU or ADT message. *kind (may be NULL) says which kind i is. */
size_t tk_gen_input(int i, int with_junk, char *buf, size_t n, tk_gen_kind_t *kind);
/* Produces inputs [from, to) of tk_gen_input to topic, keyed "k<i as 7 digits>", at most rate
 * per second (0: flat out), and flushes; returns 0 or -1 (reason printed). When stop is not
 * NULL, producing ends early once *stop is set. */
int tk_produce_inputs(rd_kafka_t *p, const char *topic, int from, int to, int with_junk, int rate,
                      volatile int *stop);

/* Reads topics[0..n) from their beginnings to their ends with one read_committed consumer (faster
 * than tk_read_all per topic): out[t] (malloc'ed, free with tk_msgs_free) holds counts[t]
 * records of topics[t]. Returns 0, or -1 when a topic could not be read to its end. */
int tk_read_many(const char *const *topics, size_t n, tk_msg_t **out, size_t *counts);

/* A client for metadata and watermark queries (no group); destroy with rd_kafka_destroy. */
rd_kafka_t *tk_query_handle(void);
/* Sum over partitions of the high watermark; 0 when the topic does not exist, -1 on error. */
int64_t tk_topic_end(rd_kafka_t *rk, const char *topic);
/* Names of the topics starting with prefix, sorted; returns the count, *out is malloc'ed (free
 * with tk_strv_free). */
size_t tk_list_topics(rd_kafka_t *rk, const char *prefix, char ***out);
void tk_strv_free(char **v, size_t n);
/* The group's committed offset of each partition 0..partitions-1 (-1 where it has none);
 * returns 0 or -1. */
int tk_committed(const char *group, const char *topic, int partitions, int64_t *out);

/* Starts argv[0] with argv; its stdout goes to out_path and its stderr to err_path (both
 * appended; err_path NULL: the same file), stdin from /dev/null. The child is killed when the
 * calling process dies. Returns the pid, or -1. */
pid_t tk_spawn(char *const argv[], const char *out_path, const char *err_path);
/* Waits up to timeout_ms for pid to end; returns 0 with its wait status in *status, or -1 while
 * it still runs. */
int tk_wait_pid(pid_t pid, int timeout_ms, int *status);
/* Occurrences of needle in the file at path; 0 when it does not exist. */
int tk_file_count(const char *path, const char *needle);
/* Milliseconds on the monotonic clock. */
int64_t tk_now_ms(void);

/* A broker of the test's own (tests/scripts/kafka-broker.sh in a fresh folder), for tests that
 * stop, pause or restart it without disturbing the shared one. */
typedef struct tk_own_broker {
    char home[256]; /* the script's output and the broker's folder */
    char dir[300];
    char bootstrap[128];
    int up;
} tk_own_broker_t;

/* Runs kafka-broker.sh CMD (start, stop, restart) on b's folder; its exit status. */
int tk_own_broker_script(tk_own_broker_t *b, const char *cmd);
/* Starts b in a fresh folder and points COHORTGATE_TEST_BOOTSTRAP at it (the helpers keep the
 * clients of the first bootstrap they see: start it before using them). 0, or -1. */
int tk_own_broker_start(tk_own_broker_t *b);
/* Sends sig to the broker process (SIGSTOP: unreachable, as in a network partition; SIGCONT
 * resumes it; SIGKILL: gone, and waited for). 0, or -1. */
int tk_own_broker_signal(tk_own_broker_t *b, int sig);
/* Resumes and stops it; removes its folder when remove, else says where its logs are. */
void tk_own_broker_end(tk_own_broker_t *b, int remove);

#endif
