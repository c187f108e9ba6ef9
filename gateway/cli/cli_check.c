/* cli_check.c - `cohortgate check`: compile a config or specs and report every error, like
 * `nginx -t`. Connects to nothing. */
#include "cg_cli.h"
#include "cg_cohort.h"
#include "cg_config.h"
#include "cg_kafka.h"
#include "cg_mapping.h"
#include "cg_subscribers.h"
#include "cg_metrics.h"
#include "cg_mllp.h"
#include "cg_pg.h"
#include "cg_spec.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CG_CHECK_MAX_ERRORS 200

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cohortgate check -c CONFIG\n"
        "       cohortgate check --spec FILE|DIR [--spec ...] [--vocab DIR|FILE ...]\n"
        "       cohortgate check --reference\n\n"
        "Load a gateway config and everything it names as `run` would (vocabularies, the\n"
        "pseudonym key, specs, cohorts), or compile mapping specs alone with the vocabularies\n"
        "beside them, without connecting to anything.\n"
        "Every error is printed as FILE:LINE:COLUMN: error: TEXT; the exit status is 1 if\n"
        "there is any.\n\n"
        "options:\n"
        "  -c, --config FILE     gateway config to check\n"
        "  -s, --spec FILE|DIR   a mapping spec, or a folder of *.json specs, to compile;\n"
        "                        again for a layer over the ones before\n"
        "      --vocab DIR|FILE  a vocabulary layer (default: each spec layer's vocab/)\n"
        "      --param NAME=VALUE  with --spec: a value for the specs' parameter NAME\n"
        "  with --spec, pseudonym.authorities (checked as -c checks them):\n" CG_CLI_AUTHORITY_HELP
        "      --reference       print the reference of every config setting (Markdown)\n"
        "  -h, --help            show this help\n");
}

static void print_errors(const cg_error_t *errs, size_t n)
{
    cg_cli_print_errors(stderr, errs, n, CG_CHECK_MAX_ERRORS);
}

/* Exposure a config allows without being wrong: a key file others may read, /metrics beyond
 * loopback, a Kafka password written in the file. Warnings (FILE: warning: ...) that leave the
 * exit status alone. */
static void warn_exposure(const char *config, const cg_config_t *cfg)
{
    const cg_kafka_conf_t *kc = cg_kafka_conf(cfg);
    for (size_t i = 0; kc && i < kc->n_kafka; i++)
        if (!kc->kafka[i].secret &&
            (strstr(kc->kafka[i].key, "password") || strstr(kc->kafka[i].key, "secret")))
            fprintf(stderr,
                    "%s: warning: kafka.%s is written in the config: anyone who reads the file "
                    "has it; take it from {\"env\": \"NAME\"} or {\"file\": \"PATH\"}\n",
                    config, kc->kafka[i].key);
    struct stat st;
    if (cfg->key_file && !stat(cfg->key_file, &st) && (st.st_mode & 077))
        fprintf(stderr,
                "%s: warning: pseudonym.key_file %s can be read or written by group or others "
                "(mode %03o): chmod 600 it, it is the key of every pseudonym\n",
                config, cfg->key_file, (unsigned)(st.st_mode & 0777));
    char host[256], port[8], why[256];
    if (!cfg->metrics_listen || cg_metrics_listen_off(cfg->metrics_listen) ||
        cg_metrics_listen_parse(cfg->metrics_listen, host, sizeof(host), port, sizeof(port), why,
                                sizeof(why)))
        return;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai))
        return; /* the config check reported it */
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int loop = a->ai_family == AF_INET
                       ? (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127
                       : a->ai_family == AF_INET6 &&
                             IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
        if (!loop) {
            fprintf(stderr,
                    "%s: warning: metrics.listen %s serves /metrics and /healthz beyond loopback, "
                    "without TLS or authentication: keep it on a management network\n",
                    config, cfg->metrics_listen);
            break;
        }
    }
    freeaddrinfo(ai);
}

static int check_specs(const cg_cli_layers_t *specs, const cg_cli_layers_t *vocab,
                       const cg_spec_param_t *params, size_t n_params,
                       const cg_cli_authorities_t *auth)
{
    static cg_error_t errs[CG_CHECK_MAX_ERRORS];
    size_t n = 0;
    const char *path = specs->paths[0]; /* the base layer names the set, as before layers */
    /* no key is needed to compile: it is used when mapping */
    cg_mapping_opts_t mo = {.no_key = 1,
                            .params = params,
                            .n_params = n_params,
                            .authorities = cg_cli_authority_opts(auth)};
    cg_cli_layers_opts(specs, vocab, &mo);
    cg_mapping_t *m = cg_mapping_load(&mo, errs, CG_CHECK_MAX_ERRORS, &n);
    if (!m) {
        print_errors(errs, n);
        fprintf(stderr, "%s: %zu error(s)\n", path, n);
        return CG_EXIT_FAILURE;
    }
    size_t nw = cg_cli_print_spec_warnings(stderr, cg_mapping_specs(m), 0);
    printf("%s: ok (%zu spec(s)", path, cg_specset_count(cg_mapping_specs(m)));
    if (specs->n > 1)
        printf(" from %zu layers", specs->n);
    if (nw)
        printf(", %zu warning(s)", nw);
    printf(")\n");
    cg_cli_print_layers(stdout, m);
    cg_cli_print_warnings(stderr, m);
    cg_mapping_destroy(m);
    return CG_EXIT_OK;
}

/* The release section: the catalogue and each subscriber's policy, as `run` compiles them. */
static int check_subscribers(const char *config, const cg_config_t *cfg, const cg_mapping_t *m)
{
    if (!cfg->n_subscribers)
        return CG_EXIT_OK;
    static cg_error_t errs[CG_CHECK_MAX_ERRORS];
    size_t n = 0;
    cg_subscribers_t *subs = cg_subscribers_load(cfg, m, errs, CG_CHECK_MAX_ERRORS, &n);
    if (!subs) {
        print_errors(errs, n);
        fprintf(stderr, "%s: %zu error(s) in release\n", config, n);
        return CG_EXIT_FAILURE;
    }
    time_t now = time(NULL);
    for (size_t i = 0; i < subs->n; i++) {
        const cg_policy_t *p = subs->v[i].policy;
        printf("%s: ok (subscriber %s: level %d and below to %s, agreement %s, policy %s)\n",
               config, subs->v[i].name, cg_policy_max_level(p), subs->v[i].topic,
               cg_policy_agreement(p), cg_policy_version(p));
        if (!cg_policy_in_force(p, now))
            fprintf(stderr,
                    "%s: warning: subscriber %s: its agreement %s has expired: it will get "
                    "nothing\n",
                    config, subs->v[i].name, cg_policy_agreement(p));
    }
    cg_subscribers_destroy(subs);
    return CG_EXIT_OK;
}

int cg_cli_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"spec", required_argument, NULL, 's'},
        {"vocab", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"reference", no_argument, NULL, 'R'},
        {"param", required_argument, NULL, 'P'},
        CG_CLI_AUTHORITY_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    cg_cli_authorities_t auth = {.n_aliases = 0};
    cg_spec_param_t params[CG_CLI_MAX_PARAMS];
    size_t n_params = 0;
    const char *config = NULL;
    cg_cli_layers_t specs = {.n = 0}, vocab = {.n = 0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 's' || c == 'v') {
            if (cg_cli_layers_add(c == 's' ? &specs : &vocab, "check",
                                  c == 's' ? "--spec" : "--vocab", optarg))
                return CG_EXIT_USAGE;
        } else if (c == 'P') {
            if (cg_cli_parse_param("check", optarg, params, &n_params, CG_CLI_MAX_PARAMS))
                return CG_EXIT_USAGE;
        } else if (c == CG_CLI_OPT_AUTH_ALIAS || c == CG_CLI_OPT_AUTH_DEFAULT ||
                   c == CG_CLI_OPT_AUTH_MISSING) {
            if (cg_cli_parse_authority("check", c, optarg, &auth))
                return CG_EXIT_USAGE;
        } else if (c == 'R') {
            cg_config_write_reference(stdout);
            return CG_EXIT_OK;
        } else if (c == 'h') {
            usage(stdout);
            return CG_EXIT_OK;
        } else {
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if ((!config && !specs.n) || (vocab.n && !specs.n) || optind != argc) {
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    int status = CG_EXIT_OK;
    if (specs.n && check_specs(&specs, &vocab, params, n_params, &auth) != CG_EXIT_OK)
        status = CG_EXIT_FAILURE;
    if (config) {
        cg_config_t *cfg = cg_cli_load_config(config);
        if (!cfg)
            return CG_EXIT_FAILURE;
        warn_exposure(config, cfg);
        /* what the daemons refuse at start once the file loaded (cg_cli_daemon_config) */
        static cg_error_t verrs[CG_CHECK_MAX_ERRORS];
        size_t nv = cg_config_validate(cfg, verrs, CG_CHECK_MAX_ERRORS);
        if (nv) {
            print_errors(verrs, nv);
            status = CG_EXIT_FAILURE;
        }
        if (cfg->source && !strcmp(cfg->source, "mllp")) {
            /* a listener: its address and the key of its message keys */
            char why[512];
            if (cg_mllp_config_check(cfg, why, sizeof(why))) {
                fprintf(stderr, "%s: error: %s\n", config, why);
                status = CG_EXIT_FAILURE;
            } else {
                printf("%s: ok (an MLLP listener for `cohortgate listen`)\n", config);
            }
            if (!cfg->specs) { /* `listen` maps nothing */
                cg_config_destroy(cfg);
                return status;
            }
        }
        if (cfg->sink && !strcmp(cfg->sink, "pg")) {
            /* a database sink: its connection settings (it maps nothing) */
            char why[512];
            if (cg_pg_config_check(cfg, why, sizeof(why))) {
                fprintf(stderr, "%s: error: %s\n", config, why);
                status = CG_EXIT_FAILURE;
            } else {
                printf("%s: ok (a PostgreSQL sink for `cohortgate sink`: %zu record topic(s))\n",
                       config, cg_kafka_conf(cfg)->n_inputs);
            }
            if (!cfg->specs) {
                cg_config_destroy(cfg);
                return status;
            }
        }
        /* what the config names must load too, as the daemon loads it: vocabularies, the
         * pseudonym key, specs and cohorts (cg_mapping.h) */
        static cg_error_t errs[CG_CHECK_MAX_ERRORS];
        size_t n = 0;
        cg_mapping_opts_t mo;
        cg_config_mapping_opts(cfg, &mo);
        /* pseudonym.authorities that validate refused (located, above) would only be refused
         * again without a place: check the rest without them */
        cg_pseudo_authorities_t *valid = cg_pseudo_authorities_new(&mo.authorities, NULL, NULL, 0);
        if (!valid)
            mo.authorities = (cg_pseudo_authority_opts_t){.missing = CG_PSEUDO_MISSING_REFUSE};
        cg_pseudo_authorities_destroy(valid);
        cg_mapping_t *m = cg_mapping_load(&mo, errs, CG_CHECK_MAX_ERRORS, &n);
        if (!m) {
            print_errors(errs, n);
            fprintf(stderr, "%s: %zu error(s)\n", config, n);
            status = CG_EXIT_FAILURE;
        } else {
            cg_cli_print_spec_warnings(stderr, cg_mapping_specs(m), 0);
            printf("%s: ok (%zu spec(s)", cfg->specs[0], cg_specset_count(cg_mapping_specs(m)));
            if (cfg->n_specs > 1)
                printf(" from %zu layers", cfg->n_specs);
            printf(")\n");
            cg_cli_print_layers(stdout, m);
            cg_cli_print_warnings(stderr, m);
            if (cfg->cohorts)
                printf("%s: ok (%zu cohort(s))\n", cfg->cohorts,
                       cg_cohortset_count(cg_mapping_cohorts(m)));
            if (check_subscribers(config, cfg, m) != CG_EXIT_OK)
                status = CG_EXIT_FAILURE;
            cg_mapping_destroy(m);
        }
        if (status == CG_EXIT_OK)
            printf("%s: ok (%zu input topic(s), records to %s, dead letters to %s, quality "
                   "records to %s%s%s)\n",
                   config, cg_kafka_conf(cfg)->n_inputs, cfg->output_topic, cfg->dead_letter_topic,
                   cfg->quality_topic, cfg->outcome_topic ? ", outcomes to " : "",
                   cfg->outcome_topic ? cfg->outcome_topic : "");
        cg_config_destroy(cfg);
    }
    return status;
}
