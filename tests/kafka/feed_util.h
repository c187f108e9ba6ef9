/* feed_util.h - a simple feed for the in-process gateway tests (test_kafka_eos.c,
 * test_kafka_backpressure.c) and its reconciliation.
 *
 * Input i is an HL7 v2 HbA1c result with MSH-10 E<i> (exactly one record on the record topic,
 * no cohorts configured) or, for i % 10 == 7, JSON junk (exactly one dead letter, keyed e<i>).
 * The checks use cmocka's assertions: call them from a test's thread.
 */
#ifndef CG_TEST_FEED_UTIL_H
#define CG_TEST_FEED_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "cg_config.h"
#include "cg_gateway.h"
#include "kafka_util.h"

#define FEED_PARTITIONS 3
#define FEED_MAX_INPUTS 2000

typedef struct feed {
    char in[128], out[128], dlq[128], group[128];
} feed_t;

int feed_is_junk(int i);
/* Fresh topics (FEED_PARTITIONS each) and group; what names the case. */
void feed_new(feed_t *f, const char *what);
/* Produces inputs [from, to) to the raw topic and flushes. */
void feed_produce(const feed_t *f, int from, int to);
/* The gateway config for f: delivery is the "delivery" object's members (e.g.
 * "\"semantics\":\"exactly-once\""), kafka_extra more "kafka" members ending with a comma, or "".
 */
cg_config_t *feed_config(const feed_t *f, const char *delivery, int workers,
                         const char *kafka_extra);
/* As feed_config, with top_extra ("\"topics\":{...},") at the config's top level. */
cg_config_t *feed_config_top(const feed_t *f, const char *delivery, int workers,
                             const char *kafka_extra, const char *top_extra);
/* Reads topic from the beginning to its end with isolation ("read_committed" or
 * "read_uncommitted") and adds one to seen[i] for each record of input i. Returns the count. */
size_t feed_read(const char *topic, const char *isolation, int *seen);
/* Every input in [0, n) once across the record and dead-letter topics, read_committed (junk as a
 * dead letter, the rest as a record). Returns what read_uncommitted finds in them. */
size_t feed_assert_exactly_once(const feed_t *f, int n);
/* Sum of the group's committed offsets over the raw topic's partitions. */
int64_t feed_committed(const feed_t *f);
/* Runs a gateway on cfg until it is idle (3 s), asserting a clean stop; returns its stats. */
cg_gateway_stats_t feed_run_until_idle(const cg_config_t *cfg, int inject_abort_commits);

#endif
