/* test_config_validate.c - what `check -c` and the daemons refuse after a config loads
 * (cg_config_validate), the explicit "" of settings whose default is "", and kafka.* values
 * kept out of the file ({"env"}, {"file"}) that never show in an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_kafka.h"
#include "cg_plugin.h"

static cg_config_t *load(const char *text)
{
    cg_error_t err;
    cg_config_t *c = cg_config_load_string(text, "t.json", "/base", &err);
    if (!c)
        fail_msg("%d:%d: %s", err.line, err.column, err.text);
    return c;
}

/* The config's validate errors, at most 8, which must be n. */
static void expect_validate(const char *text, size_t n, cg_error_t *errs)
{
    cg_config_t *c = load(text);
    size_t got = cg_config_validate(c, errs, 8);
    for (size_t i = 0; got != n && i < got && i < 8; i++)
        fprintf(stderr, "%d:%d: %s\n", errs[i].line, errs[i].column, errs[i].text);
    assert_int_equal(got, n);
    cg_config_destroy(c);
}

static void test_kafka_properties_through_librdkafka(void **state)
{
    (void)state;
    cg_error_t errs[8];
    expect_validate("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},\n"
                    "\"kafka\":{\"bootstrap.servers\":\"x\",\n"
                    "  \"enable.auto.commmit\":false,\n"
                    "  \"linger.ms\":\"soon\"}}",
                    2, errs);
    /* every one, each where it is written */
    assert_string_equal(errs[0].file, "t.json");
    assert_int_equal(errs[0].line, 3);
    assert_int_equal(errs[0].column, 3);
    assert_non_null(strstr(errs[0].text, "'kafka.enable.auto.commmit': No such configuration"));
    assert_int_equal(errs[1].line, 4);
    assert_non_null(strstr(errs[1].text, "'kafka.linger.ms'"));
    /* properties librdkafka knows pass, consumer and producer ones alike */
    expect_validate("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
                    "\"kafka\":{\"bootstrap.servers\":\"x\",\"linger.ms\":5,"
                    "\"enable.auto.commit\":false,\"group.instance.id\":\"gw-1\"}}",
                    0, errs);
}

static void test_topics(void **state)
{
    (void)state;
    cg_error_t errs[8];
    /* an output that is an input, an input listed twice, two outputs on one topic */
    expect_validate("{\"inputs\":[{\"topic\":\"a\"},{\"topic\":\"b\"},\n{\"topic\":\"a\"}],\n"
                    "\"output\":{\"topic\":\"b\",\"dead_letter_topic\":\"q\","
                    "\"quality_topic\":\"q\"},\n"
                    "\"mapping\":{\"specs\":\"s\"},\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                    3, errs);
    assert_int_equal(errs[0].line, 2);
    assert_int_equal(errs[0].column, 2);
    assert_non_null(strstr(errs[0].text, "'inputs[2].topic': 'a' is listed twice"));
    assert_int_equal(errs[1].line, 3);
    assert_non_null(strstr(errs[1].text, "'output.topic': 'b' is also an input topic"));
    assert_non_null(
        strstr(errs[2].text, "'output.quality_topic': 'q' is also output.dead_letter_topic"));
    /* a database sink reads record topics and writes none: only the inputs count */
    expect_validate("{\"inputs\":[{\"topic\":\"cohortgate.records\"}],\"output\":{\"sink\":\"pg\"},"
                    "\"pg\":{\"conninfo\":\"dbname=x\"},\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                    0, errs);
}

static void test_exactly_once_needs_transactions(void **state)
{
    (void)state;
    cg_error_t errs[8];
    expect_validate("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},\n"
                    "\"delivery\":{\"semantics\":\"exactly-once\"},\"output\":{\"sink\":\"file\","
                    "\"file\":{\"path\":\"o\"}},\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                    1, errs);
    assert_int_equal(errs[0].line, 2);
    assert_non_null(strstr(errs[0].text, "the file sink has none"));
}

/* pseudonym.authorities: refused at the entry's place, the same reasons the bundle gives */
static void test_authorities_located(void **state)
{
    (void)state;
    cg_error_t errs[8];
    const char *head = "{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
                       "\"kafka\":{\"bootstrap.servers\":\"x\"},\n\"pseudonym\":{\n";
    char text[1024];
    snprintf(text, sizeof(text),
             "%s\"authorities\":{\"aliases\":{\n  \"2.16.840.1.113883.19.5\":\"HOSP_A\",\n"
             "  \"HOSP_A\":\"HOSPITAL_A\"}}}}",
             head);
    expect_validate(text, 1, errs);
    assert_int_equal(errs[0].line, 4);
    assert_int_equal(errs[0].column, 3);
    assert_non_null(strstr(errs[0].text, "which is itself an alias"));
    snprintf(text, sizeof(text),
             "%s\"authorities\":{\"missing\":\"facility\",\n\"defaults\":{\"HOSP_A\":\"A\",\n"
             "  \"HOSP_B\":\"\"}}}}",
             head);
    expect_validate(text, 1, errs);
    assert_int_equal(errs[0].line, 5);
    assert_non_null(strstr(errs[0].text, "'HOSP_B' maps to an empty authority"));
    /* the enum and unknown keys are the loader's, located as every setting */
    cg_error_t err;
    snprintf(text, sizeof(text), "%s\"authorities\":{\n\"missing\":\"merge\"}}}", head);
    assert_null(cg_config_load_string(text, "t.json", "/base", &err));
    assert_int_equal(err.line, 4);
    assert_non_null(strstr(err.text, "refuse|facility"));
    snprintf(text, sizeof(text),
             "%s\"authorities\":{\"missing\":\"facility\",\"aliases\":{\"1.2\":\"A\"},"
             "\"defaults\":{\"F\":\"1.2\"}}}}",
             head);
    expect_validate(text, 0, errs);
    cg_config_t *c = load(text);
    cg_mapping_opts_t mo;
    cg_config_mapping_opts(c, &mo);
    assert_int_equal(mo.authorities.missing, CG_PSEUDO_MISSING_FACILITY);
    assert_int_equal(mo.authorities.n_aliases, 1);
    assert_string_equal(mo.authorities.aliases[0].from, "1.2");
    assert_string_equal(mo.authorities.defaults[0].to, "1.2");
    cg_config_destroy(c);
}

/* "" where the documented default is "" (templated configs write it out) */
static void test_explicit_empty_defaults(void **state)
{
    (void)state;
    cg_config_t *c =
        load("{\"inputs\":[{\"topic\":\"a\"}],\"kafka\":{\"bootstrap.servers\":\"x\"},"
             "\"mapping\":{\"specs\":\"s\",\"vocab\":\"\",\"athena\":\"\","
             "\"source_utc_offset\":\"\"},\"cohorts\":{\"path\":\"\"},"
             "\"pseudonym\":{\"key_file\":\"\"},\"delivery\":{\"transactional_id\":\"\"}}");
    assert_null(c->vocab);
    assert_null(c->athena);
    assert_null(c->source_utc_offset);
    assert_null(c->cohorts);
    assert_null(c->key_file);
    assert_null(cg_kafka_conf(c)->transactional_id);
    cg_config_destroy(c);
    /* a setting with a default of its own still refuses "" */
    cg_error_t err;
    assert_null(
        cg_config_load_string("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
                              "\"output\":{\"topic\":\"\"},"
                              "\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                              "t.json", NULL, &err));
    assert_non_null(strstr(err.text, "'output.topic' must not be empty"));
}

/* Every row of every map whose default is "" takes "" written out: the rule, not a list. */
static void every_empty_default_of(const cg_config_map_t *map, size_t *seen)
{
    for (const cg_config_map_t *p = map; map && p->name; p++) {
        if (p->type != CG_CONFIG_STRING || !p->def || *p->def || strstr(p->name, "[]"))
            continue;
        /* "a.b.c" as {"a":{"b":{"c":""}}} */
        char json[512] = "", close[64] = "";
        size_t o = 0, depth = 0;
        const char *s = p->name;
        while (s) {
            const char *dot = strchr(s, '.');
            int len = dot ? (int)(dot - s) : (int)strlen(s);
            o += (size_t)snprintf(json + o, sizeof(json) - o, "\"%.*s\":%s", len, s,
                                  dot ? "{" : "\"\"");
            if (dot)
                close[depth++] = '}';
            s = dot ? dot + 1 : NULL;
        }
        char text[1024];
        snprintf(text, sizeof(text),
                 "{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"},%s%s}",
                 json, close);
        /* the mapping group is given above already: merge by writing it alone */
        if (!strncmp(p->name, "mapping.", 8))
            snprintf(text, sizeof(text),
                     "{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\",\"%s\":\"\"},"
                     "\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                     p->name + 8);
        cg_error_t err;
        cg_config_t *c = cg_config_load_string(text, "t.json", NULL, &err);
        if (!c && strstr(err.text, "must not be empty"))
            fail_msg("%s: its default is \"\" but \"\" is refused: %s", p->name, err.text);
        cg_config_destroy(c);
        (*seen)++;
    }
}

static void test_every_empty_default_takes_empty(void **state)
{
    (void)state;
    size_t seen = 0;
    every_empty_default_of(cg_config_core_map, &seen);
    for (size_t i = 0; cg_source_plugins[i]; i++)
        every_empty_default_of(cg_source_plugins[i]->config_map, &seen);
    for (size_t i = 0; cg_sink_plugins[i]; i++)
        every_empty_default_of(cg_sink_plugins[i]->config_map, &seen);
    assert_true(seen >= 8); /* mapping.vocab, .athena, cohorts.path, pseudonym.key_file, … */
}

static void test_kafka_secrets(void **state)
{
    (void)state;
    char dir[] = "/tmp/cg_secret_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof(path), "%s/pw", dir);
    FILE *f = fopen(path, "w");
    fputs("from-a-file\n", f);
    fclose(f);
    setenv("CG_TEST_KAFKA_PASSWORD", "from-the-env", 1);
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
             "\"kafka\":{\"bootstrap.servers\":\"x\","
             "\"sasl.password\":{\"env\":\"CG_TEST_KAFKA_PASSWORD\"},"
             "\"ssl.key.password\":{\"file\":\"pw\"}}}");
    cg_error_t err;
    cg_config_t *c = cg_config_load_string(text, "t.json", dir, &err);
    if (!c)
        fail_msg("%s", err.text);
    const cg_kafka_conf_t *kc = cg_kafka_conf(c);
    assert_string_equal(cg_kafka_get(kc, "sasl.password"), "from-the-env");
    assert_string_equal(cg_kafka_get(kc, "ssl.key.password"), "from-a-file"); /* no newline */
    cg_error_t errs[8];
    assert_int_equal(cg_config_validate(c, errs, 8), 0);
    cg_config_destroy(c);

    /* a variable that is not set, a file that is not there: located, refused */
    unsetenv("CG_TEST_KAFKA_PASSWORD");
    c = cg_config_load_string(text, "t.json", dir, &err);
    assert_null(c);
    assert_int_equal(err.line, 1);
    assert_non_null(strstr(err.text, "'kafka.sasl.password' comes from the environment variable "
                                     "CG_TEST_KAFKA_PASSWORD, which is not set"));
    unlink(path);
    setenv("CG_TEST_KAFKA_PASSWORD", "x", 1);
    assert_null(cg_config_load_string(text, "t.json", dir, &err));
    assert_non_null(strstr(err.text, "'kafka.ssl.key.password' cannot read the file"));
    rmdir(dir);
    assert_null(cg_config_load_string("{\"source\":\"mllp\",\"kafka\":{\"bootstrap.servers\":"
                                      "{\"env\":\"A\",\"file\":\"b\"}}}",
                                      "t.json", NULL, &err));
    assert_non_null(strstr(err.text, "must be {\"env\": \"NAME\"} or {\"file\": \"PATH\"}"));

    /* a secret librdkafka refuses is not quoted back */
    setenv("CG_TEST_KAFKA_PASSWORD", "hunter2-secret", 1);
    c = load("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
             "\"kafka\":{\"bootstrap.servers\":\"x\","
             "\"security.protocol\":{\"env\":\"CG_TEST_KAFKA_PASSWORD\"}}}");
    assert_int_equal(cg_config_validate(c, errs, 8), 1);
    assert_non_null(strstr(errs[0].text, "'kafka.security.protocol'"));
    if (strstr(errs[0].text, "hunter2"))
        fail_msg("the secret is in the error: %s", errs[0].text);
    cg_config_destroy(c);
    unsetenv("CG_TEST_KAFKA_PASSWORD");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_properties_through_librdkafka),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_exactly_once_needs_transactions),
        cmocka_unit_test(test_authorities_located),
        cmocka_unit_test(test_explicit_empty_defaults),
        cmocka_unit_test(test_every_empty_default_takes_empty),
        cmocka_unit_test(test_kafka_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
