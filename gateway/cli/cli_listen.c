/* cli_listen.c - `cohortgate listen`: the MLLP listener (source "mllp") in front of the raw
 * topic, run by the engine in pass-through mode: no mapping, each message to the raw topic as
 * it came, acknowledged once the broker has it. */
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_gateway.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate listen -c CONFIG\n\n"
            "Receive HL7 v2 messages over MLLP on listen.address (default 127.0.0.1:2575) and\n"
            "write each one, byte for byte, to listen.topic with the idempotent producer\n"
            "(acks=all). A message is acknowledged only after the broker's delivery report:\n"
            "AA (CA in enhanced mode, MSH-15/16 valued) when stored; AE/CE when stored but it\n"
            "does not decode (marked with cg.error.* headers for the dead-letter path); AR/CR\n"
            "when it could not be stored. A resend within listen.dup_window_ms is acknowledged\n"
            "again without being written twice. The config needs \"source\": \"mllp\".\n\n"
            "options:\n"
            "  -c, --config FILE   config (JSON; see config/README.md and config/listen.json)\n"
            "  -h, --help          show this help\n\n"
            "SIGTERM or SIGINT stops accepting, acknowledges what is delivered within\n"
            "delivery.drain_timeout_ms, and closes the rest (their senders send them again).\n"
            "SIGHUP re-reads listen.tls.* files (certificate, key, client CA, CRL) for new\n"
            "connections; open ones keep theirs; files that do not load leave the running ones.\n");
}

int cg_cli_listen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return CG_EXIT_OK;
        } else {
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (!config || optind != argc) {
        fprintf(stderr, "cohortgate listen: %s\n\n",
                config ? "unexpected argument" : "a config is required (-c FILE)");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    cg_config_t *cfg = cg_cli_daemon_config(config);
    if (!cfg)
        return CG_EXIT_FAILURE;
    if (!cfg->source || strcmp(cfg->source, "mllp")) {
        cg_cli_daemon_fail("cohortgate listen", "%s: 'source' must be \"mllp\" (it is \"%s\")",
                           config, cfg->source ? cfg->source : "kafka");
        cg_config_destroy(cfg);
        return CG_EXIT_FAILURE;
    }
    char errstr[512];
    cg_gateway_opts_t gopts = {.passthrough = 1};
    cg_gateway_t *gw = cg_gateway_new(cfg, &gopts, errstr, sizeof(errstr));
    if (!gw) {
        cg_cli_daemon_fail("cohortgate listen", "%s", errstr);
        cg_config_destroy(cfg);
        return CG_EXIT_FAILURE;
    }
    cg_err_t rc = cg_cli_daemon_run(gw, "listen", 1);
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);
    return rc == CG_OK ? CG_EXIT_OK : CG_EXIT_FAILURE;
}
