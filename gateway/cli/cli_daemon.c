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

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
    /* a supervisor (cg_cli_daemon_fork_each) forks with them blocked: handled from here on */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
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

/* ---- several daemons of one command (cg_cli_daemon_fork_each) ---- */

static pid_t cg_cli_children[CG_CLI_MAX_INSTANCES];
static volatile sig_atomic_t cg_cli_n_children;

static void forward_signal(int sig)
{
    int saved = errno;
    for (sig_atomic_t i = 0; i < cg_cli_n_children; i++)
        if (cg_cli_children[i] > 0)
            kill(cg_cli_children[i], sig);
    errno = saved;
}

int cg_cli_daemon_fork_each(const char *name, size_t n, const char *const *instances,
                            int (*child)(size_t i, void *ctx), void *ctx)
{
    if (n > CG_CLI_MAX_INSTANCES)
        n = CG_CLI_MAX_INSTANCES;
    /* blocked until each child has its handlers (cg_cli_daemon_run), and until the forwarding
     * below is in place: no signal meets a default action in between */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);
    fflush(NULL);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            cg_cli_n_children = 0;
            cg_log_set_instance(instances[i]);
            _exit(child(i, ctx));
        }
        if (pid < 0) {
            cg_log(CG_LOG_ERROR, "gateway.start_failed", "cohortgate %s: fork for %s: %s", name,
                   instances[i], strerror(errno));
            failed = 1;
            break;
        }
        cg_cli_children[i] = pid;
        cg_cli_n_children = (sig_atomic_t)(i + 1);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (failed)
        forward_signal(SIGTERM);
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* one fate: when one ends in failure the others are stopped (drained), so a supervisor
     * restarts the whole command and no database runs on unwatched */
    size_t left = (size_t)cg_cli_n_children;
    while (left > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        size_t i = 0;
        while (i < (size_t)cg_cli_n_children && cg_cli_children[i] != pid)
            i++;
        if (i == (size_t)cg_cli_n_children)
            continue;
        cg_cli_children[i] = -1;
        left--;
        int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && !failed && left > 0) {
            cg_log(CG_LOG_ERROR, "gateway.instance_failed",
                   "cohortgate %s: %s ended with %s %d: stopping the other %zu", name, instances[i],
                   WIFEXITED(status) ? "exit status" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), left);
            forward_signal(SIGTERM);
        }
        failed |= !ok;
    }
    return failed ? CG_EXIT_FAILURE : CG_EXIT_OK;
}
