/* test_kafka_log.c - librdkafka's log lines as the gateway logs them (cg_kafka_on_log): what is
 * expected, such as the fencing of a crashed instance's transaction at an exactly-once restart,
 * is info, not a warning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka/kafka_int.h"

/* What cg_kafka_on_log writes to stderr for one line of librdkafka's, in buf. */
static void logged(int level, const char *fac, const char *line, char *buf, size_t size)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *f = tmpfile();
    assert_non_null(f);
    dup2(fileno(f), 2);
    cg_kafka_on_log(NULL, level, fac, line);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void test_fencing_at_restart_is_info(void **state)
{
    (void)state;
    char line[512], out[2048];
    /* as librdkafka 2.x writes it when a restarted exactly-once instance initializes */
    snprintf(line, sizeof(line),
             "[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: "
             "%s: retrying",
             rd_kafka_err2str(RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS));
    logged(4, "GETPID", line, out, sizeof(out));
    assert_non_null(strstr(out, "\"level\":\"info\",\"event\":\"transaction.fencing\""));
    assert_non_null(strstr(out, "expected after a crash"));
    snprintf(line, sizeof(line),
             "[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: "
             "%s: retrying",
             rd_kafka_err2str(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS));
    logged(4, "GETPID", line, out, sizeof(out));
    assert_non_null(strstr(out, "\"level\":\"info\",\"event\":\"kafka.log\""));
    /* another warning stays one */
    logged(4, "GETPID",
           "[thrd:main]: Failed to acquire transactional PID: Broker: unknown: retrying", out,
           sizeof(out));
    assert_non_null(strstr(out, "\"level\":\"warn\""));
    logged(4, "FAIL", "127.0.0.1:1/bootstrap: Connect failed", out, sizeof(out));
    assert_non_null(strstr(out, "\"level\":\"warn\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fencing_at_restart_is_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
