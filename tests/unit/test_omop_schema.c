/* test_omop_schema.c - mappers/targets/omop_schema.c is what the generator makes of ../shared/omop.
 *
 * The generated file is committed so that builds do not need ../shared; this test catches a
 * hand edit, a generator change not re-run, or a new copy of OHDSI's CSV files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OMOP_DIR CG_SOURCE_DIR "/../shared/omop"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n + 65536 > cap) {
            cap = cap * 2 + 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static void test_generated_matches_csv(void **state)
{
    (void)state;
    struct stat st;
    if (stat(OMOP_DIR "/OMOP_CDMv5.4_Field_Level.csv", &st) != 0) {
        printf("SKIPPED: ../shared/omop not found (%s)\n", OMOP_DIR);
        skip();
    }
    char tmp[] = "/tmp/cg-omop-schema-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "python3 '%s/tests/scripts/gen-omop-schema.py' --omop-dir '%s' -o '%s' 2>/dev/null",
             CG_SOURCE_DIR, OMOP_DIR, tmp);
    int rc = system(cmd);
    if (rc != 0) {
        unlink(tmp);
        fail_msg("generator failed (%d): %s", rc, cmd);
    }
    size_t glen, clen;
    char *generated = slurp(tmp, &glen);
    char *committed = slurp(CG_SOURCE_DIR "/mappers/targets/omop_schema.c", &clen);
    unlink(tmp);
    size_t i = 0;
    while (i < glen && i < clen && generated[i] == committed[i])
        i++;
    if (i < glen || i < clen) {
        size_t line = 1;
        for (size_t k = 0; k < i; k++)
            line += committed[k] == '\n';
        free(generated);
        free(committed);
        fail_msg(
            "mappers/targets/omop_schema.c differs from the generator's output at line %zu; run: "
            "python3 tests/scripts/gen-omop-schema.py --omop-dir ../shared/omop",
            line);
    }
    free(generated);
    free(committed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_matches_csv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
