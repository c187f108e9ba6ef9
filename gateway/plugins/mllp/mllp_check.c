/* mllp_check.c - what `cohortgate check -c` checks of a listener's config (cg_mllp.h). Apart from
 * the plug-in: it reads the plug-in's settings from the config, and the config reads the plug-in
 * list, so one file holding both would make a call cycle. It checks what `listen` would refuse
 * before binding: the address and the plaintext rule, the allow list, the TLS files, the key. */
#include "mllp_int.h"

#include "cg_metrics.h"

#include <netdb.h>
#include <stdio.h>

int cg_mllp_config_check(const cg_config_t *cfg, char *errstr, size_t errstr_size)
{
    const mllp_conf_t *cf = cg_config_plugin_conf(cfg, cg_mllp_source_plugin.config_map);
    char host[256], port[8], why[300];
    if (!cf || cg_metrics_listen_parse(cf->address, host, sizeof(host), port, sizeof(port), why,
                                       sizeof(why))) {
        snprintf(errstr, errstr_size, "listen.address: %s", cf ? why : "no listener settings");
        return -1;
    }
    mllp_allow_t *allow = mllp_allow_new(cf->allow, errstr, errstr_size);
    if (!allow)
        return -1;
    mllp_allow_destroy(allow);
    mllp_tls_t *tls = mllp_tls_new(cf, errstr, errstr_size); /* loads the files */
    int has_tls = tls != NULL;
    mllp_tls_destroy(tls);
    if (!has_tls && errstr[0])
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        snprintf(errstr, errstr_size, "listen.address %s: %s", cf->address, gai_strerror(rc));
        return -1;
    }
    rc = mllp_plaintext_check(cf, ai->ai_addr, has_tls, errstr, errstr_size);
    freeaddrinfo(ai);
    if (rc)
        return -1;
    cg_pseudo_t *p = mllp_key_load(cfg, errstr, errstr_size);
    cg_pseudo_destroy(p);
    return p ? 0 : -1;
}
