/* test_kafka_failures.c - the `cohortgate run` process against the real broker when things go
 * wrong: kill -9 and a restart, two gateways in one group with one of them stopped (SIGTERM)
 * or killed (SIGKILL), SIGTERM's drain and commit, SIGHUP with a broken spec and then a good one
 * (with one worker, and with two workers on two partitions while the inputs stream).
 *
 * Each case has fresh topics, a group and a config in a temporary folder (see gw_harness.h); the
 * gateway is the built binary, started as a separate process. Inputs are a mixed feed of ORU and
 * ADT messages, junk and unmappable HL7; every case reconciles each input against the records
 * and dead letters it must have caused. The exactly-once kill -9 case is test_kafka_failures_eos
 * and the broker restart is test_kafka_broker_restart (it runs its own broker).
 * CG_TEST_FILTER='*group*' runs only the cases whose names match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_harness.h"

static gw_run_t run;

static int teardown(void **state)
{
    (void)state;
    gw_run_end(&run);
    return 0;
}

/* 1. kill -9 mid-stream, then a restart: at-least-once loses nothing (duplicates are counted). */
static void test_kill9_restart_at_least_once(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    gw_run_init(&run, "kill9", 3, GW_KILL_INPUTS);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    gw_case_kill_restart(&run, "kill -9, at-least-once", 0);
    run.passed = 1;
}

/* 4. Two gateways in one group; one is stopped (SIGTERM) or killed (SIGKILL) mid-stream and the
 * other takes its partitions over. No input is lost; after a clean SIGTERM none is repeated. */
static void two_in_a_group(const char *what, int sig)
{
    const int n = 3000;
    gw_run_init(&run, sig == SIGKILL ? "pair-kill" : "pair-term", 4, n);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    pid_t a = gw_start(&run, "a.log", NULL);
    gw_wait_log(&run, a, "a.log", "partition.assigned", 1);
    pid_t b = gw_start(&run, "b.log", NULL);
    /* b is in the group once it holds partitions; a then holds the others */
    gw_wait_log(&run, b, "b.log", "partition.assigned", 1);
    char blog[300];
    int b_before =
        tk_file_count(gw_log_path(&run, "b.log", blog, sizeof(blog)), "partition.assigned");

    gw_feed_start(&run, 0, n / 2, GW_FEED_RATE);
    gw_wait_outputs(&run, n / 10);
    gw_signal(a, sig);
    if (sig == SIGTERM)
        assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    gw_feed_join();
    gw_feed(&run, n / 2, n);
    gw_wait_committed_end(&run, n);
    /* the survivor took a's partitions over */
    assert_true(tk_file_count(blog, "partition.assigned") > b_before);
    gw_signal(b, SIGTERM);
    assert_int_equal(gw_wait_exit(b, GW_DRAIN_BOUND_MS), 0);

    gw_recon_t rc;
    gw_reconcile(&run, what, NULL, &rc);
    assert_int_equal(rc.lost, 0);
    if (sig == SIGTERM)
        assert_int_equal(rc.duplicates, 0);
    run.passed = 1;
}

static void test_two_in_a_group_one_stopped(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    two_in_a_group("two in a group, one SIGTERMed", SIGTERM);
}

static void test_two_in_a_group_one_killed(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    two_in_a_group("two in a group, one SIGKILLed", SIGKILL);
}

/* 5. SIGTERM mid-stream: exit 0 within the bound, with the committed offsets exactly at what was
 * delivered; a second run consumes exactly the rest, and nothing is repeated. */
static void test_sigterm_drains_and_commits(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 3000;
    const char *idle[] = {"--idle-exit", "2000", NULL};
    gw_run_init(&run, "drain", 3, n);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    pid_t a = gw_start(&run, "gw1.log", NULL);
    gw_wait_log(&run, a, "gw1.log", "partition.assigned", 1);
    gw_feed_start(&run, 0, n / 2, GW_FEED_RATE);
    gw_wait_outputs(&run, n / 10);
    int64_t t0 = tk_now_ms();
    gw_signal(a, SIGTERM);
    assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    printf("SIGTERM: exit 0 after %lld ms\n", (long long)(tk_now_ms() - t0));
    gw_feed_join();

    /* what is committed is exactly what has output: all below, nothing at or above */
    int64_t c[3], committed = 0;
    gw_committed(&run, c);
    for (int p = 0; p < 3; p++)
        committed += c[p] > 0 ? c[p] : 0;
    run.n_inputs = n / 2;
    gw_recon_t rc;
    gw_reconcile(&run, "after SIGTERM", c, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);
    assert_true(rc.committed_inputs > 0);
    assert_int_equal(rc.delivered_inputs, rc.committed_inputs);
    assert_int_equal(rc.committed_inputs, committed);

    /* the rest: a second run consumes exactly what was not committed */
    gw_feed(&run, n / 2, n);
    run.n_inputs = n;
    pid_t b = gw_start(&run, "gw2.log", idle);
    assert_int_equal(gw_wait_exit(b, GW_HANG_MS), 0);
    long consumed = gw_log_last_int(&run, "gw2.log", "\"msg\":\"consumed ");
    printf("second run consumed %ld, %d inputs in all, %lld committed by the first\n", consumed, n,
           (long long)committed);
    assert_int_equal(consumed, n - committed);
    gw_wait_committed_end(&run, n);
    gw_reconcile(&run, "SIGTERM, then the rest", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);
    run.passed = 1;
}

/* 6. SIGHUP with a broken spec keeps the old specs mapping; a fixed one is then taken. */
static void copy_file(const char *from, const char *to, int version, int broken)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof(text) - 1, in);
    fclose(in);
    text[n] = '\0';
    if (version) {
        char *v = strstr(text, "\"version\": 1");
        assert_non_null(v);
        v[11] = (char)('0' + version);
    }
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", to);
    FILE *out = fopen(tmp, "wb");
    assert_non_null(out);
    /* broken: the file cut short in the middle of its JSON */
    fwrite(text, 1, broken ? n / 3 : n, out);
    fclose(out);
    assert_int_equal(rename(tmp, to), 0); /* the gateway never sees a half-written file */
}

/* The order of one spec's versions on the output topics (see spec_versions). */
typedef struct out_order {
    int backwards; /* records of a lower version after one of a higher version, in the offset order
                    * of one output partition */
    int across;    /* output partitions with records of both versions, from two or more input
                    * partitions on each side of the switch */
} out_order_t;

/* What the outputs say about the records of one spec, per input i: ver[i] is their spec version
 * (0: the input has no record of that spec; -1: records of more than one version, or an envelope
 * whose version disagrees with its cg.spec.version header); part[i] and off[i] are where input i
 * sits in the input topic. order (may be NULL) says how the versions follow one another in each
 * output partition: the consumer thread produces every record, with an idempotent producer, so a
 * reload that every worker takes at one point puts each partition's old records before its new
 * ones, whichever worker mapped them. */
static void spec_versions(const char *spec, int *ver, int *part, int64_t *off, out_order_t *order)
{
    rd_kafka_t *q = tk_query_handle();
    char prefix[128], hb[64], want[128];
    snprintf(prefix, sizeof(prefix), "%s.", run.name);
    snprintf(want, sizeof(want), "\"spec\":\"%s\",\"spec_version\":", spec);
    char **topics;
    size_t nt = tk_list_topics(q, prefix, &topics);
    tk_msg_t *msgs[64];
    size_t counts[64];
    assert_true(nt <= 64);
    assert_int_equal(tk_read_many((const char *const *)topics, nt, msgs, counts), 0);
    memset(ver, 0, (size_t)run.n_inputs * sizeof(*ver));
    int backwards = 0;
    if (order)
        memset(order, 0, sizeof(*order));
    for (size_t t = 0; t < nt; t++) {
        tk_msg_t *m = msgs[t];
        size_t n = counts[t];
        /* per output partition (records come in offset order within one): the highest version
         * so far, and which input partitions gave records of version 1 and of a later one */
        int high[64] = {0};
        uint64_t from_old[64] = {0}, from_new[64] = {0};
        for (size_t j = 0; j < n; j++) {
            if (!strcmp(topics[t], run.in)) {
                int i = atoi(m[j].key + 1);
                assert_true(i >= 0 && i < run.n_inputs);
                part[i] = m[j].partition;
                off[i] = m[j].offset;
                continue;
            }
            const char *h = tk_header(&m[j], "cg.spec", hb, sizeof(hb));
            if (!strcmp(topics[t], run.dlq) || !h || strcmp(h, spec))
                continue;
            int i = atoi(strstr(m[j].value, "\"message_id\":\"G") + 15);
            assert_true(i >= 0 && i < run.n_inputs);
            const char *v = strstr(m[j].value, want);
            assert_non_null(v);
            int version = atoi(v + strlen(want));
            assert_non_null(tk_header(&m[j], "cg.spec.version", hb, sizeof(hb)));
            if (version != atoi(hb))
                version = -1;
            if (version <= 0 || (ver[i] && ver[i] != version)) {
                fprintf(stderr, "input %d: a %s record of another version: %s\n", i, spec,
                        m[j].value);
                version = -1;
            }
            if (ver[i] >= 0)
                ver[i] = version;
            int op = m[j].partition;
            assert_true(op >= 0 && op < 64);
            if (version > 0 && version < high[op] && backwards++ < 5) /* shows the first few */
                fprintf(stderr,
                        "%s [%d] offset %lld: a record of %s version %d after one of "
                        "version %d: %s\n",
                        topics[t], op, (long long)m[j].offset, spec, version, high[op], m[j].value);
            high[op] = version > high[op] ? version : high[op];
            assert_non_null(tk_header(&m[j], "cg.source.partition", hb, sizeof(hb)));
            int ip = atoi(hb);
            assert_true(ip >= 0 && ip < 64);
            if (version == 1)
                from_old[op] |= 1ull << ip;
            else if (version > 1)
                from_new[op] |= 1ull << ip;
        }
        for (int op = 0; order && op < 64; op++)
            order->across +=
                __builtin_popcountll(from_old[op]) >= 2 && __builtin_popcountll(from_new[op]) >= 2;
        tk_msgs_free(m, n);
    }
    if (order)
        order->backwards = backwards;
    tk_strv_free(topics, nt);
    rd_kafka_destroy(q);
}

/* The spec_version of every ORU record of inputs [from, to): all must be want. */
static void check_oru_versions(int from, int to, int want)
{
    int *ver = calloc((size_t)run.n_inputs, sizeof(int)),
        *part = calloc((size_t)run.n_inputs, sizeof(int));
    int64_t *off = calloc((size_t)run.n_inputs, sizeof(int64_t));
    spec_versions("hl7v2-oru-omop", ver, part, off, NULL);
    int seen = 0;
    for (int i = from; i < to; i++) {
        if (ver[i] && ver[i] != want)
            fail_msg("input %d: want ORU spec version %d, its records have %d", i, want, ver[i]);
        seen += ver[i] != 0;
    }
    free(ver);
    free(part);
    free(off);
    printf("inputs %d to %d: %d ORU input(s), all of spec version %d\n", from, to - 1, seen, want);
    assert_true(seen > 0);
}

/* The run's specs folder: copies of the shipped HL7 v2 specs (specs: the folder; oru: its ORU
 * spec; src: the shipped ORU spec). */
static void copy_specs(char *specs, size_t specs_size, char *oru, size_t oru_size, char *src,
                       size_t src_size)
{
    snprintf(specs, specs_size, "%s/specs", run.dir);
    assert_int_equal(mkdir(specs, 0755), 0);
    const char *names[] = {"hl7v2-adt-omop.json", "hl7v2-oru-omop.json",
                           "hl7v2-pharmacy-omop.json"};
    for (size_t k = 0; k < 3; k++) {
        snprintf(src, src_size, "%s/specs/%s", CG_SOURCE_DIR, names[k]);
        snprintf(oru, oru_size, "%s/%s", specs, names[k]);
        copy_file(src, oru, 0, 0);
    }
    snprintf(src, src_size, "%s/specs/hl7v2-oru-omop.json", CG_SOURCE_DIR);
    snprintf(oru, oru_size, "%s/hl7v2-oru-omop.json", specs);
}

static void test_sighup_broken_spec_keeps_old(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 600;
    gw_run_init(&run, "sighup", 3, n);
    char specs[300], oru[400], src[400];
    copy_specs(specs, sizeof(specs), oru, sizeof(oru), src, sizeof(src));
    gw_write_config(&run, "at-least-once", specs, NULL);
    char log[300];
    gw_log_path(&run, "gw.log", log, sizeof(log));

    pid_t a = gw_start(&run, "gw.log", NULL);
    gw_wait_log(&run, a, "gw.log", "partition.assigned", 1);
    gw_feed(&run, 0, n / 3);
    gw_wait_committed_end(&run, n / 3);

    /* broken: the reload fails, is logged, and the running specs keep mapping */
    copy_file(src, oru, 2, 1);
    gw_signal(a, SIGHUP);
    gw_wait_log(&run, a, "gw.log", "\"event\":\"reload.failed\"", 1);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.done\""), 0);
    assert_true(tk_file_count(log, "hl7v2-oru-omop.json") > 0); /* the error names the file */
    gw_feed(&run, n / 3, 2 * n / 3);
    gw_wait_committed_end(&run, 2 * n / 3);

    /* fixed, as version 2: the reload succeeds and the new version maps what comes next */
    copy_file(src, oru, 2, 0);
    gw_signal(a, SIGHUP);
    gw_wait_log(&run, a, "gw.log", "\"event\":\"reload.done\"", 1);
    gw_feed(&run, 2 * n / 3, n);
    gw_wait_committed_end(&run, n);
    gw_signal(a, SIGTERM);
    assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.failed\""), 1);

    gw_recon_t rc;
    gw_reconcile(&run, "SIGHUP", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);
    check_oru_versions(0, 2 * n / 3, 1);
    check_oru_versions(2 * n / 3, n, 2);
    run.passed = 1;
}

/* 7. SIGHUP with two workers (workers: 2 on two input partitions) while the inputs stream: a
 * broken spec keeps every worker mapping with the running specs; a fixed one (version 2) is taken
 * by every worker. The reload runs on the consumer thread once no job waits in any worker's ring
 * and swaps all the workers' mappers at once, so:
 * - per input partition, the ORU inputs are of version 1 up to one offset and of version 2 from
 *   it on; that offset lies at or after what was committed before the SIGHUP and at or before the
 *   partition's end when reload.done was logged (what came after is version 2, on each worker);
 * - on every output partition, where records of both workers meet, no version 1 record follows
 *   a version 2 one (a worker left with the old specs, or a reload while jobs were in the rings,
 *   would put old records after new ones).
 * Partition p maps on worker (hash(topic) + p) % 2: the two partitions are on the two workers. */

/* The high watermark of each input partition. */
static void input_ends(int64_t *out)
{
    rd_kafka_t *q = tk_query_handle();
    for (int p = 0; p < run.partitions; p++) {
        int64_t lo;
        assert_int_equal(rd_kafka_query_watermark_offsets(q, run.in, p, &lo, &out[p], 10000),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    rd_kafka_destroy(q);
}

/* Waits until the group has committed at least n inputs in all, the gateway pid running. */
static void wait_committed_at_least(pid_t pid, int64_t n)
{
    int64_t until = tk_now_ms() + GW_HANG_MS, end = -1, committed = -1;
    while (tk_group_lag(run.name, run.in, run.partitions, &end, &committed) != 0 || committed < n) {
        gw_assert_running(pid);
        if (tk_now_ms() > until)
            fail_msg("group %s: %lld input(s) committed, want %lld, after %d ms", run.name,
                     (long long)committed, (long long)n, GW_HANG_MS);
        usleep(50000);
    }
}

/* Whether the first line of the log that holds needle holds also too. */
static int log_line_has(const char *path, const char *needle, const char *also)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            found = strstr(line, also) ? 1 : -1;
    fclose(f);
    return found == 1;
}

static void test_sighup_two_workers(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    /* [0, a) streams while the broken spec is signalled, [a, b) follows the failed reload;
     * [b, c) is a burst, produced flat out, in the middle of which the fixed spec is signalled
     * (the gateway behind, jobs in the workers' rings); [c, n) follows reload.done */
    const int n = 6000, a = 1000, b = 1400, c = 5600;
    gw_run_init(&run, "sighup-w2", 2, n);
    char specs[300], oru[400], src[400], log[300];
    copy_specs(specs, sizeof(specs), oru, sizeof(oru), src, sizeof(src));
    gw_write_config(&run, "at-least-once", specs, "\"workers\": 2");
    gw_log_path(&run, "gw.log", log, sizeof(log));
    pid_t g = gw_start(&run, "gw.log", NULL);
    gw_wait_log(&run, g, "gw.log", "partition.assigned", 2);
    assert_int_equal(tk_file_count(log, "at-least-once, 2 worker(s)"), 1);

    /* broken, mid-stream: the reload fails, is logged, and both workers keep mapping */
    gw_feed_start(&run, 0, a, GW_FEED_RATE);
    wait_committed_at_least(g, a / 4);
    copy_file(src, oru, 2, 1);
    gw_signal(g, SIGHUP);
    gw_wait_log(&run, g, "gw.log", "\"event\":\"reload.failed\"", 1);
    int64_t end_failed[2];
    input_ends(end_failed);
    gw_feed_join();
    gw_feed(&run, a, b);
    wait_committed_at_least(g, b);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.done\""), 0);
    /* the error names the file */
    assert_true(log_line_has(log, "\"event\":\"reload.failed\"", "hl7v2-oru-omop.json"));

    /* fixed, as version 2, in the middle of a burst: both workers switch */
    int64_t committed_before[2], end_before[2], end_done[2];
    rd_kafka_t *q = tk_query_handle();
    int64_t out_b = tk_topic_end(q, run.out) + tk_topic_end(q, run.dlq);
    rd_kafka_destroy(q);
    gw_feed_start(&run, b, c, 0);
    gw_wait_outputs(&run, out_b + 300);
    gw_committed(&run, committed_before);
    copy_file(src, oru, 2, 0);
    gw_signal(g, SIGHUP);
    input_ends(end_before);
    gw_wait_log(&run, g, "gw.log", "\"event\":\"reload.done\"", 1);
    input_ends(end_done);
    gw_feed_join();
    gw_feed(&run, c, n);
    wait_committed_at_least(g, n);
    gw_signal(g, SIGTERM);
    assert_int_equal(gw_wait_exit(g, GW_DRAIN_BOUND_MS), 0);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.failed\""), 1);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.done\""), 1);
    /* one pass over the input: no rewind, no replay */
    assert_int_equal(gw_log_last_int(&run, "gw.log", "\"msg\":\"consumed "), n);
    printf("SIGHUP (fixed) with partitions at %lld/%lld committed, %lld/%lld produced; "
           "reload.done seen at %lld/%lld\n",
           (long long)committed_before[0], (long long)committed_before[1], (long long)end_before[0],
           (long long)end_before[1], (long long)end_done[0], (long long)end_done[1]);

    gw_recon_t rc;
    gw_reconcile(&run, "SIGHUP, two workers", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);

    int *ver = calloc((size_t)n, sizeof(int)), *part = calloc((size_t)n, sizeof(int));
    int64_t *off = calloc((size_t)n, sizeof(int64_t));
    /* the ADT spec, unchanged, stays at version 1 through both reloads */
    spec_versions("hl7v2-adt-omop", ver, part, off, NULL);
    int adt = 0;
    for (int i = 0; i < n; i++) {
        if (ver[i] && ver[i] != 1)
            fail_msg("input %d: an ADT record of version %d", i, ver[i]);
        adt += ver[i] != 0;
    }
    assert_true(adt > 0);
    out_order_t order;
    spec_versions("hl7v2-oru-omop", ver, part, off, &order);
    int after_failed[2] = {0}, after_done[2] = {0}, v1[2] = {0}, v2[2] = {0};
    int64_t last_v1[2] = {-1, -1}, first_v2[2] = {INT64_MAX, INT64_MAX};
    for (int i = 0; i < n; i++) {
        if (!ver[i])
            continue;
        int p = part[i];
        assert_true(p >= 0 && p < 2);
        if (ver[i] < 0)
            fail_msg("input %d (partition %d): ORU records of two versions", i, p);
        /* before the fixed spec was signalled, or committed by then: the running version */
        if ((i < b || off[i] < committed_before[p]) && ver[i] != 1)
            fail_msg("input %d (partition %d, offset %lld) was mapped with version %d before "
                     "the fixed spec was signalled",
                     i, p, (long long)off[i], ver[i]);
        /* produced after reload.done: the new version, on either worker */
        if (off[i] >= end_done[p] && ver[i] != 2)
            fail_msg("input %d (partition %d, offset %lld), produced after reload.done, was "
                     "mapped with version %d: that worker still has the old specs",
                     i, p, (long long)off[i], ver[i]);
        after_failed[p] += i < b && off[i] >= end_failed[p];
        after_done[p] += off[i] >= end_done[p];
        if (ver[i] == 1) {
            v1[p]++;
            last_v1[p] = off[i] > last_v1[p] ? off[i] : last_v1[p];
        } else {
            v2[p]++;
            first_v2[p] = off[i] < first_v2[p] ? off[i] : first_v2[p];
        }
    }
    free(ver);
    free(part);
    free(off);
    printf("output partitions: %d ORU record(s) of version 1 after one of version 2; %d "
           "partition(s) with both versions from both input partitions\n",
           order.backwards, order.across);
    /* one switch for all the workers: no old record after a new one on any output partition,
     * and that seen where both workers' records meet */
    assert_int_equal(order.backwards, 0);
    assert_true(order.across > 0);
    for (int p = 0; p < 2; p++) {
        printf("partition %d: %d ORU input(s) of version 1 up to offset %lld (%d after the failed "
               "reload), %d of version 2 from offset %lld (%d produced after reload.done)\n",
               p, v1[p], (long long)last_v1[p], after_failed[p], v2[p], (long long)first_v2[p],
               after_done[p]);
        /* one switch per partition, from 1 to 2 */
        assert_true(last_v1[p] < first_v2[p]);
        /* each worker mapped after the failed reload, and after the good one */
        assert_true(after_failed[p] > 0);
        assert_true(after_done[p] > 0);
    }
    run.passed = 1;
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_restart_at_least_once, teardown),
        cmocka_unit_test_teardown(test_two_in_a_group_one_stopped, teardown),
        cmocka_unit_test_teardown(test_two_in_a_group_one_killed, teardown),
        cmocka_unit_test_teardown(test_sigterm_drains_and_commits, teardown),
        cmocka_unit_test_teardown(test_sighup_broken_spec_keeps_old, teardown),
        cmocka_unit_test_teardown(test_sighup_two_workers, teardown),
    };
    if (getenv("CG_TEST_FILTER")) /* e.g. CG_TEST_FILTER='*group*' runs those cases only */
        cmocka_set_test_filter(getenv("CG_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
