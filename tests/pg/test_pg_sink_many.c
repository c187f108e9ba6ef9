/* test_pg_sink_many.c - one `cohortgate sink` command for several databases (-c A -c B), each
 * with its own subscription, against the real broker and PostgreSQL server (labels kafka and
 * pg; exit 77 without them):
 *
 *   two:      --init of both, then both streams loaded to their end states, every log line
 *             marked with its instance; SIGTERM to the command stops both, drained (exit 0).
 *   one fate: a config whose schema was never made fails at start: the other is stopped and
 *             the command exits 1, saying which; configs sharing a group_id or a metrics
 *             address are refused before anything starts (port 0 is no shared address).
 */
#include "sink_stream.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

/* `cohortgate sink -c a -c b [extra]`, its output in log; started, its pid. */
static pid_t start_both(const pt_run_t *a, const pt_run_t *b, const char *extra, const char *log)
{
    char *argv[] = {(char *)CG_GATEWAY_BIN,
                    (char *)"sink",
                    (char *)"-c",
                    (char *)a->config,
                    (char *)"-c",
                    (char *)b->config,
                    extra ? (char *)extra : NULL,
                    extra ? (char *)"1500" : NULL,
                    NULL};
    pid_t pid = tk_spawn(argv, log, NULL);
    assert_true(pid > 0);
    return pid;
}

static void test_two(void **state)
{
    (void)state;
    pt_run_t a, b;
    pt_stream_run_new(&a, "cg-it-many-a", 2, 500);
    pt_stream_run_new(&b, "cg-it-many-b", 3, 500);
    char log[400], cmd[1600];
    snprintf(log, sizeof(log), "%s/sink.log", a.dir);
    /* --init of both in one command */
    snprintf(cmd, sizeof(cmd), "%s sink --init -c '%s' -c '%s' > '%s' 2>&1", CG_GATEWAY_BIN,
             a.config, b.config, log);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(tk_file_count(log, "schema "), 2);
    pt_stream_produce(&a, 0, PT_STREAM_INPUTS);
    pt_stream_produce(&b, 0, PT_STREAM_INPUTS / 2);
    pid_t pid = start_both(&a, &b, NULL, log);
    pt_wait_committed(&a, PT_STREAM_INPUTS);
    pt_wait_committed(&b, PT_STREAM_INPUTS / 2);
    /* b's second half while both run: b's process takes it, a's is idle */
    pt_stream_produce(&b, PT_STREAM_INPUTS / 2, PT_STREAM_INPUTS);
    pt_wait_committed(&b, PT_STREAM_INPUTS);
    kill(pid, SIGTERM);
    pt_wait_exit(pid, log);
    pt_stream_check(&a);
    pt_stream_check(&b);
    /* each instance's lines say which it is, and each stopped */
    char want[600];
    for (int i = 0; i < 2; i++) {
        snprintf(want, sizeof(want), "\"event\":\"gateway.stopped\",\"instance\":\"%s\"",
                 i ? b.config : a.config);
        assert_int_equal(tk_file_count(log, want), 1);
    }
    assert_int_equal(tk_file_count(log, "gateway.instance_failed"), 0);
    pt_run_end(&a);
    pt_run_end(&b);
}

static void test_one_fate(void **state)
{
    (void)state;
    pt_run_t a, b;
    pt_stream_run_new(&a, "cg-it-many-ok", 1, 500);
    pt_stream_run_new(&b, "cg-it-many-noinit", 1, 500);
    pt_stream_feed(&a); /* produced and --init; b's schema is never made */
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", a.dir);
    pid_t pid = start_both(&a, &b, NULL, log);
    assert_int_equal(pt_wait_status(pid, log), 1);
    /* the supervisor's line has no instance: it is the command's own */
    char want[600];
    snprintf(want, sizeof(want), "cohortgate sink: %s ended with exit status 1: stopping the other",
             b.config);
    assert_int_equal(tk_file_count(log, want), 1);
    snprintf(want, sizeof(want), "\"event\":\"gateway.stopped\",\"instance\":\"%s\"", a.config);
    assert_int_equal(tk_file_count(log, want), 1);

    /* one group for two databases: refused before either starts */
    pt_write_config(&b, b.config, 500, 200, "", "");
    pt_sh("sed -i 's/\"group_id\": \"%s\"/\"group_id\": \"%s\"/' '%s'", b.name, a.name, b.config);
    pid = start_both(&a, &b, "--idle-exit", log);
    assert_int_equal(pt_wait_status(pid, log), 1);
    assert_int_equal(tk_file_count(log, "have the same group_id"), 1);
    /* one metrics address for two databases: refused too (port 0, any free port, is not one) */
    pt_write_config(&b, b.config, 500, 200, "", " \"metrics\": {\"listen\": \"127.0.0.1:0\"},\n");
    pt_write_config(&a, a.config, 500, 200, "", " \"metrics\": {\"listen\": \"127.0.0.1:0\"},\n");
    snprintf(log, sizeof(log), "%s/sink-port0.log", a.dir);
    pid = start_both(&a, &b, "--idle-exit", log);
    assert_int_equal(pt_wait_status(pid, log), 1); /* b's schema was never made */
    assert_int_equal(tk_file_count(log, "have the same"), 0);
    assert_true(tk_file_count(log, "gateway.instance_failed") > 0);
    pt_write_config(&b, b.config, 500, 200, "",
                    " \"metrics\": {\"listen\": \"127.0.0.1:19464\"},\n");
    pt_write_config(&a, a.config, 500, 200, "",
                    " \"metrics\": {\"listen\": \"127.0.0.1:19464\"},\n");
    snprintf(log, sizeof(log), "%s/sink-port.log", a.dir);
    pid = start_both(&a, &b, "--idle-exit", log);
    assert_int_equal(pt_wait_status(pid, log), 1);
    assert_int_equal(tk_file_count(log, "have the same metrics.listen"), 1);
    pt_run_end(&a);
    pt_run_end(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two),
        cmocka_unit_test(test_one_fate),
    };
    return PT_RUN_TESTS(tests);
}
