/* cli_run.c - `cohortgate run`: the daemon. */
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_gateway.h"
#include "cg_kafka.h"
#include "cg_log.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate run -c CONFIG [--idle-exit MS] [--report | --no-report]\n\n"
            "Consume the raw topics named in CONFIG (HL7 v2 messages, XML documents, or both),\n"
            "map each message, publish the records and send what cannot be processed to the\n"
            "dead-letter topic. At-least-once (default): input offsets are committed only after\n"
            "every record they caused is delivered. Exactly-once (delivery.semantics): records\n"
            "and offsets commit together in Kafka transactions. workers: N maps on N threads.\n\n"
            "options:\n"
            "  -c, --config FILE   gateway config (JSON; see config/README.md)\n"
            "      --idle-exit MS  stop once nothing was consumed for MS milliseconds (replays,\n"
            "                      demos); by default run until SIGTERM or SIGINT\n"
            "      --report        at exit, print the output and dead-letter topics (default\n"
            "                      with embedded_broker.enabled)\n"
            "      --no-report     do not print them\n"
            "  -h, --help          show this help\n\n"
            "SIGTERM or SIGINT drains in-flight records, commits, and exits 0 within\n"
            "delivery.drain_timeout_ms (exit 1 when the drain runs out of time; what was not\n"
            "committed is consumed again). SIGHUP recompiles the specs, the cohorts and the\n"
            "release policies (config file re-read) and uses each if it compiles; otherwise the\n"
            "running ones stay and the error is logged.\n"
            "Metrics and health: http://metrics.listen/metrics and /healthz (default\n"
            "127.0.0.1:9464).\n");
}

int cg_cli_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"idle-exit", required_argument, NULL, 'i'},
        {"report", no_argument, NULL, 'r'},       {"no-report", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int idle_ms = 0, report = -1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'i':
            if (cg_cli_parse_ms("run", "--idle-exit", optarg, &idle_ms))
                return CG_EXIT_USAGE;
            break;
        case 'r':
            report = 1;
            break;
        case 'n':
            report = 0;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (!config || optind != argc) {
        fprintf(stderr, "cohortgate run: %s\n\n",
                config ? "unexpected argument" : "a config is required (-c FILE)");
        usage(stderr);
        return CG_EXIT_USAGE;
    }

    /* refuses what `check -c` refuses, before connecting to anything */
    cg_config_t *cfg = cg_cli_daemon_config(config);
    if (!cfg)
        return CG_EXIT_FAILURE;
    char errstr[1024];
    cg_gateway_opts_t gopts = {.idle_exit_ms = idle_ms, .report = stdout};
    cg_gateway_t *gw = cg_gateway_new(cfg, &gopts, errstr, sizeof(errstr));
    if (!gw) {
        cg_cli_daemon_fail("cohortgate run", "%s", errstr);
        cg_config_destroy(cfg);
        return CG_EXIT_FAILURE;
    }
    cg_err_t rc = cg_cli_daemon_run(gw, "run", 1);
    if (report == 1 || (report == -1 && cg_kafka_conf(cfg)->embedded_enabled)) {
        cg_gateway_stats_t st;
        cg_gateway_get_stats(gw, &st);
        printf("cohortgate: consumed %llu message(s): %llu record(s), %llu dead letter(s)\n",
               (unsigned long long)st.consumed, (unsigned long long)st.records_out,
               (unsigned long long)st.dead_lettered);
        cg_gateway_report_topics(gw, 20);
    }
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);
    return rc == CG_OK ? CG_EXIT_OK : CG_EXIT_FAILURE;
}
