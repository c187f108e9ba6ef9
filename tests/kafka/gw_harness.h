/* gw_harness.h - drives the real `cohortgate run` binary as a separate process against the real
 * broker, for the failure tests (test_kafka_failures*.c, test_kafka_broker_restart.c).
 *
 * A run has fresh topics (NAME.raw, NAME.records, NAME.dlq, NAME.cohort.<cohort>.<table>), a
 * group NAME and a temporary folder holding the config and the gateway's logs. Inputs are
 * tk_gen_input's mixed feed keyed k<i>; an oracle (`cohortgate map` on the same inputs) says how
 * many rows each input must produce, and gw_reconcile reads every output topic back and matches
 * each record and dead letter to its input. Every wait polls a condition with a deadline that
 * only guards against a hang; none is used to synchronise.
 *
 * The functions use cmocka's assertions: call them from a test's thread. A failed case keeps
 * its folder (config and logs) and says where; CG_TEST_KEEP=1 keeps it after a pass too.
 */
#ifndef CG_TEST_GW_HARNESS_H
#define CG_TEST_GW_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kafka_util.h"

/* gateway binary (set by CMake) */
#ifndef CG_GATEWAY_BIN
#error "CG_GATEWAY_BIN must name the cohortgate binary"
#endif

/* The longest a wait may take before the test fails as hung (never a performance bound). */
#define GW_HANG_MS 120000
/* SIGTERM must end the gateway within this bound (a functional requirement: drain is bounded).
 * Where the gateway has delivery.drain_timeout_ms, the config sets it to GW_DRAIN_TIMEOUT_MS, and
 * the bound leaves 5 s beyond it for closing the clients. */
#define GW_DRAIN_TIMEOUT_MS 15000
#define GW_DRAIN_BOUND_MS   20000

typedef struct gw_run {
    char name[96];
    char in[128], out[128], dlq[128];
    char dir[256];    /* config, logs, copied specs; removed at gw_run_end unless the test failed */
    char config[320]; /* dir/cohortgate.json */
    int partitions;
    int n_inputs;
    int passed; /* set by the test at its end: the folder is removed */
    /* what gw_write_config sets: delivery.drain_timeout_ms (0: GW_DRAIN_TIMEOUT_MS) and the
     * kafka session.timeout.ms (0: 6000; -1: none, librdkafka's default) */
    int drain_timeout_ms;
    int session_timeout_ms;
    int64_t started_ms;
} gw_run_t;

/* What gw_reconcile found. */
typedef struct gw_recon {
    size_t records;       /* records on the record and cohort topics */
    size_t distinct_rows; /* distinct (input, row) */
    size_t dead_letters;  /* records on the dead-letter topic */
    int lost;             /* inputs with a row, a cohort copy or its dead letter missing */
    size_t duplicates;    /* records (and dead letters) beyond the first of their kind */
    int replayed;         /* inputs with at least one duplicate */
    int committed_inputs; /* inputs below the committed offsets (see gw_delivered_vs_committed) */
    int delivered_inputs; /* inputs with some output */
} gw_recon_t;

/* Computes the oracle for inputs [0, n): runs `cohortgate map` over them once. */
void gw_oracle_init(int n);
/* Rows input i must produce (0: it must be dead-lettered). */
int gw_expected_rows(int i);

/* Creates the topics and the folder; what names the case (letters and dashes). */
void gw_run_init(gw_run_t *r, const char *what, int partitions, int n_inputs);
/* Writes the config: semantics ("at-least-once", "exactly-once"), specs folder (NULL: the
 * shipped specs), extra top-level JSON members (NULL or e.g. "\"workers\":2"). */
void gw_write_config(gw_run_t *r, const char *semantics, const char *specs_dir, const char *extra);
/* Whether the gateway's settings table (`cohortgate check --reference`) has this key: settings
 * being added are used only once the binary knows them. */
int gw_gateway_knows(const char *key);
/* Runs `cohortgate check -c CONFIG`; returns its exit status and its stderr in err. */
int gw_check_config(gw_run_t *r, char *err, size_t err_size);
/* Starts `cohortgate run -c CONFIG [extra args]`, logging to dir/log_name. */
pid_t gw_start(gw_run_t *r, const char *log_name, const char *const *extra_args);
/* The path of a log in the run's folder. */
const char *gw_log_path(gw_run_t *r, const char *log_name, char *buf, size_t n);
/* Waits until the log holds count occurrences of needle (fails when the process died first). */
void gw_wait_log(gw_run_t *r, pid_t pid, const char *log_name, const char *needle, int count);
/* Waits until the gateway has ended (within timeout_ms) and returns its exit code; fails if it
 * was killed by a signal or is still running. */
int gw_wait_exit(pid_t pid, int timeout_ms);
/* Fails at once, with the end of its log, when the gateway has ended (a crash, a sanitizer's
 * report): a wait on the broker alone would only run out GW_HANG_MS later. */
void gw_assert_running(pid_t pid);
/* Sends sig and, for SIGKILL, reaps the process. */
void gw_signal(pid_t pid, int sig);
/* Waits until the records and dead-letter topics together hold at least n records. */
void gw_wait_outputs(gw_run_t *r, int64_t n);
/* Waits until the group's committed offsets reach the input's end and the end holds n_inputs. */
void gw_wait_committed_end(gw_run_t *r, int n_inputs);
/* The group's committed offsets (per partition, -1 where none). */
void gw_committed(gw_run_t *r, int64_t *out);

/* Produces inputs [from, to) on a thread, at most rate per second; gw_feed_join waits for it. */
void gw_feed_start(gw_run_t *r, int from, int to, int rate);
void gw_feed_join(void);
/* Produces inputs [from, to) now, flat out. */
void gw_feed(gw_run_t *r, int from, int to);

/* Reads the input and every output topic back and matches them (read_committed). Fails on a
 * record that matches no input, a row on the wrong topic, or a row the oracle does not expect;
 * counts lost inputs and duplicates and prints a summary line. When committed is not NULL, also
 * counts which inputs lie below those offsets and which have output (see gw_recon_t) and fails
 * if any input at or above a committed offset has output or any below has none. */
void gw_reconcile(gw_run_t *r, const char *label, const int64_t *committed, gw_recon_t *out);

/* The kill -9 case: a gateway with the run's config is killed with SIGKILL while the feed
 * streams in, a second one finishes the input; no input may be lost, and with no_duplicates no
 * record may appear twice (to a read_committed reader). The config is written beforehand.
 * Inputs per run, feed rate: */
#define GW_KILL_INPUTS 3000
#define GW_FEED_RATE   2000
void gw_case_kill_restart(gw_run_t *r, const char *what, int no_duplicates);

/* Kills what the run still has running (gateways, the feeder) and removes the folder when the
 * test passed; prints where the logs are otherwise. For a cmocka teardown. */
void gw_run_end(gw_run_t *r);

/* A needle's value in a log: the integer following needle in the last line that has it, or -1. */
long gw_log_last_int(gw_run_t *r, const char *log_name, const char *needle);

#endif
