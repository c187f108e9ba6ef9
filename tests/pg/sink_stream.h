/* sink_stream.h - the versioned measurement stream that the `cohortgate sink` tests of
 * interruptions feed and check (test_pg_sink.c: rebalance; test_pg_sink_faults.c: kill -9,
 * lost connections, server restart, TLS, SIGTERM): PT_STREAM_INPUTS versions of PT_STREAM_IDS
 * measurements of 200 persons, PT_STREAM_BAD of them refused by the database. Whatever stops
 * the sink on the way, the end state is the same.
 */
#ifndef CG_TEST_SINK_STREAM_H
#define CG_TEST_SINK_STREAM_H

#include "pg_test_util.h"

#define PT_STREAM_INPUTS 20000
#define PT_STREAM_IDS    5000
#define PT_STREAM_BAD    50 /* in the last round of versions: each id keeps the one before */

/* Fills r for a case on the "records" topic with partitions partitions, and its config
 * (transactions of txn_max inputs, batches of 300 rows). */
void pt_stream_run_new(pt_run_t *r, const char *prefix, int partitions, int txn_max);
/* `cohortgate sink -c r->config [extra]`, its log in r->dir/sink.log; its exit status. */
int pt_stream_sink(const pt_run_t *r, const char *extra, int idle_exit);
/* Produces the stream to r's topic and runs `sink --init`. */
void pt_stream_feed(const pt_run_t *r);
/* Produces the stream's inputs from to before to (in order) to r's topic. */
void pt_stream_produce(const pt_run_t *r, int from, int to);
/* Asserts the stream's end state: every input's offset, every measurement at its last good
 * version, every refused row in cg_rejects exactly once, compact ids without reuse. */
void pt_stream_check(const pt_run_t *r);
/* The inputs a sink consumed, from its gateway.stopped line (-1 when none). */
long long pt_consumed_in(const char *log);

#endif
