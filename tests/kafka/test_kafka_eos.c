/* test_kafka_eos.c - exactly-once delivery against the real Apache Kafka broker.
 *
 * Inputs are HL7 v2 results (one record each, E<i> in MSH-10) and junk (a dead letter each,
 * keyed e<i>); the gateway runs in-process with delivery.semantics exactly-once. A reader with
 * isolation.level read_committed must find every input exactly once across the record and
 * dead-letter topics, however the run was interrupted; a read_uncommitted reader shows the
 * records of aborted transactions are really in the log, only invisible.
 *
 * - A crash: a forked gateway commits three transactions and is killed with SIGKILL while the
 *   fourth is open with all its records delivered; a second run (same transactional.id, so its
 *   init fences the dead one and aborts its transaction) finishes the feed.
 * - Aborts: two commits are turned into abortable errors (cg_gateway_opts_t), so the
 *   transactions are really aborted and their inputs rewound and consumed again.
 * - Fencing: another producer with the gateway's transactional.id fences it; the gateway stops
 *   with an error naming delivery.transactional_id, and none of its records become visible.
 * - A rebalance: a second instance joins the group mid-stream; the open transaction is
 *   committed before the partitions are let go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cg_kafka.h"
#include "feed_util.h"

/* Exactly-once with transactions of txn_max inputs, committed by count only. */
static cg_config_t *eos_config(const feed_t *f, int workers, int txn_max)
{
    char delivery[256];
    snprintf(delivery, sizeof(delivery),
             "\"semantics\":\"exactly-once\",\"transaction_max_messages\":%d,"
             "\"commit_interval_ms\":600000",
             txn_max);
    return feed_config(f, delivery, workers, "");
}

typedef struct bg_run {
    cg_gateway_t *gw;
    cg_err_t rc;
    char err[512];
    int finished;
} bg_run_t;

static void *bg_main(void *arg)
{
    bg_run_t *b = arg;
    b->rc = cg_gateway_run(b->gw, b->err, sizeof(b->err));
    __atomic_store_n(&b->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The forked gateway: runs until three transactions of 250 inputs are committed and the
 * fourth holds the last 150 inputs with every record delivered (written to the log, not
 * committed), then dies by SIGKILL, as a crash. Exit codes say what went wrong otherwise. */
static void crash_child(const cg_config_t *cfg)
{
    char errstr[512];
    bg_run_t b = {0};
    b.gw = cg_gateway_new(cfg, NULL, errstr, sizeof(errstr));
    if (!b.gw) {
        fprintf(stderr, "child: %s\n", errstr);
        _exit(2);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, bg_main, &b))
        _exit(2);
    for (int waited = 0; waited < 120000; waited++) { /* a hang guard */
        cg_gateway_stats_t st;
        cg_gateway_get_stats(b.gw, &st);
        if (st.consumed == 900 && st.records_out + st.dead_lettered == 900 &&
            st.transactions_committed == 3)
            raise(SIGKILL);
        if (__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE)) {
            fprintf(stderr, "child: the gateway stopped: %s\n", b.err);
            _exit(3);
        }
        usleep(1000);
    }
    fprintf(stderr, "child: no crash point reached\n");
    _exit(4);
}

static void test_crash_then_restart_no_duplicates(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t t;
    feed_new(&t, "eos-crash");
    feed_produce(&t, 0, 900);
    cg_config_t *cfg = eos_config(&t, 1, 250);

    /* no librdkafka handle lives in this process while it forks */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        crash_child(cfg);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fail_msg("the gateway child exited with %d instead of being killed",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    assert_int_equal(WTERMSIG(status), SIGKILL);

    /* the three transactions are committed with their offsets; the open one is invisible to
     * read_committed, though its 150 records are in the log */
    assert_int_equal(feed_committed(&t), 750);
    static int seen[FEED_MAX_INPUTS];
    memset(seen, 0, sizeof(seen));
    size_t visible =
        feed_read(t.out, "read_committed", seen) + feed_read(t.dlq, "read_committed", seen);
    assert_int_equal(visible, 750);
    memset(seen, 0, sizeof(seen));
    assert_int_equal(feed_read(t.out, "read_uncommitted", seen) +
                         feed_read(t.dlq, "read_uncommitted", seen),
                     900);

    /* the restart (same transactional.id) aborts the dead transaction and redoes its inputs */
    feed_produce(&t, 900, 1000);
    cg_gateway_stats_t st = feed_run_until_idle(cfg, 0);
    assert_int_equal(st.consumed, 250);
    assert_true(st.transactions_committed >= 1);
    assert_int_equal(st.transactions_aborted, 0);
    size_t in_log = feed_assert_exactly_once(&t, 1000);
    assert_int_equal(in_log, 1000 + 150); /* the aborted 150 stay in the log, invisible */
    assert_int_equal(feed_committed(&t), 1000);
    cg_config_destroy(cfg);
}

static void test_abort_rewinds_and_redoes(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t t;
    feed_new(&t, "eos-abort");
    feed_produce(&t, 0, 600);
    /* two workers: jobs mapped but not produced are dropped by the abort and rewound too */
    cg_config_t *cfg = eos_config(&t, 2, 100);
    cg_gateway_stats_t st = feed_run_until_idle(cfg, 2);
    assert_int_equal(st.transactions_aborted, 2);
    assert_true(st.transactions_committed >= 6);
    assert_true(st.consumed >= 600 + 200); /* the aborted inputs were consumed again */
    size_t in_log = feed_assert_exactly_once(&t, 600);
    /* each aborted transaction held 100 inputs' records, flushed to the log before the abort */
    assert_int_equal(in_log, 600 + 200);
    assert_int_equal(feed_committed(&t), 600);
    cg_config_destroy(cfg);
}

static void test_fenced_gateway_stops(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t t;
    feed_new(&t, "eos-fenced");
    feed_produce(&t, 0, 50);
    cg_config_t *cfg = eos_config(&t, 1, 1000); /* the transaction stays open */
    bg_run_t b = {0};
    b.gw = cg_gateway_new(cfg, NULL, b.err, sizeof(b.err));
    assert_non_null(b.gw);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_main, &b), 0);
    cg_gateway_stats_t st;
    for (int waited = 0;; waited += 10) { /* every record delivered in the open transaction */
        cg_gateway_get_stats(b.gw, &st);
        if (st.records_out + st.dead_lettered == 50)
            break;
        assert_true(waited < 120000 && !__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE));
        usleep(10000);
    }

    /* a second instance with the same transactional.id */
    char tid[256], err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers", tk_bootstrap(), err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(c, "transactional.id",
                                       cg_kafka_transactional_id(cfg, tid, sizeof(tid)), err,
                                       sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *other = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    assert_non_null(other);
    rd_kafka_error_t *e = rd_kafka_init_transactions(other, 30000);
    if (e)
        fail_msg("init_transactions: %s", rd_kafka_error_string(e));
    rd_kafka_destroy(other);

    /* the gateway learns it is fenced when it produces again */
    feed_produce(&t, 50, 60);
    for (int waited = 0; !__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE); waited += 10) {
        assert_true(waited < 120000);
        usleep(10000);
    }
    pthread_join(th, NULL);
    fprintf(stderr, "the fenced gateway said: %s\n", b.err);
    assert_int_equal(b.rc, CG_ERR_KAFKA);
    assert_non_null(strstr(b.err, "delivery.transactional_id"));
    cg_gateway_destroy(b.gw);

    /* the fencing aborted its transaction: nothing of it is visible, nothing committed */
    static int seen[FEED_MAX_INPUTS];
    memset(seen, 0, sizeof(seen));
    assert_int_equal(
        feed_read(t.out, "read_committed", seen) + feed_read(t.dlq, "read_committed", seen), 0);
    assert_int_equal(feed_committed(&t), 0);
    cg_config_destroy(cfg);
}

/* Runs cfg on a thread of its own until idle. */
static void bg_start(bg_run_t *b, pthread_t *th, const cg_config_t *cfg)
{
    cg_gateway_opts_t o = {.idle_exit_ms = 3000};
    b->gw = cg_gateway_new(cfg, &o, b->err, sizeof(b->err));
    assert_non_null(b->gw);
    assert_int_equal(pthread_create(th, NULL, bg_main, b), 0);
}

static cg_gateway_stats_t bg_join(bg_run_t *b, pthread_t th)
{
    for (int waited = 0; !__atomic_load_n(&b->finished, __ATOMIC_ACQUIRE); waited += 10) {
        assert_true(waited < 180000); /* a hang guard */
        usleep(10000);
    }
    pthread_join(th, NULL);
    if (b->rc)
        fprintf(stderr, "run: %s\n", b->err);
    assert_int_equal(b->rc, CG_OK);
    cg_gateway_stats_t st;
    cg_gateway_get_stats(b->gw, &st);
    cg_gateway_destroy(b->gw);
    return st;
}

static cg_config_t *member_config(const feed_t *f, const char *member, int workers)
{
    char delivery[512];
    snprintf(delivery, sizeof(delivery),
             "\"semantics\":\"exactly-once\",\"transaction_max_messages\":50,"
             "\"commit_interval_ms\":200,\"transactional_id\":\"%s.%s\"",
             f->group, member);
    return feed_config(f, delivery, workers, "");
}

/* A second gateway joins the group mid-stream: the first one's partitions are revoked while
 * its transaction is open, so it commits (or aborts) before letting go; the new owner goes on
 * from the committed offsets. Each instance has its own transactional.id. */
static void test_rebalance_mid_transaction(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t t;
    feed_new(&t, "eos-rebalance");
    feed_produce(&t, 0, 1000);
    cg_config_t *cfg_a = member_config(&t, "a", 1), *cfg_b = member_config(&t, "b", 2);
    bg_run_t a = {0}, b = {0};
    pthread_t ta, tb;
    bg_start(&a, &ta, cfg_a);
    cg_gateway_stats_t sa, sb;
    for (int waited = 0;; waited += 10) { /* a is mid-stream */
        cg_gateway_get_stats(a.gw, &sa);
        if (sa.transactions_committed >= 2)
            break;
        assert_true(waited < 120000 && !__atomic_load_n(&a.finished, __ATOMIC_ACQUIRE));
        usleep(10000);
    }
    bg_start(&b, &tb, cfg_b);
    for (int waited = 0;; waited += 10) { /* the group has rebalanced over both */
        cg_gateway_get_stats(a.gw, &sa);
        cg_gateway_get_stats(b.gw, &sb);
        if (sb.assigned > 0 && sa.assigned + sb.assigned == FEED_PARTITIONS)
            break;
        assert_true(waited < 120000);
        usleep(10000);
    }
    feed_produce(&t, 1000, 1600); /* for both to share */
    sa = bg_join(&a, ta);
    sb = bg_join(&b, tb);
    fprintf(stderr, "a: %llu consumed, %llu committed, %llu aborted; b: %llu, %llu, %llu\n",
            (unsigned long long)sa.consumed, (unsigned long long)sa.transactions_committed,
            (unsigned long long)sa.transactions_aborted, (unsigned long long)sb.consumed,
            (unsigned long long)sb.transactions_committed,
            (unsigned long long)sb.transactions_aborted);
    assert_true(sb.consumed > 0);
    assert_true(sa.consumed + sb.consumed >= 1600);
    feed_assert_exactly_once(&t, 1600);
    assert_int_equal(feed_committed(&t), 1600);
    cg_config_destroy(cfg_a);
    cg_config_destroy(cfg_b);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_then_restart_no_duplicates),
        cmocka_unit_test(test_abort_rewinds_and_redoes),
        cmocka_unit_test(test_fenced_gateway_stops),
        cmocka_unit_test(test_rebalance_mid_transaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
