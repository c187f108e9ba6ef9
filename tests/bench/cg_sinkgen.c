/* cg_sinkgen.c - the sink benchmark's input (see bench_sink.sh): N measurement upsert envelopes
 * of P persons, keyed by person, produced to a topic, and the same rows as COPY text for the
 * plain-COPY baseline (ids as the integer ids the sink's id map would give: 1..N for the
 * measurements, N+1.. for the persons).
 *   cg_sinkgen [--connect] BOOTSTRAP TOPIC N PERSONS COPY_FILE [FIRST]
 * With --connect the records are the same rows for Kafka Connect's JDBC sink instead: Connect's
 * JSON with a schema (JsonConverter, schemas.enable=true), the ids already the integer ids of the
 * COPY file (Connect has no id map), dates as Connect's Date and Timestamp logical types. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Connect's schema of the measurement rows, the same for every record */
static const char connect_schema[] =
    "{\"type\":\"struct\",\"name\":\"measurement\",\"optional\":false,\"fields\":["
    "{\"field\":\"measurement_id\",\"type\":\"int32\",\"optional\":false},"
    "{\"field\":\"person_id\",\"type\":\"int32\",\"optional\":false},"
    "{\"field\":\"measurement_concept_id\",\"type\":\"int32\",\"optional\":false},"
    "{\"field\":\"measurement_date\",\"type\":\"int32\",\"optional\":false,"
    "\"name\":\"org.apache.kafka.connect.data.Date\",\"version\":1},"
    "{\"field\":\"measurement_datetime\",\"type\":\"int64\",\"optional\":true,"
    "\"name\":\"org.apache.kafka.connect.data.Timestamp\",\"version\":1},"
    "{\"field\":\"measurement_type_concept_id\",\"type\":\"int32\",\"optional\":false},"
    "{\"field\":\"value_as_number\",\"type\":\"double\",\"optional\":true},"
    "{\"field\":\"unit_concept_id\",\"type\":\"int32\",\"optional\":true},"
    "{\"field\":\"measurement_source_value\",\"type\":\"string\",\"optional\":true},"
    "{\"field\":\"unit_source_value\",\"type\":\"string\",\"optional\":true}]}";

int main(int argc, char **argv)
{
    int connect = argc > 1 && strcmp(argv[1], "--connect") == 0;
    argc -= connect;
    argv += connect;
    if (argc != 6 && argc != 7) {
        fprintf(stderr,
                "usage: cg_sinkgen [--connect] BOOTSTRAP TOPIC N PERSONS COPY_FILE [FIRST]\n");
        return 2;
    }
    const char *topic = argv[2];
    long n = atol(argv[3]), persons = atol(argv[4]), first = argc == 7 ? atol(argv[6]) : 0;
    FILE *copy = fopen(argv[5], "w");
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) || !copy) {
        fprintf(stderr, "cg_sinkgen: %s\n", copy ? err : "cannot write the COPY file");
        return 1;
    }
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "cg_sinkgen: %s\n", err);
        return 1;
    }
    for (long i = first; i < first + n; i++) {
        long person = i % persons;
        char key[32], val[2048];
        snprintf(key, sizeof(key), "%ld", person);
        /* 63-bit-looking ids, as the mapping makes them */
        long long mid = 4000000000000000000LL + i * 7919LL, pid = 3000000000000000000LL + person;
        int len;
        if (connect)
            /* 2024-03-14 is day 19796 of the epoch; the timestamp in milliseconds, UTC */
            len = snprintf(val, sizeof(val),
                           "{\"schema\":%s,\"payload\":{\"measurement_id\":%ld,\"person_id\":%ld,"
                           "\"measurement_concept_id\":3004410,\"measurement_date\":19796,"
                           "\"measurement_datetime\":%lld,\"measurement_type_concept_id\":32856,"
                           "\"value_as_number\":%ld.%ld,\"unit_concept_id\":8554,"
                           "\"measurement_source_value\":\"4548-4\",\"unit_source_value\":\"%%\"}}",
                           connect_schema, i + 1, n + person + 1,
                           (19796LL * 86400 + 10 * 3600 + (i % 60) * 60) * 1000, 5 + i % 7, i % 10);
        else
            len = snprintf(
                val, sizeof(val),
                "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
                "\"cohorts\":[],\"row\":{\"measurement_id\":%lld,\"person_id\":%lld,"
                "\"measurement_concept_id\":3004410,\"measurement_date\":\"2024-03-14\","
                "\"measurement_datetime\":\"2024-03-14T10:%02ld:00\","
                "\"measurement_type_concept_id\":32856,"
                "\"value_as_number\":%ld.%ld,\"unit_concept_id\":8554,"
                "\"measurement_source_value\":\"4548-4\",\"unit_source_value\":\"%%\"},"
                "\"source\":{\"message_id\":\"%016lx\",\"time\":\"2024-03-14T10:%02ld:00\","
                "\"spec\":\"hl7v2-oru-omop\",\"spec_version\":1,\"rule\":\"obx-numeric\"}}",
                mid, pid, i % 60, 5 + i % 7, i % 10, (unsigned long)i * 2654435761UL, i % 60);
        fprintf(copy,
                "%ld\t%ld\t3004410\t2024-03-14\t2024-03-14 10:%02ld:00\t32856\t%ld.%ld\t8554\t"
                "4548-4\t%%\n",
                i + 1, n + person + 1, i % 60, 5 + i % 7, i % 10);
        while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE(val, (size_t)len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 50);
        rd_kafka_poll(p, 0);
    }
    fclose(copy);
    int rc = rd_kafka_flush(p, 60000) ? 1 : 0;
    rd_kafka_destroy(p);
    if (rc)
        fprintf(stderr, "cg_sinkgen: not every record was delivered\n");
    return rc;
}
