/* kafka_validate.c - the Kafka plug-in's validate (cg_plugin.h): what the loader's check cannot
 * see without librdkafka or the whole config, for `check -c` and the daemons alike
 * (cg_config_validate). A misspelt kafka.* property would otherwise be found only when a client
 * is made, unlocated; a topic that is both read and written would feed the gateway its own
 * output. */
#include "kafka_int.h"

#include <stdio.h>
#include <string.h>

/* Whether a property's value must never be shown, even when written in the file. */
static int is_secret(const cg_config_kv_t *kv)
{
    return kv->secret || strstr(kv->key, "password") || strstr(kv->key, "secret") ||
           !strcmp(kv->key, "ssl.key.pem") || !strcmp(kv->key, "sasl.oauthbearer.config");
}

int cg_kafka_conf_set_kv(rd_kafka_conf_t *conf, const cg_config_kv_t *kv, char *errstr,
                         size_t errstr_size)
{
    char e[512];
    if (rd_kafka_conf_set(conf, kv->key, kv->value, e, sizeof(e)) == RD_KAFKA_CONF_OK)
        return 0;
    /* librdkafka quotes a refused value ("Invalid value \"x\" for ..."): blank it out */
    size_t vl = strlen(kv->value);
    for (char *p; is_secret(kv) && vl && (p = strstr(e, kv->value)) != NULL;) {
        memmove(p + 3, p + vl, strlen(p + vl) + 1);
        memcpy(p, "***", 3);
    }
    snprintf(errstr, errstr_size, "'kafka.%s': %s", kv->key, e);
    return -1;
}

/* Appends a problem about keys (up to 3 of them; NULL at i: the index-th element of keys[i-1]). */
static void problem(cg_config_problem_t *prs, size_t max, size_t *n, const char *k0, const char *k1,
                    const char *k2, int index, const char *text)
{
    if (*n < max) {
        cg_config_problem_t *pr = &prs[*n];
        *pr = (cg_config_problem_t){.keys = {k0, k1, k2}, .n_keys = k2 ? 3 : k1 ? 2 : 1};
        if (k0 && !k1 && !k2 && index >= 0) { /* an element of array k0 */
            pr->keys[1] = NULL;
            pr->index[1] = index;
            pr->keys[2] = "topic";
            pr->n_keys = 3;
        }
        snprintf(pr->text, sizeof(pr->text), "%s", text);
    }
    (*n)++;
}

static int is_kafka(const char *plugin)
{
    return !plugin || !strcmp(plugin, "kafka");
}

size_t cg_kafka_validate(const void *conf, const cg_config_t *cfg, cg_config_problem_t *prs,
                         size_t max)
{
    const cg_kafka_conf_t *kc = conf;
    size_t n = 0;
    char text[sizeof(prs->text)];
    /* librdkafka's own property table: names, types and ranges, as the clients will see them */
    rd_kafka_conf_t *rc = rd_kafka_conf_new();
    for (size_t i = 0; i < kc->n_kafka; i++)
        if (cg_kafka_conf_set_kv(rc, &kc->kafka[i], text, sizeof(text)))
            problem(prs, max, &n, "kafka", kc->kafka[i].key, NULL, -1, text);
    rd_kafka_conf_destroy(rc);

    if (!is_kafka(cfg->source))
        return n;
    for (size_t i = 0; i < kc->n_inputs; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(kc->inputs[i].topic, kc->inputs[j].topic)) {
                snprintf(text, sizeof(text),
                         "'inputs[%zu].topic': '%s' is listed twice (also inputs[%zu])", i,
                         kc->inputs[i].topic, j);
                problem(prs, max, &n, "inputs", NULL, NULL, (int)i, text);
                break;
            }
    if (!is_kafka(cfg->sink))
        return n;
    /* a mapping run: what it writes must not be what it reads, nor two things at once */
    const char *names[] = {"output.topic", "output.dead_letter_topic", "output.quality_topic"};
    const char *keys[] = {"topic", "dead_letter_topic", "quality_topic"};
    const char *topics[] = {cfg->output_topic, cfg->dead_letter_topic, cfg->quality_topic};
    for (size_t o = 0; o < 3; o++) {
        if (!topics[o])
            continue;
        for (size_t i = 0; i < kc->n_inputs; i++)
            if (!strcmp(topics[o], kc->inputs[i].topic)) {
                snprintf(text, sizeof(text),
                         "'%s': '%s' is also an input topic (inputs[%zu]): the gateway would "
                         "consume its own output",
                         names[o], topics[o], i);
                problem(prs, max, &n, "output", keys[o], NULL, -1, text);
            }
        for (size_t p = 0; p < o; p++)
            if (topics[p] && !strcmp(topics[o], topics[p])) {
                snprintf(text, sizeof(text), "'%s': '%s' is also %s: give each its own topic",
                         names[o], topics[o], names[p]);
                problem(prs, max, &n, "output", keys[o], NULL, -1, text);
            }
    }
    return n;
}
