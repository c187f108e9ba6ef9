/* config_rows.c - the core's settings as a table (cg_config.h): each row a name, type, default,
 * bounds, description and struct field. The loader (config.c) reads config files against it and
 * config/README.md's reference is written from it; each plug-in keeps its own rows beside its
 * code (plugins/NAME/NAME_config.c). */
#include "cg_config.h"

#include <stddef.h>

/* clang-format off */
const cg_config_map_t cg_config_core_map[] = {
    CG_CONFIG_ROW_STRING("source", cg_config_t, source, "kafka", 0,
     "Where input messages come from: the source plug-in. kafka: the raw topics of `inputs`, read by a consumer group; mllp: the MLLP listener of `cohortgate listen` (listen.*), which needs neither inputs nor mapping.specs."),
    CG_CONFIG_ROW_GROUP("output",
     "Where records go."),
    CG_CONFIG_ROW_STRING("output.sink", cg_config_t, sink, "kafka", 0,
     "Where records go: the sink plug-in. kafka: to the topics below; file: one NDJSON line a record to output.file.path (dry runs: nothing is published)."),
    CG_CONFIG_ROW_STRING("output.topic", cg_config_t, output_topic, "cohortgate.records", 0,
     "Topic for records in no cohort (all records when no cohorts are configured)."),
    CG_CONFIG_ROW_STRING("output.dead_letter_topic", cg_config_t, dead_letter_topic, "cohortgate.dead-letter", 0,
     "Topic for input that could not be processed, with its original bytes and error headers."),
    CG_CONFIG_ROW_STRING("output.quality_topic", cg_config_t, quality_topic, "cohortgate.quality", 0,
     "Topic for data-quality records: an entry of a document that a spec with on_error \"entry\" "
     "left out (C-CDA's default) while the rest mapped. A record names the stage, spec, rule, "
     "column, reason and the entry's place (XPath and line, or HL7 segment) and the input's "
     "topic, partition and offset; never a value or patient data, and it has no key. It is part "
     "of its input's outputs: committed with the records, in the same transaction exactly-once."),
    CG_CONFIG_ROW_STRING("output.outcome_topic", cg_config_t, outcome_topic, "", CG_CONFIG_F_EMPTY,
     "Topic for outcome records, one per consumed input, so that a reconciler can account for "
     "every input: {\"kind\": \"outcome\", \"outcome\": records|no_rows|no_research_content|"
     "dead_letter, the message type (as the metric's type label), the number of records and "
     "quality records it gave, for a dead letter the error's stage and code (never its reason, "
     "which may quote a value), the input's topic, partition and offset}; no patient data. Keyed by "
     "the input's \"topic:partition\", so one input partition's outcomes stay in order. Part of "
     "its input's outputs: committed with them, in the same transaction exactly-once. Empty (the "
     "default): none are written. Not for `cohortgate listen` (it maps nothing)."),
    CG_CONFIG_ROW_BOOL("output.ids_as_strings", cg_config_t, ids_as_strings, "false",
     "Write 64-bit ids (row ids, person_id: the columns the JSON Schema types as int64) as JSON "
     "strings, \"5500483416384649466\", for consumers that read JSON numbers as doubles "
     "(JavaScript, jq) and would round them. The sink reads both forms."),
    CG_CONFIG_ROW_GROUP("delivery",
     "Delivery semantics."),
    CG_CONFIG_ROW_ENUM("delivery.semantics", cg_config_t, semantics, "at-least-once", "at-least-once|exactly-once",
     "at-least-once: an input offset is committed only after every record it caused is delivered "
     "(a crash replays the uncommitted inputs, so consumers may see a record twice). "
     "exactly-once: records and input offsets are committed together in Kafka transactions; a "
     "consumer with isolation.level=read_committed sees each record once."),
    CG_CONFIG_ROW_INT("delivery.commit_interval_ms", cg_config_t, commit_interval_ms, "500", 10, 600000,
     "How often delivered input offsets are committed (at-least-once), or how long a transaction "
     "stays open at most before it is committed (exactly-once; read_committed consumers see its "
     "records only then)."),
    CG_CONFIG_ROW_INT("delivery.transaction_max_messages", cg_config_t, transaction_max_messages, "10000", 1, 1000000,
     "exactly-once: input messages in one transaction at most; it is committed when it holds this "
     "many or after commit_interval_ms, whichever comes first."),
    CG_CONFIG_ROW_INT("delivery.max_in_flight", cg_config_t, max_in_flight, "20000", 1, 10000000,
     "Input messages consumed but not yet fully delivered before consumption pauses."),
    CG_CONFIG_ROW_INT("delivery.pause_after_ms", cg_config_t, pause_after_ms, "1000", 0, 600000,
     "When the output side holds consumption back (a full producer queue, max_in_flight inputs "
     "in flight) this long, the assigned partitions are paused: librdkafka stops fetching and "
     "frees what it prefetched, while the consumer keeps serving rebalances. Shorter waits only "
     "stop taking messages (a resume costs a refetch)."),
    CG_CONFIG_ROW_INT("delivery.drain_timeout_ms", cg_config_t, drain_timeout_ms, "30000", 0, 3600000,
     "On SIGTERM or SIGINT, how long in-flight records may take to be delivered and their inputs "
     "committed before the gateway gives up and exits non-zero; what was not committed is consumed "
     "again on restart."),
    CG_CONFIG_ROW_INT("workers", cg_config_t, workers, "1", 1, 32,
     "Threads that decode and map messages. 1 maps on the consumer thread; N spreads the input "
     "partitions over N threads, each partition always on the same one, so per-partition order "
     "holds. Records are produced and offsets committed by the consumer thread."),
    CG_CONFIG_ROW_GROUP("log",
     "Logging."),
    CG_CONFIG_ROW_ENUM("log.level", cg_config_t, log_level, "info", "debug|info|warn|error",
     "Least severe level written to stderr (one JSON object a line)."),
    CG_CONFIG_ROW_GROUP("metrics",
     "Prometheus metrics (GET /metrics) and a health check (GET /healthz) over HTTP; see "
     "\"Metrics and health\" below."),
    CG_CONFIG_ROW_STRING("metrics.listen", cg_config_t, metrics_listen, "127.0.0.1:9464", 0,
     "Address of the HTTP endpoint: HOST:PORT or [IPV6]:PORT (port 0 picks a free one); \"off\" "
     "for none. Loopback by default: 0.0.0.0:9464 exposes it to the network, without "
     "authentication. If it cannot be bound, the gateway logs metrics.failed and runs without it."),
    CG_CONFIG_ROW_INT("metrics.health_grace_ms", cg_config_t, metrics_health_grace_ms, "60000", 0, 86400000,
     "How long /healthz answers 200 without any input partition assigned, from the start and from "
     "the moment the last partition was revoked; then 503."),
    CG_CONFIG_ROW_INT("metrics.stuck_worker_ms", cg_config_t, metrics_stuck_worker_ms, "60000", 0, 86400000,
     "/healthz answers 503 (\"stuck: worker N has been on partition P offset O for S s\") once a "
     "worker has mapped one message this long; 0: never. The XML and HL7 bounds keep a message "
     "from taking this long; this is the alarm for one that still does."),
    CG_CONFIG_ROW_INT("metrics.max_series", cg_config_t, metrics_max_series, "1000", 10, 1000000,
     "Label sets (series) one metric may hold; beyond it, updates count in its `__overflow__` "
     "series, so that many topic or spec names cannot grow memory without end."),
    CG_CONFIG_ROW_GROUP("mapping",
     "How messages become records."),
    CG_CONFIG_ROW_STRINGS("mapping.specs", cg_config_t, specs, n_specs, NULL, CG_CONFIG_F_PATH,
     "Mapping spec file, or folder of *.json specs (see specs/README.md), or a list of them: "
     "layers, the shipped specs/ first and a site's folders after it, where a spec replaces an "
     "earlier layer's spec of the same name (\"spec\"); relative to the config file. Every spec "
     "whose input matches a message applies to it; a message no spec takes is dead-lettered, one "
     "only \"no_research_content\" specs take is consumed and counted (cohortgate_inputs_total). "
     "`cohortgate check` prints what each layer contributed and overrode."),
    CG_CONFIG_ROW_STRINGS("mapping.vocab", cg_config_t, vocab, n_vocab, "", CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "Vocabulary layers: a folder of tables (*.csv: project tables or OMOP SOURCE_TO_CONCEPT_MAP "
     "files, see specs/vocab/README.md), one such file, or a list of them, where a row replaces an "
     "earlier layer's row of the same (vocabulary, code). Default: the vocab/ folder of each spec "
     "layer, in order."),
    CG_CONFIG_ROW_STRING("mapping.athena", cg_config_t, athena, "", CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "Folder with OHDSI Athena's CONCEPT.csv and CONCEPT_RELATIONSHIP.csv, loaded after the "
     "first vocabulary layer (its ids win over the shipped tables) and before the others (a "
     "site's rows win over Athena's); empty for none."),
    CG_CONFIG_ROW_STRING("mapping.source_utc_offset", cg_config_t, source_utc_offset, "", CG_CONFIG_F_EMPTY,
     "UTC offset (+HH:MM) written for HL7 times that carry none; empty writes them without one."),
    CG_CONFIG_ROW_INT("mapping.max_message_ms", cg_config_t, max_message_ms, "10000", 0, 3600000,
     "Time budget of one message's mapping, in milliseconds (wall clock, on its worker): a message "
     "still mapping past it is dead-lettered (MAP_LIMIT, \"took longer than its budget\") instead "
     "of holding its worker and partition; 0: none. A normal message maps in well under a "
     "millisecond."),
    CG_CONFIG_ROW_INT("mapping.max_message_mb", cg_config_t, max_message_mb, "1024", 0, 1048576,
     "Memory budget of one message's mapped values, in MiB: a message that needs more is "
     "dead-lettered (MAP_LIMIT) instead of growing the worker; 0: none. Running out of memory "
     "while mapping one message dead-letters that message too, rather than stopping the "
     "gateway, which would meet it again on every restart."),
    CG_CONFIG_ROW_MAP("mapping.params", cg_config_t, spec_params, n_spec_params,
     "Values of the specs' parameters, NAME: value (specs/README.md, \"Parameters\"), such as "
     "{\"free_text\": \"value_as_string\"} (write text results, which may name anyone: "
     "specs/README.md, \"Free text\") or "
     "{\"patient_id_types\": \"NNCHN|MR|*\"}: which PID-3 identifier types are the patient's, in "
     "order of preference. A name no loaded spec declares is an error."),
    CG_CONFIG_ROW_GROUP("cohorts",
     "Specialty-disease cohorts: which records go to which cohort topics."),
    CG_CONFIG_ROW_STRING("cohorts.path", cg_config_t, cohorts, "", CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "Cohort file, or folder of *.json cohort files (see specs/cohorts/README.md); relative to "
     "the config file. Empty: no cohorts, every record goes to output.topic."),
    CG_CONFIG_ROW_STRING("cohorts.topic", cg_config_t, cohort_topic, "cohort.{cohort}.{table}", 0,
     "Topic of a record in a cohort: {cohort} and {table} are replaced; a record in several "
     "cohorts goes to each one's topic."),
    CG_CONFIG_ROW_GROUP("hl7",
     "HL7 v2 decoding."),
    CG_CONFIG_ROW_STRING("hl7.default_charset", cg_config_t, hl7_charset, "UNICODE UTF-8", 0,
     "Character set of messages whose MSH-18 is empty: an HL7 table 0211 value (\"8859/1\", "
     "\"GB 18030-2000\") or an iconv name (\"GBK\"). Chinese feeds often send GBK undeclared."),
    CG_CONFIG_ROW_BOOL("hl7.strict_segments", cg_config_t, hl7.strict_segments, "false",
     "Refuse a line that is not a segment; by default it continues the previous segment's last "
     "value (editors wrap long lines)."),
    CG_CONFIG_ROW_INT("hl7.max_message_bytes", cg_config_t, hl7.max_message_bytes, "16777216", 64, 2147483647,
     "Largest message accepted."),
    CG_CONFIG_ROW_INT("hl7.max_segments", cg_config_t, hl7.max_segments, "100000", 1, 1000000,
     "Most segments in one message (mapping is linear in them; a 100,000-segment ORU maps in "
     "about 0.3 s and 170 MB)."),
    CG_CONFIG_ROW_INT("hl7.max_fields", cg_config_t, hl7.max_fields, "1000", 1, 1000000,
     "Most fields in one segment."),
    CG_CONFIG_ROW_INT("hl7.max_reps", cg_config_t, hl7.max_reps, "10000", 1, 1000000,
     "Most repetitions of one field."),
    CG_CONFIG_ROW_GROUP("xml",
     "XML (CDA) decoding bounds: a document past one is dead-lettered with the bound named, "
     "before it can hold a worker or its memory."),
    CG_CONFIG_ROW_INT("xml.max_document_bytes", cg_config_t, xml.max_bytes, "67108864", 64, 2147483647,
     "Largest document accepted."),
    CG_CONFIG_ROW_INT("xml.max_depth", cg_config_t, xml.max_depth, "256", 1, 256,
     "Deepest element nesting (libxml2 allows 256)."),
    CG_CONFIG_ROW_INT("xml.max_attributes", cg_config_t, xml.max_attributes, "256", 1, 100000,
     "Most attributes of one element, namespace declarations included; checked before parsing, "
     "since libxml2's time grows with the square of an element's attributes."),
    CG_CONFIG_ROW_INT("xml.max_nodes", cg_config_t, xml.max_nodes, "1000000", 1000, 100000000,
     "Most nodes in one document (elements, attributes and text): the bound on a parse's "
     "memory, about 140 bytes an element and 250 an attribute. A C-CDA averages ~29 bytes of "
     "document a node, so the default takes a ~29 MB document and at most ~250 MB a worker."),
    CG_CONFIG_ROW_GROUP("pseudonym",
     "The key of the HMAC that turns patient identifiers into person_id; it never appears in "
     "output, logs or dead letters."),
    CG_CONFIG_ROW_STRING("pseudonym.key_file", cg_config_t, key_file, "", CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "File holding the key (at least 32 bytes; one trailing newline is ignored); relative to the "
     "config file. Give this or key_env."),
    CG_CONFIG_ROW_STRING("pseudonym.key_env", cg_config_t, key_env, "COHORTGATE_PSEUDONYM_KEY", 0,
     "Environment variable holding the key, used when key_file is empty."),
    CG_CONFIG_ROW_ENUM("pseudonym.message_id", cg_config_t, message_id_plain, "keyed", "keyed|plain",
     "What records carry as source.message_id (and a document retraction as its "
     "replaced_document_id and replaced_set_id): keyed, the first 40 hex digits of a keyed HMAC of the sender's "
     "MSH-10 or document id, stable for one key, so retractions still match; plain, the id as "
     "sent (an identifier: only where the consumers may hold it)."),
    CG_CONFIG_ROW_INT("pseudonym.date_shift_days", cg_config_t, date_shift_days, "0", 0, 3650,
     "Shift each patient's dates by a keyed offset in [-N, N] days; 0 keeps dates."),
    CG_CONFIG_ROW_GROUP("pseudonym.authorities",
     "Which assigning authority a patient identifier is hashed under: person_id is "
     "HMAC-SHA256(key, authority 0x1F identifier), so the authority decides which identifiers "
     "are one person (specs/README.md, \"Which identifier is the patient's\"). The authority is "
     "the identifier's own (PID-3.4, MRG-1.4; a C-CDA id's root), else defaults[its sending "
     "facility], else, with missing \"facility\", the sending facility itself; then aliases "
     "apply. The sending facility is the spec's patient.facility: MSH-4.1, else MSH-4.2, for "
     "HL7 v2; the custodian organization's id for the shipped C-CDA spec. Read at start, like the "
     "key: a reload (SIGHUP) keeps them."),
    CG_CONFIG_ROW_MAP("pseudonym.authorities.aliases", cg_config_t, auth_aliases, n_auth_aliases,
     "FROM: TO, applied to every authority before hashing (exact bytes, one step: TO may not be "
     "a FROM), so that the names one registry goes by hash alike: "
     "{\"2.16.840.1.113883.19.5\": \"HOSP_A\"} makes a C-CDA id under that OID and an HL7 PID-3 "
     "under the namespace HOSP_A one person."),
    CG_CONFIG_ROW_MAP("pseudonym.authorities.defaults", cg_config_t, auth_defaults, n_auth_defaults,
     "SENDING_FACILITY: AUTHORITY, the authority of an identifier that has none, by the "
     "message's sending facility (exact bytes of MSH-4.1, else MSH-4.2): {\"HOSP_A\": "
     "\"HOSP_A_MRN\"}."),
    CG_CONFIG_ROW_ENUM("pseudonym.authorities.missing", cg_config_t, auth_missing, "refuse", "refuse|facility",
     "An identifier without an authority whose sending facility has no default: refuse "
     "dead-letters the message (stage map, the reason names the fields, never a value), as "
     "hashing it without an authority would make the same local number at two hospitals one "
     "person; facility hashes it under the sending facility (an opt-in for feeds that never "
     "send authorities: each hospital's numbers stay its own, and link to no other feed)."),
    CG_CONFIG_ROW_GROUP("release",
     "Graded release (specs/classification/README.md): subscribers (a sponsor's pre-cohort feed, "
     "a disease database) each get their own topic of records under a data-use policy: only the "
     "tables, cohorts and levels it grants, columns generalized or dropped per the "
     "classification catalogue, pseudonyms under the subscriber's own key. Without subscribers "
     "nothing changes."),
    CG_CONFIG_ROW_STRINGS("release.catalogue", cg_config_t, catalogue, n_catalogue, "", CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "The classification catalogue: a folder, or a list of folders (the base first, a site's "
     "over it), each with columns.csv and/or sensitive-codes.csv; relative to the config file. "
     "Empty: classification/ beside the first mapping.specs layer (the shipped "
     "specs/classification)."),
    CG_CONFIG_ROW_STRING("release.audit_topic", cg_config_t, audit_topic, "cohortgate.audit", 0,
     "Topic for audit records: per subscriber and interval, the records released by table and "
     "level and those withheld by reason, with the policy and catalogue versions."),
    CG_CONFIG_ROW_INT("release.audit_interval_ms", cg_config_t, audit_interval_ms, "10000", 100, 3600000,
     "How often audit records are written (and at shutdown). Each is part of the input whose "
     "records completed it, so it is committed with them."),
    CG_CONFIG_ROW_ARRAY("release.subscribers", cg_config_t, subscribers, n_subscribers, cg_config_subscriber_t,
     "The subscribers, each under its data-use agreement."),
    CG_CONFIG_ROW_STRING("release.subscribers[].name", cg_config_subscriber_t, name, NULL, 0,
     "The subscriber's name (audit records, metrics, its derived key)."),
    CG_CONFIG_ROW_STRING("release.subscribers[].topic", cg_config_subscriber_t, topic, NULL, 0,
     "The topic its records go to; no other output may use it."),
    CG_CONFIG_ROW_STRING("release.subscribers[].agreement", cg_config_subscriber_t, agreement, NULL, 0,
     "The data-use agreement's id, carried in audit records."),
    CG_CONFIG_ROW_STRING("release.subscribers[].expires", cg_config_subscriber_t, expires, NULL, 0,
     "The agreement's last day, YYYY-MM-DD (UTC). After it the subscriber gets nothing (each "
     "withheld record is counted, cohortgate_release_withheld_total{reason=\"agreement_expired\"}, "
     "and logged once as release.agreement_expired); the others go on."),
    CG_CONFIG_ROW_INT("release.subscribers[].max_level", cg_config_subscriber_t, max_level, NULL, 1, 5,
     "The highest level (GB/T 39725-2020, 1-5) the subscriber may receive: no record carries a "
     "column or is a row above it."),
    CG_CONFIG_ROW_STRINGS("release.subscribers[].tables", cg_config_subscriber_t, tables, n_tables, "", CG_CONFIG_F_EMPTY,
     "Tables it may receive (\"person\", \"measurement\", ...). Empty: every table the policy "
     "can release whole. A listed table whose required column the policy would drop is refused."),
    CG_CONFIG_ROW_STRINGS("release.subscribers[].cohorts", cg_config_subscriber_t, cohorts, n_cohorts, "", CG_CONFIG_F_EMPTY,
     "Only rows routed to one of these cohorts (a pre-cohort feed); empty: every row."),
    /* a map row with a default: optional */
    {"release.subscribers[].levels", CG_CONFIG_MAP, "{}", NULL, 0, 0,
     "Per level (\"1\" to \"5\") what its columns become: keep, generalize (a column the "
     "catalogue can generalize, else as the default) or drop. Default: keep at or below "
     "max_level, generalize or drop above. keep above max_level is refused.",
     offsetof(cg_config_subscriber_t, levels), 0, offsetof(cg_config_subscriber_t, n_levels), 0},
    CG_CONFIG_ROW_ENUM("release.subscribers[].dates", cg_config_subscriber_t, dates, "month", "month|year",
     "What a generalized date keeps: its month (the first of the month) or its year (1 January)."),
    CG_CONFIG_ROW_INT("release.subscribers[].date_shift_days", cg_config_subscriber_t, date_shift_days, "0", 0, 3650,
     "The subscriber's own shift of each patient's dates, by a keyed offset in [-N, N] days "
     "(on top of pseudonym.date_shift_days); 0: none."),
    CG_CONFIG_ROW_INT("release.subscribers[].age_top", cg_config_subscriber_t, age_top, "90", 1, 150,
     "The top age band: everyone this old or older gets the same banded year_of_birth (\"90+\")."),
    CG_CONFIG_ROW_BOOL("release.subscribers[].free_text", cg_config_subscriber_t, free_text, "false",
     "Keep free-text columns (note_text, value_as_string) when their level allows; by default "
     "they are dropped."),
    CG_CONFIG_ROW_INT("release.subscribers[].small_cell", cg_config_subscriber_t, small_cell, "10", 1, 1000,
     "Counts that leave for the subscriber (`cohortgate cohort count --for NAME`) below this are "
     "shown only as \"<N\"."),
    CG_CONFIG_ROW_STRING("release.subscribers[].key_file", cg_config_subscriber_t, key_file, "", CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "File holding the subscriber's own pseudonym key (at least 32 bytes). Empty and no key_env: "
     "derived from the site key and the name, HMAC(site key, name)."),
    CG_CONFIG_ROW_STRING("release.subscribers[].key_env", cg_config_subscriber_t, key_env, "", CG_CONFIG_F_EMPTY,
     "Environment variable holding the subscriber's key, when key_file is empty."),
    CG_CONFIG_ROW_STRING("release.subscribers[].version", cg_config_subscriber_t, version, "", CG_CONFIG_F_EMPTY,
     "The policy's version as its authors name it; records carry it with the catalogue's and a "
     "digest of the policy (header cg.policy)."),
    CG_CONFIG_ROW_END,
};
/* clang-format on */
