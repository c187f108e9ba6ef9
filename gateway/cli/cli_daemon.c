/* cli_daemon.c - what the daemons (run, listen, sink) share: running the gateway until it ends
 * or a signal stops it. One gateway a process, so the handler finds it in a static.
 *
 * A stop is bounded: delivery.drain_timeout_ms after SIGTERM or SIGINT, plus CG_STOP_SLACK_S,
 * an alarm ends the process whatever a thread is doing (a worker stuck on one message, a call
 * that does not return). What was not committed is consumed again on restart, as after a crash;
 * an exactly-once transaction left open is aborted by the next start's fencing. */
#include "cg_cli.h"
#include "cg_gateway.h"
#include "cg_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CG_STOP_SLACK_S 5

static cg_gateway_t *volatile cg_cli_daemon_gw;
static volatile sig_atomic_t cg_cli_daemon_reloads;
static volatile sig_atomic_t cg_cli_daemon_stop_s; /* the alarm after a stop signal */
static char cg_cli_daemon_overrun[256];            /* what the alarm writes (a JSON log line) */

static void on_alarm(int sig)
{
    (void)sig;
    /* only async-signal-safe calls: the message was made at start */
    ssize_t n = write(2, cg_cli_daemon_overrun, strlen(cg_cli_daemon_overrun));
    (void)n;
    _exit(1);
}

static void on_signal(int sig)
{
    cg_gateway_t *gw = cg_cli_daemon_gw;
    if (!gw)
        return;
    if (sig == SIGHUP && cg_cli_daemon_reloads)
        cg_gateway_reload(gw);
    else if (sig != SIGHUP) {
        cg_gateway_stop(gw);
        if (cg_cli_daemon_stop_s > 0) {
            alarm((unsigned)cg_cli_daemon_stop_s);
            cg_cli_daemon_stop_s = 0; /* a second signal does not move the bound */
        }
    }
}

cg_err_t cg_cli_daemon_run(cg_gateway_t *gw, const char *name, int reloads)
{
    cg_cli_daemon_reloads = reloads;
    int drain_ms = cg_gateway_drain_timeout_ms(gw);
    cg_cli_daemon_stop_s = (drain_ms + 999) / 1000 + CG_STOP_SLACK_S;
    snprintf(cg_cli_daemon_overrun, sizeof(cg_cli_daemon_overrun),
             "{\"level\":\"error\",\"event\":\"gateway.stop_overrun\",\"msg\":\"cohortgate %s "
             "did not stop within delivery.drain_timeout_ms (%d ms) + %d s after the signal (a "
             "worker stuck on one message?): exiting 1; what was not committed is consumed "
             "again\"}\n",
             name, drain_ms, CG_STOP_SLACK_S);
    cg_cli_daemon_gw = gw;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (reloads)
        sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error of that write only */
    char errstr[1024];
    /* the alarm, once armed, stays: freeing the gateway (joining its workers) is part of the
     * stop it bounds */
    cg_err_t rc = cg_gateway_run(gw, errstr, sizeof(errstr));
    if (rc != CG_OK)
        cg_log(CG_LOG_ERROR, "gateway.failed", "cohortgate %s: %s", name, errstr);
    cg_cli_daemon_gw = NULL;
    return rc;
}

int cg_cli_parse_ms(const char *cmd, const char *option, const char *arg, int *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || v < 1 || v > 86400000) {
        fprintf(stderr, "cohortgate %s: %s takes milliseconds from 1 to 86400000, not '%s'\n", cmd,
                option, arg);
        return -1;
    }
    *out = (int)v;
    return 0;
}
