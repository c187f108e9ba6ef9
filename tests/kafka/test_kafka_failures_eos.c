/* test_kafka_failures_eos.c - kill -9 of the `cohortgate run` process mid-stream with
 * `delivery.semantics: exactly-once`, then a restart: a read_committed reader of the outputs
 * sees every input's records and dead letters once, none lost and none twice. See gw_harness.h
 * for the run's topics, config and reconciliation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gw_harness.h"

static gw_run_t run;

static int teardown(void **state)
{
    (void)state;
    gw_run_end(&run);
    return 0;
}

static void test_kill9_restart_exactly_once(void **state)
{
    (void)state;
    gw_run_init(&run, "kill9-eos", 3, GW_KILL_INPUTS);
    gw_write_config(&run, "exactly-once", NULL, NULL);
    char err[2048];
    if (gw_check_config(&run, err, sizeof(err)) != 0)
        fail_msg("cohortgate check -c %s failed: %s", run.config, err);
    gw_case_kill_restart(&run, "kill -9, exactly-once", 1);
    run.passed = 1;
}

int main(void)
{
    if (!tk_bootstrap()) {
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_restart_exactly_once, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc;
}
