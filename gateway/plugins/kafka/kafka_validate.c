/* kafka_validate.c - the Kafka plug-in's validate (cg_plugin.h): what the loader's check cannot
 * see without librdkafka or the whole config, for `check -c` and the daemons alike
 * (cg_config_validate). A misspelt kafka.* property would otherwise be found only when a client
 * is made, unlocated; a topic that is both read and written would feed the gateway its own
 * output. */
#include "kafka_int.h"

#include <stdio.h>
#include <string.h>

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

static void client_problem(const cg_kafka_conf_t *kc, const char *what, char *why,
                           cg_config_problem_t *prs, size_t max, size_t *n)
{
    char text[sizeof(prs->text)];
    cg_kafka_redact(kc, why);
    snprintf(text, sizeof(text), "'kafka': librdkafka cannot make the %s from these settings: %s",
             what, why);
    problem(prs, max, n, "kafka", NULL, NULL, -1, text);
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
    /* each property alone is fine: the clients the daemon makes from them, with its own
     * settings, must be too (a SASL mechanism librdkafka lacks, an ssl.ca.location it cannot
     * load); made with no bootstrap server, they connect to nothing, and are dropped at once */
    char why[512];
    rd_kafka_t *rk = NULL;
    if (!n && is_kafka(cfg->sink) &&
        !(rk = cg_kafka_producer_new(cfg, "", NULL, NULL, why, sizeof(why))))
        client_problem(kc, "producer", why, prs, max, &n);
    if (rk)
        rd_kafka_destroy(rk);
    rk = NULL;
    if (!n && is_kafka(cfg->source) &&
        !(rk = cg_kafka_consumer_new(cfg, kc, "", NULL, NULL, NULL, NULL, why, sizeof(why))))
        client_problem(kc, "consumer", why, prs, max, &n);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }

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
    const char *names[] = {"output.topic", "output.dead_letter_topic", "output.quality_topic",
                           "output.outcome_topic"};
    const char *keys[] = {"topic", "dead_letter_topic", "quality_topic", "outcome_topic"};
    const char *topics[] = {cfg->output_topic, cfg->dead_letter_topic, cfg->quality_topic,
                            cfg->outcome_topic};
    for (size_t o = 0; o < 4; o++) {
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
