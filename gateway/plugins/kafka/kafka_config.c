/* kafka_config.c - the Kafka plug-in's settings (cg_kafka.h): its rows, bound to
 * cg_kafka_conf_t, which its source and its sink share (a `listen` with the MLLP source and the
 * Kafka sink reads the same `kafka` object as a `run`), and the checks of the settings against
 * each other that the loader runs when the config chooses the Kafka source or sink. */
#include "kafka_int.h"

#include <stdio.h>
#include <iconv.h>
#include <string.h>

/* clang-format off */
const cg_config_map_t cg_kafka_config_map[] = {
    CG_CONFIG_ROW_STRING("group_id", cg_kafka_conf_t, group_id, "cohortgate", 0,
     "Kafka consumer group of the gateway; instances with the same group share the input partitions."),
    CG_CONFIG_ROW_ARRAY("inputs", cg_kafka_conf_t, inputs, n_inputs, cg_kafka_input_t,
     "Raw topics to consume, at least one."),
    CG_CONFIG_ROW_STRING("inputs[].topic", cg_kafka_input_t, topic, NULL, 0,
     "Name of a raw topic that carries hospital messages, one message per Kafka record."),
    CG_CONFIG_ROW_ENUM("inputs[].format", cg_kafka_input_t, format, "hl7v2", "hl7v2|xml|auto",
     "What the topic carries: HL7 v2 (ER7) messages, XML documents (CDA / C-CDA), or auto: each "
     "record by its first bytes, for topics that mix both."),
    CG_CONFIG_ROW_STRING("inputs[].charset", cg_kafka_input_t, charset, "", CG_CONFIG_F_EMPTY,
     "Character set of this topic's HL7 v2 messages whose MSH-18 is empty, when it differs from "
     "hl7.default_charset (one hospital sends GBK undeclared, the others UTF-8): an HL7 table "
     "0211 value or an iconv name. Empty: hl7.default_charset."),
    CG_CONFIG_ROW_STRINGS("inputs[].no_research_content", cg_kafka_input_t, no_research_content, n_no_research_content, "", CG_CONFIG_F_EMPTY,
     "HL7 v2 message types this topic's messages of which are consumed quietly, as no research "
     "content, whatever the specs do with them (map them or dead-letter them): \"TYPE\" for every "
     "event of a type, \"TYPE^EVENT\" for one, e.g. [\"SIU\", \"MFN^M02\"] on a feed whose "
     "scheduling and master files a study does not want. Counted in cohortgate_inputs_total as "
     "outcome no_research_content with the entry as type; no records, no quality records."),
    CG_CONFIG_ROW_STRINGS("inputs[].dead_letter", cg_kafka_input_t, dead_letter, n_dead_letter, "", CG_CONFIG_F_EMPTY,
     "HL7 v2 message types (as no_research_content) that are dead-lettered on this topic whatever "
     "the specs do with them: a feed that should never send them (an SIU on a lab feed, which the "
     "shipped specs would consume as no research content) is then seen. Reason: 'TYPE messages "
     "are dead-lettered on this input', stage select; counted as outcome dead_letter with the entry "
     "as type. A type may not be in both lists; the more specific entry (TYPE^EVENT) wins over TYPE."),
    CG_CONFIG_ROW_STRING("delivery.transactional_id", cg_kafka_conf_t, transactional_id, "", CG_CONFIG_F_EMPTY,
     "exactly-once: the producer's transactional.id. It must differ between instances that run at "
     "the same time (a second instance with the same id fences the first, which stops) and stay "
     "the same when an instance restarts, so that the restart aborts the transaction a crash left "
     "open at once instead of after transaction.timeout.ms. Default: the group_id, a dot and the "
     "host name; set it when two instances share a host."),
    CG_CONFIG_ROW_MAP("kafka", cg_kafka_conf_t, kafka, n_kafka,
     "librdkafka properties passed unchanged to the consumer and the producer, e.g. "
     "bootstrap.servers, security.protocol, sasl.*, ssl.*; each is checked by librdkafka "
     "itself at `check -c` and before a daemon connects, so a misspelt one is refused at its "
     "line. A value may be kept out of the file: {\"env\": \"NAME\"} (an environment variable) "
     "or {\"file\": \"PATH\"} (a file, relative to the config; one trailing newline dropped), "
     "e.g. \"sasl.password\": {\"env\": \"COHORTGATE_KAFKA_PASSWORD\"}; such values, and any "
     "property whose name holds password or secret, are never printed. Consumer defaults that change "
     "what is read (a kafka.* setting overrides them): auto.offset.reset=earliest (a new group "
     "reads each input topic from its start, not only what arrives after it joins), "
     "enable.partition.eof=true (a partition's end is reported, which --idle-exit waits for), "
     "isolation.level=read_committed (forced exactly-once). group.instance.id (static "
     "membership; unique per instance and stable across its restarts, e.g. the "
     "delivery.transactional_id) lets an instance restarted after a crash take back its "
     "partitions at once; without it they wait until the group drops the dead member, "
     "session.timeout.ms (45 s by default). With it, a stopped instance that does not come back "
     "holds its partitions for session.timeout.ms too."),
    CG_CONFIG_ROW_GROUP("topics",
     "The topics the gateway writes to: output, dead-letter, quality, outcome, cohort, "
     "subscriber and audit topics. Each is made ready before its first record: created when "
     "missing, then waited for until every partition has a leader. A cohort's topics are new "
     "when the cohort is, so a cluster without auto.create.topics.enable needs no one to "
     "create them by hand, and no record goes to a topic the broker is still creating."),
    CG_CONFIG_ROW_BOOL("topics.create", cg_kafka_conf_t, topics_create, "true",
     "Create a missing topic (CreateTopics, which needs the Create ACL on the cluster or the "
     "topic). false: topics are created by someone else, or by the broker's auto-creation; the "
     "gateway still waits for each to be ready."),
    CG_CONFIG_ROW_INT("topics.partitions", cg_kafka_conf_t, topics_partitions, "0", 0, 100000,
     "Partitions of a topic the gateway creates. 0: the broker's num.partitions. Records are "
     "keyed by the patient's pseudonym, so one patient's records stay in order in any case."),
    CG_CONFIG_ROW_INT("topics.replication_factor", cg_kafka_conf_t, topics_replication, "0", 0, 1000,
     "Replication factor of a topic the gateway creates. 0: the broker's "
     "default.replication.factor."),
    CG_CONFIG_ROW_INT("topics.wait_ms", cg_kafka_conf_t, topics_wait_ms, "10000", 0, 600000,
     "How long the gateway waits, once and in the background, for a new topic to be created "
     "and led after its first record; past it a warning is logged. Records meanwhile wait in "
     "the producer as they would for any topic (delivery.* and kafka.message.timeout.ms). 0: "
     "no wait, no creation."),
    CG_CONFIG_ROW_GROUP("embedded_broker",
     "An in-process Kafka broker (librdkafka's mock cluster) for demos; never for production."),
    CG_CONFIG_ROW_BOOL("embedded_broker.enabled", cg_kafka_conf_t, embedded_enabled, "false",
     "Start the embedded broker and point the gateway at it, ignoring kafka.bootstrap.servers."),
    CG_CONFIG_ROW_INT("embedded_broker.partitions", cg_kafka_conf_t, embedded_partitions, "3", 1, 64,
     "Partitions of each topic the embedded broker creates."),
    CG_CONFIG_ROW_ARRAY("embedded_broker.preload", cg_kafka_conf_t, preload, n_preload, cg_kafka_preload_t,
     "Files produced to a topic of the embedded broker before the gateway starts, one record a file."),
    CG_CONFIG_ROW_STRING("embedded_broker.preload[].topic", cg_kafka_preload_t, topic, NULL, 0,
     "Topic to fill."),
    CG_CONFIG_ROW_STRING("embedded_broker.preload[].dir", cg_kafka_preload_t, dir, NULL, CG_CONFIG_F_PATH,
     "Folder whose files (sorted by name) are produced; relative to the config file."),
    CG_CONFIG_ROW_END,
};
/* clang-format on */

const cg_kafka_conf_t *cg_kafka_conf(const cg_config_t *cfg)
{
    return cg_config_plugin_conf(cfg, cg_kafka_config_map);
}

const char *cg_kafka_get(const cg_kafka_conf_t *kc, const char *key)
{
    for (size_t i = 0; kc && i < kc->n_kafka; i++)
        if (!strcmp(kc->kafka[i].key, key))
            return kc->kafka[i].value;
    return NULL;
}

/* What both the source and the sink need: a broker, and no transactional.id of the user's. */
static int check_clients(const cg_kafka_conf_t *kc, cg_config_problem_t *pr)
{
    if (cg_kafka_get(kc, "transactional.id")) {
        /* it would make the at-least-once producer transactional; exactly-once sets it itself */
        *pr = (cg_config_problem_t){.keys = {"kafka", "transactional.id"}, .n_keys = 2};
        snprintf(pr->text, sizeof(pr->text),
                 "'kafka.transactional.id' is set by the gateway: use delivery.semantics "
                 "\"exactly-once\" and delivery.transactional_id");
        return -1;
    }
    if (!kc->embedded_enabled && !cg_kafka_get(kc, "bootstrap.servers")) {
        *pr = (cg_config_problem_t){.n_keys = 0};
        snprintf(pr->text, sizeof(pr->text),
                 "'kafka.bootstrap.servers' is required unless embedded_broker.enabled is true");
        return -1;
    }
    return 0;
}

/* Whether s is a message type entry: TYPE or TYPE^EVENT, each 1 to 7 capitals or digits (MSH-9
 * codes are three; a site's Z types may be longer). */
static int type_entry_ok(const char *s)
{
    size_t n = 0, parts = 1;
    for (; *s; s++) {
        if (*s == '^' && n && parts == 1) {
            parts++, n = 0;
            continue;
        }
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')) || ++n > 7)
            return 0;
    }
    return n > 0;
}

/* An input's no_research_content and dead_letter: well-formed, and no entry in both. */
static int check_types(const cg_kafka_input_t *in, int i, cg_config_problem_t *pr)
{
    const char *names[] = {"no_research_content", "dead_letter"};
    char **lists[] = {in->no_research_content, in->dead_letter};
    size_t counts[] = {in->n_no_research_content, in->n_dead_letter};
    for (int l = 0; l < 2; l++)
        for (size_t k = 0; k < counts[l]; k++) {
            const char *bad = NULL;
            if (!type_entry_ok(lists[l][k]))
                bad = "is no message type: TYPE or TYPE^EVENT, e.g. \"SIU\" or \"MFN^M02\"";
            for (size_t m = 0; !bad && l == 0 && m < counts[1]; m++)
                if (!strcmp(lists[0][k], lists[1][m]))
                    bad = "is in dead_letter too: say which it is";
            if (bad) {
                *pr = (cg_config_problem_t){
                    .keys = {"inputs", NULL, names[l]}, .index = {0, i, 0}, .n_keys = 3};
                snprintf(pr->text, sizeof(pr->text), "'inputs[].%s': '%s' %s", names[l],
                         lists[l][k], bad);
                return -1;
            }
        }
    return 0;
}

int cg_kafka_source_check(const void *conf, const cg_config_t *cfg, cg_config_problem_t *pr)
{
    (void)cfg;
    const cg_kafka_conf_t *kc = conf;
    if (kc->n_inputs == 0) {
        *pr = (cg_config_problem_t){.n_keys = 0};
        snprintf(pr->text, sizeof(pr->text),
                 "'inputs' must list at least one raw topic to consume");
        return -1;
    }
    for (size_t i = 0; i < kc->n_inputs; i++) {
        const char *cs = kc->inputs[i].charset;
        if (!cs || !*cs)
            continue;
        /* a charset iconv cannot convert would fail every undeclared message of the topic */
        char iname[64];
        iconv_t cd = (iconv_t)-1;
        if (cg_hl7_charset_iconv_name(cs, strlen(cs), iname, sizeof(iname)))
            cd = iconv_open("UTF-8", iname);
        if (cd == (iconv_t)-1) {
            *pr = (cg_config_problem_t){
                .keys = {"inputs", NULL, "charset"}, .index = {0, (int)i, 0}, .n_keys = 3};
            snprintf(pr->text, sizeof(pr->text),
                     "'inputs[].charset': '%s' is not a character set iconv knows", cs);
            return -1;
        }
        iconv_close(cd);
    }
    for (size_t i = 0; i < kc->n_inputs; i++)
        if (check_types(&kc->inputs[i], (int)i, pr))
            return -1;
    return check_clients(kc, pr);
}

int cg_kafka_sink_check(const void *conf, const cg_config_t *cfg, cg_config_problem_t *pr)
{
    (void)cfg;
    return check_clients(conf, pr);
}
