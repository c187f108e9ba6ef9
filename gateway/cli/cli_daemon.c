/* cli_daemon.c - what the daemons (run, listen, sink) share: running the gateway until it ends
 * or a signal stops it. One gateway a process, so the handler finds it in a static. */
#include "cg_cli.h"
#include "cg_gateway.h"
#include "cg_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cg_gateway_t *volatile cg_cli_daemon_gw;
static volatile sig_atomic_t cg_cli_daemon_reloads;

static void on_signal(int sig)
{
    cg_gateway_t *gw = cg_cli_daemon_gw;
    if (!gw)
        return;
    if (sig == SIGHUP && cg_cli_daemon_reloads)
        cg_gateway_reload(gw);
    else if (sig != SIGHUP)
        cg_gateway_stop(gw);
}

cg_err_t cg_cli_daemon_run(cg_gateway_t *gw, const char *name, int reloads)
{
    cg_cli_daemon_reloads = reloads;
    cg_cli_daemon_gw = gw;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (reloads)
        sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error of that write only */
    char errstr[1024];
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
