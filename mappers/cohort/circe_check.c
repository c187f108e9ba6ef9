/* circe_check.c - the checks of a Circe expression's objects, each refusal located (file,
 * line, column) through cg_jsonpos: unsupported members, members of the wrong type, dates.
 * Everything under mappers/cohort/ that reads the tree checks through these, so a refusal
 * reads the same wherever it is found.
 */
#include <ctype.h>
#include <stdarg.h>
#include <string.h>

#include "circe_impl.h"

void cg_circe__err_at(cc_t *c, const json_t *at, const json_t *obj, const char *key,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_error(&c->e, c->jp, CG_ERR_CONFIG, c->file, at, obj, key, "", fmt, ap);
    va_end(ap);
}

/* ---- checking members ---- */

/* A member that is present but says nothing (null, false, [], {}) is as good as absent. */
int cg_circe__empty_value(const json_t *v)
{
    return !v || json_is_null(v) || json_is_false(v) ||
           (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_object(v) && json_object_size(v) == 0);
}

/* Every member of obj must be named in allowed (NULL-terminated) or be empty; the others are
 * refused, naming the element and where it is (ctx). */
void cg_circe__check_members(cc_t *c, const json_t *obj, const char *ctx,
                             const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, k);
        if (!ok && !cg_circe__empty_value(v))
            cg_circe__err_at(c, v, obj, k,
                             "%s: element '%s' is not supported by cohortgate (see "
                             "specs/cohorts/CIRCE.md)",
                             ctx, k);
    }
}

const json_t *cg_circe__want_object(cc_t *c, const json_t *obj, const char *key, const char *ctx)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        cg_circe__err_at(c, v, obj, key, "%s: '%s' must be an object", ctx, key);
        return NULL;
    }
    return v;
}

const json_t *cg_circe__want_array(cc_t *c, const json_t *obj, const char *key, const char *ctx)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_array(v)) {
        cg_circe__err_at(c, v, obj, key, "%s: '%s' must be an array", ctx, key);
        return NULL;
    }
    return v;
}

/* An integer member (a Java int in Circe: 32 bits); def when absent or null. */
long long cg_circe__want_int(cc_t *c, const json_t *obj, const char *key, const char *ctx,
                             long long def)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    long long x = 0;
    int ok = 0;
    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
        ok = 1;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d > -2147483649.0 && d < 2147483648.0 && d == (double)(long long)d) {
            x = (long long)d;
            ok = 1;
        }
    }
    if (ok && x >= -2147483648LL && x <= 2147483647LL)
        return x;
    cg_circe__err_at(c, v, obj, key, "%s: '%s' must be an integer (32 bits)", ctx, key);
    return def;
}

int cg_circe__want_bool(cc_t *c, const json_t *obj, const char *key, const char *ctx, int def)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    if (json_is_boolean(v))
        return json_is_true(v);
    cg_circe__err_at(c, v, obj, key, "%s: '%s' must be true or false", ctx, key);
    return def;
}

const char *cg_circe__want_string(cc_t *c, const json_t *obj, const char *key, const char *ctx)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        cg_circe__err_at(c, v, obj, key, "%s: '%s' must be a string", ctx, key);
        return NULL;
    }
    return json_string_value(v);
}

int cg_circe__valid_date(const char *s)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return 0;
    int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}
