/* config.c - load and check the gateway config against its table of settings (cg_config.h). */
#include "cg_config.h"

#include "config_int.h"

#include "cg_buf.h"
#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_plugin.h"

#define CG_CONFIG_MAX_BYTES (16 * 1024 * 1024)

#include <iconv.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The k-th plug-in's map (sources, then sinks; NULL when it has none); *end past the last. */
static const cg_config_map_t *plugin_map(size_t k, int *end)
{
    size_t n_src = 0;
    while (cg_source_plugins[n_src])
        n_src++;
    *end = k >= n_src && !cg_sink_plugins[k - n_src];
    if (*end)
        return NULL;
    return k < n_src ? cg_source_plugins[k]->config_map : cg_sink_plugins[k - n_src]->config_map;
}

/* Every map in order: the core's, then each registered plug-in's (sources, then sinks), a map
 * two plug-ins share (Kafka's source and sink) once. Returns NULL past the last. */
static const cg_config_map_t *map_at(size_t i)
{
    if (i == 0)
        return cg_config_core_map;
    i--;
    int end = 0;
    for (size_t k = 0;; k++) {
        const cg_config_map_t *m = plugin_map(k, &end);
        if (end)
            return NULL;
        int seen = !m, e_end;
        for (size_t e = 0; !seen && e < k; e++)
            seen = plugin_map(e, &e_end) == m;
        if (!seen && i-- == 0)
            return m;
    }
}

/* The row of a setting, in whichever map has it (the first: a map that two plug-ins share, as
 * the Kafka source and sink do, is listed once). */
static const cg_config_map_t *prop_find(const char *name)
{
    const cg_config_map_t *m;
    for (size_t i = 0; (m = map_at(i)) != NULL; i++)
        for (const cg_config_map_t *p = m; p->name; p++)
            if (!strcmp(p->name, name))
                return p;
    return NULL;
}

/* Skips one JSON value starting at p (after white space); returns the position after it. */
static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *skip_value(const char *p)
{
    int depth = 0;
    p = skip_ws(p);
    do {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p)
                p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
            p++;
        } else if (*p == '}' || *p == ']') {
            depth--;
            p++;
        } else if (*p) {
            p++;
            if (depth == 0)
                while (*p && !strchr(",}] \t\r\n", *p))
                    p++;
        }
    } while (*p && depth > 0);
    return p;
}

/* Finds where a path is written in the source text, for error positions: jansson keeps no
 * positions for keys. A component is a key (keys[d]) or, where keys[d] is NULL, the index[d]-th
 * element of the array just found. */
static void locate(const char *text, const char *const *keys, const int *index, int depth,
                   int *line, int *col)
{
    const char *pos = text;
    for (int d = 0; d < depth && pos; d++) {
        if (!keys[d]) {
            const char *q = strchr(pos, '[');
            if (!q)
                break;
            q = skip_ws(q + 1);
            for (int i = 0; i < index[d] && *q; i++) {
                q = skip_ws(skip_value(q));
                if (*q == ',')
                    q = skip_ws(q + 1);
            }
            pos = q;
            continue;
        }
        char pat[260];
        snprintf(pat, sizeof(pat), "\"%s\"", keys[d]);
        const char *found = NULL;
        for (const char *s = pos; (s = strstr(s, pat)) != NULL; s += strlen(pat)) {
            if (*skip_ws(s + strlen(pat)) == ':') {
                found = s;
                break;
            }
        }
        if (!found)
            break;
        pos = found;
    }
    *line = 1;
    *col = 1;
    for (const char *s = text; s < pos; s++) {
        if (*s == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

typedef struct walk {
    const char *text;
    const char *file;
    const char *base_dir; /* of {"file": PATH} values */
    cg_error_t *err;
    cg_error_t *more; /* NULL: stop at the first error; else every one: the 2nd on, up to */
    size_t max_more;  /* max_more of them, go here (`check -c`) */
    size_t n;         /* errors found */
    const char *keys[16];
    int index[16];
    int depth;
} walk_t;

static cg_err_t walk_fail(walk_t *w, const char *fmt, const char *a, const char *b)
{
    int line, col;
    locate(w->text, w->keys, w->index, w->depth, &line, &col);
    char msg[400];
    snprintf(msg, sizeof(msg), fmt, a, b);
    cg_error_t *e = !w->n ? w->err : w->more && w->n - 1 < w->max_more ? &w->more[w->n - 1] : NULL;
    w->n++;
    cg_error_set(e, CG_ERR_CONFIG, w->file, line, col, "%s", msg);
    return CG_ERR_CONFIG;
}

static cg_err_t walk_object(walk_t *w, json_t *obj, const char *prefix);

static cg_err_t check_value(walk_t *w, const cg_config_map_t *p, json_t *v, const char *name)
{
    switch (p->type) {
    case CG_CONFIG_STRING:
        if (!json_is_string(v))
            return walk_fail(w, "'%s' must be a string%s", name, "");
        /* "" is the default of these: a templated config may write it out */
        if (json_string_length(v) == 0 && !(p->flags & CG_CONFIG_F_EMPTY))
            return walk_fail(w, "'%s' must not be empty%s", name, "");
        return CG_OK;
    case CG_CONFIG_ENUM: {
        if (!json_is_string(v))
            return walk_fail(w, "'%s' must be one of %s", name, p->enums);
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        for (const char *e = p->enums; *e;) {
            const char *bar = strchr(e, '|');
            size_t l = bar ? (size_t)(bar - e) : strlen(e);
            if (l == n && !strncmp(e, s, n))
                return CG_OK;
            if (!bar)
                break;
            e = bar + 1;
        }
        return walk_fail(w, "'%s' must be one of %s", name, p->enums);
    }
    case CG_CONFIG_INT: {
        if (!json_is_integer(v))
            return walk_fail(w, "'%s' must be an integer%s", name, "");
        json_int_t i = json_integer_value(v);
        if (i < p->min || i > p->max) {
            char range[64];
            snprintf(range, sizeof(range), " from %ld to %ld", p->min, p->max);
            return walk_fail(w, "'%s' must be%s", name, range);
        }
        return CG_OK;
    }
    case CG_CONFIG_BOOL:
        if (!json_is_boolean(v))
            return walk_fail(w, "'%s' must be true or false%s", name, "");
        return CG_OK;
    case CG_CONFIG_OBJECT:
        if (!json_is_object(v))
            return walk_fail(w, "'%s' must be an object%s", name, "");
        return walk_object(w, v, name);
    case CG_CONFIG_STRINGS: {
        json_t *one = v;
        if (json_is_array(v)) {
            if (!json_array_size(v) && !(p->flags & CG_CONFIG_F_EMPTY))
                return walk_fail(w, "'%s' must not be an empty list%s", name, "");
            size_t i;
            json_array_foreach(v, i, one)
            {
                if (!json_is_string(one) || !json_string_length(one))
                    return walk_fail(w, "each element of '%s' must be a non-empty string%s", name,
                                     "");
            }
            return CG_OK;
        }
        if (!json_is_string(one))
            return walk_fail(w, "'%s' must be a string or a list of strings%s", name, "");
        if (json_string_length(v) == 0 && !(p->flags & CG_CONFIG_F_EMPTY))
            return walk_fail(w, "'%s' must not be empty%s", name, "");
        return CG_OK;
    }
    case CG_CONFIG_MAP: {
        if (!json_is_object(v))
            return walk_fail(w, "'%s' must be an object of librdkafka properties%s", name, "");
        const char *k;
        json_t *x;
        size_t before = w->n;
        json_object_foreach(v, k, x)
        {
            char why[300];
            const char *bad = NULL;
            if (json_is_object(x)) { /* a secret from outside the file */
                char *val = NULL;
                if (cg_config_secret_read(x, w->base_dir, &val, why, sizeof(why)))
                    bad = why;
                free(val);
            } else if (!json_is_string(x) && !json_is_integer(x) && !json_is_boolean(x)) {
                bad = "must be a string, integer, boolean, {\"env\": NAME} or {\"file\": PATH}";
            }
            if (bad) {
                char msg[400];
                snprintf(msg, sizeof(msg), "'%s.%s' %s", name, k, bad);
                w->keys[w->depth] = k;
                w->index[w->depth++] = 0;
                cg_err_t rc = walk_fail(w, "%s%s", msg, "");
                w->depth--;
                if (!w->more)
                    return rc;
            }
        }
        return w->n > before ? CG_ERR_CONFIG : CG_OK;
    }
    case CG_CONFIG_ARRAY: {
        if (!json_is_array(v))
            return walk_fail(w, "'%s' must be an array of objects%s", name, "");
        size_t i, before = w->n;
        json_t *el;
        char elem_prefix[128];
        snprintf(elem_prefix, sizeof(elem_prefix), "%s[]", name);
        json_array_foreach(v, i, el)
        {
            if (!json_is_object(el))
                return walk_fail(w, "each element of '%s' must be an object%s", name, "");
            if (w->depth >= 15)
                return walk_fail(w, "'%s' is nested too deeply%s", name, "");
            w->keys[w->depth] = NULL; /* the i-th element */
            w->index[w->depth++] = (int)i;
            cg_err_t rc = walk_object(w, el, elem_prefix);
            /* required fields of the element */
            for (const cg_config_map_t *q = p; !rc && q->name; q++) {
                size_t pl = strlen(elem_prefix);
                if (!strncmp(q->name, elem_prefix, pl) && q->name[pl] == '.' && !q->def &&
                    !json_object_get(el, q->name + pl + 1))
                    rc = walk_fail(w, "an element of '%s' lacks the required '%s'", name,
                                   q->name + pl + 1);
            }
            w->depth--;
            if (rc && !w->more)
                return rc;
        }
        return w->n > before ? CG_ERR_CONFIG : CG_OK;
    }
    }
    return CG_OK;
}

static cg_err_t walk_object(walk_t *w, json_t *obj, const char *prefix)
{
    const char *k;
    json_t *v;
    size_t before = w->n;
    json_object_foreach(obj, k, v)
    {
        char name[256];
        /* JSON has no comments: a key starting with // is one (its value a string), so that
         * example configs explain themselves; it fills nothing */
        if (!strncmp(k, "//", 2) && json_is_string(v))
            continue;
        if (prefix)
            snprintf(name, sizeof(name), "%s.%s", prefix, k);
        else
            snprintf(name, sizeof(name), "%s", k);
        if (w->depth >= 15)
            return walk_fail(w, "'%s' is nested too deeply%s", name, "");
        w->keys[w->depth] = k;
        w->index[w->depth++] = 0;
        const cg_config_map_t *p = prop_find(name);
        /* a user-facing name drops the [] of array elements */
        cg_err_t rc = p ? check_value(w, p, v, name)
                        : walk_fail(w, "unknown setting '%s'%s (see config/README.md)", name, "");
        w->depth--;
        if (rc && !w->more)
            return rc;
    }
    return w->n > before ? CG_ERR_CONFIG : CG_OK;
}

static char *resolve(const char *base, const char *p)
{
    if (p[0] == '/' || !base)
        return strdup(p);
    size_t n = strlen(base) + strlen(p) + 2;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%s", base, p);
    return r;
}

/* The value at a row's dotted path below obj (names after prefix_len, which skips "NAME[]."). */
static json_t *lookup(json_t *obj, const char *path)
{
    char key[256];
    while (obj && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        obj = json_object_get(obj, key);
        path = dot ? dot + 1 : path + n;
    }
    return obj;
}

static void store_int(void *field, size_t size, long v)
{
    if (size == sizeof(int8_t)) {
        int8_t x = (int8_t)v;
        memcpy(field, &x, size);
    } else if (size == sizeof(int16_t)) {
        int16_t x = (int16_t)v;
        memcpy(field, &x, size);
    } else if (size == sizeof(int32_t)) {
        int32_t x = (int32_t)v;
        memcpy(field, &x, size);
    } else {
        int64_t x = (int64_t)v;
        memcpy(field, &x, sizeof(x));
    }
}

static int enum_index(const char *enums, const char *s)
{
    size_t n = strlen(s);
    int i = 0;
    for (const char *e = enums; *e; i++) {
        const char *bar = strchr(e, '|');
        size_t l = bar ? (size_t)(bar - e) : strlen(e);
        if (l == n && !strncmp(e, s, n))
            return i;
        if (!bar)
            break;
        e = bar + 1;
    }
    return 0;
}

/* Fills base (the struct map binds) from obj: every row of map whose name starts with prefix
 * and has no further "[]" (array elements are filled by their array's row). The values were
 * checked already (walk_object); absent ones get the row's default. -1 when out of memory. */
static int fill(const cg_config_map_t *map, const char *prefix, json_t *obj, void *base,
                const char *base_dir)
{
    size_t pl = strlen(prefix);
    for (const cg_config_map_t *p = map; p->name; p++) {
        if (strncmp(p->name, prefix, pl) || strstr(p->name + pl, "[]") ||
            p->offset == CG_CONFIG_NO_FIELD)
            continue;
        char *field = (char *)base + p->offset;
        json_t *v = lookup(obj, p->name + pl);
        switch (p->type) {
        case CG_CONFIG_STRING: {
            const char *str = json_is_string(v) ? json_string_value(v) : p->def;
            char *copy = NULL;
            if (str && !(*str == '\0' && (p->flags & CG_CONFIG_F_EMPTY))) {
                copy = (p->flags & CG_CONFIG_F_PATH) ? resolve(base_dir, str) : strdup(str);
                if (!copy)
                    return -1;
            }
            memcpy(field, &copy, sizeof(copy));
            break;
        }
        case CG_CONFIG_INT:
            store_int(field, p->size,
                      json_is_integer(v) ? (long)json_integer_value(v)
                                         : strtol(p->def ? p->def : "0", NULL, 10));
            break;
        case CG_CONFIG_BOOL: {
            int b = v ? json_is_true(v) : (p->def && !strcmp(p->def, "true"));
            memcpy(field, &b, sizeof(b));
            break;
        }
        case CG_CONFIG_ENUM: {
            int e = enum_index(p->enums, json_is_string(v) ? json_string_value(v) : p->def);
            memcpy(field, &e, sizeof(e));
            break;
        }
        case CG_CONFIG_MAP: {
            size_t n = json_object_size(v);
            cg_config_kv_t *kv = calloc(n ? n : 1, sizeof(*kv));
            if (!kv)
                return -1;
            memcpy(field, &kv, sizeof(kv));
            memcpy((char *)base + p->count_offset, &n, sizeof(n));
            size_t i = 0;
            const char *k;
            json_t *x;
            json_object_foreach(v, k, x)
            {
                char num[32], why[300];
                const char *str = num;
                if (json_is_object(x)) { /* checked by the walk; read again here */
                    kv[i].secret = 1;
                    if (cg_config_secret_read(x, base_dir, &kv[i].value, why, sizeof(why)))
                        return -1;
                    str = NULL;
                } else if (json_is_string(x)) {
                    str = json_string_value(x);
                } else if (json_is_integer(x)) {
                    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(x));
                } else {
                    str = json_is_true(x) ? "true" : "false";
                }
                kv[i].key = strdup(k);
                if (str)
                    kv[i].value = strdup(str);
                if (!kv[i].key || !kv[i++].value)
                    return -1;
            }
            break;
        }
        case CG_CONFIG_ARRAY: {
            size_t n = json_array_size(v);
            char *elems = calloc(n ? n : 1, p->size);
            if (!elems)
                return -1;
            memcpy(field, &elems, sizeof(elems));
            memcpy((char *)base + p->count_offset, &n, sizeof(n));
            char elem_prefix[128];
            snprintf(elem_prefix, sizeof(elem_prefix), "%s[].", p->name);
            for (size_t i = 0; i < n; i++)
                if (fill(map, elem_prefix, json_array_get(v, i), elems + i * p->size, base_dir))
                    return -1;
            break;
        }
        case CG_CONFIG_STRINGS: {
            /* a string is a list of one; "" or [] (with F_EMPTY) and no default are none */
            size_t n = json_is_array(v) ? json_array_size(v) : 1;
            const char *one = json_is_string(v) ? json_string_value(v) : p->def;
            if (!json_is_array(v) && (!one || (!*one && (p->flags & CG_CONFIG_F_EMPTY))))
                n = 0;
            char **list = n ? calloc(n, sizeof(*list)) : NULL;
            if (n && !list)
                return -1;
            memcpy(field, &list, sizeof(list));
            memcpy((char *)base + p->count_offset, &n, sizeof(n));
            for (size_t i = 0; i < n; i++) {
                const char *str = json_is_array(v) ? json_string_value(json_array_get(v, i)) : one;
                list[i] = (p->flags & CG_CONFIG_F_PATH) ? resolve(base_dir, str) : strdup(str);
                if (!list[i])
                    return -1;
            }
            break;
        }
        case CG_CONFIG_OBJECT:
            break;
        }
    }
    return 0;
}

/* Frees what fill() allocated in base. */
static void unfill(const cg_config_map_t *map, const char *prefix, void *base)
{
    size_t pl = strlen(prefix);
    for (const cg_config_map_t *p = map; base && p->name; p++) {
        if (strncmp(p->name, prefix, pl) || strstr(p->name + pl, "[]") ||
            p->offset == CG_CONFIG_NO_FIELD ||
            (p->type != CG_CONFIG_STRING && p->type != CG_CONFIG_MAP &&
             p->type != CG_CONFIG_ARRAY && p->type != CG_CONFIG_STRINGS)) /* these own memory */
            continue;
        char *field = (char *)base + p->offset;
        void *ptr;
        memcpy(&ptr, field, sizeof(ptr));
        size_t n = 0;
        if (p->type == CG_CONFIG_MAP || p->type == CG_CONFIG_ARRAY || p->type == CG_CONFIG_STRINGS)
            memcpy(&n, (char *)base + p->count_offset, sizeof(n));
        if (p->type == CG_CONFIG_STRINGS)
            for (size_t i = 0; ptr && i < n; i++)
                free(((char **)ptr)[i]);
        if (p->type == CG_CONFIG_MAP) {
            cg_config_kv_t *kv = ptr;
            for (size_t i = 0; kv && i < n; i++) {
                free(kv[i].key);
                if (kv[i].value && kv[i].secret) /* no copy of a secret left behind */
                    explicit_bzero(kv[i].value, strlen(kv[i].value));
                free(kv[i].value);
            }
        } else if (p->type == CG_CONFIG_ARRAY) {
            char elem_prefix[128];
            snprintf(elem_prefix, sizeof(elem_prefix), "%s[].", p->name);
            for (size_t i = 0; ptr && i < n; i++)
                unfill(map, elem_prefix, (char *)ptr + i * p->size);
        }
        free(ptr);
    }
}

static cg_config_t *build(json_t *root, const char *name, const char *base_dir)
{
    cg_config_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->path = strdup(name);
    c->base_dir = base_dir ? strdup(base_dir) : NULL;
    cg_hl7_options_default(&c->hl7);
    if (!c->path || (base_dir && !c->base_dir) || fill(cg_config_core_map, "", root, c, base_dir))
        goto fail;
    c->hl7.default_charset = c->hl7_charset;
    /* mapping.params as the mapping bundle takes them */
    if (c->n_spec_params &&
        !(c->spec_param_view = calloc(c->n_spec_params, sizeof(*c->spec_param_view))))
        goto fail;
    for (size_t i = 0; i < c->n_spec_params; i++)
        c->spec_param_view[i] = (cg_spec_param_t){c->spec_params[i].key, c->spec_params[i].value};
    /* pseudonym.authorities as cg_pseudo_authorities_new() takes them */
    if (!(c->auth_alias_view = calloc(c->n_auth_aliases + 1, sizeof(*c->auth_alias_view))) ||
        !(c->auth_default_view = calloc(c->n_auth_defaults + 1, sizeof(*c->auth_default_view))))
        goto fail;
    for (size_t i = 0; i < c->n_auth_aliases; i++)
        c->auth_alias_view[i] =
            (cg_pseudo_pair_t){c->auth_aliases[i].key, c->auth_aliases[i].value};
    for (size_t i = 0; i < c->n_auth_defaults; i++)
        c->auth_default_view[i] =
            (cg_pseudo_pair_t){c->auth_defaults[i].key, c->auth_defaults[i].value};
    /* every registered plug-in's struct, so that each finds its own whichever is chosen */
    const cg_config_map_t *m;
    for (size_t i = 1; map_at(i); i++)
        c->n_plugins++;
    if (!(c->plugins = calloc(c->n_plugins ? c->n_plugins : 1, sizeof(*c->plugins))))
        goto fail;
    for (size_t i = 1; (m = map_at(i)) != NULL; i++) {
        size_t size = 0;
        for (size_t k = 0; cg_source_plugins[k]; k++)
            if (cg_source_plugins[k]->config_map == m)
                size = cg_source_plugins[k]->conf_size;
        for (size_t k = 0; cg_sink_plugins[k]; k++)
            if (cg_sink_plugins[k]->config_map == m)
                size = cg_sink_plugins[k]->conf_size;
        cg_config_plugin_t *pc = &c->plugins[i - 1];
        pc->map = m;
        if (!(pc->conf = calloc(1, size ? size : 1)) || fill(m, "", root, pc->conf, base_dir))
            goto fail;
    }
    return c;
fail:
    cg_config_destroy(c);
    return NULL;
}

/* The settings that name a plug-in name one the registry has. */
static cg_err_t check_plugins(json_t *root, const char *text, const char *name, cg_error_t *err)
{
    const char *src = json_string_value(json_object_get(root, "source"));
    const char *sink = json_string_value(json_object_get(json_object_get(root, "output"), "sink"));
    const char *keys[] = {"source", NULL};
    const char *bad = NULL, *kind = NULL;
    if (src && !cg_source_plugin_find(src)) {
        bad = src;
        kind = "source";
    } else if (sink && !cg_sink_plugin_find(sink)) {
        keys[0] = "output";
        keys[1] = "sink";
        bad = sink;
        kind = "output.sink";
    }
    if (!bad)
        return CG_OK;
    char known[256] = "";
    size_t o = 0;
    for (size_t k = 0; !strcmp(kind, "source") && cg_source_plugins[k]; k++)
        o += (size_t)snprintf(known + o, o < sizeof(known) ? sizeof(known) - o : 0, "%s%s",
                              k ? ", " : "", cg_source_plugins[k]->name);
    for (size_t k = 0; strcmp(kind, "source") && cg_sink_plugins[k]; k++)
        o += (size_t)snprintf(known + o, o < sizeof(known) ? sizeof(known) - o : 0, "%s%s",
                              k ? ", " : "", cg_sink_plugins[k]->name);
    int idx[] = {0, 0}, line, col;
    locate(text, keys, idx, keys[1] ? 2 : 1, &line, &col);
    return cg_error_set(err, CG_ERR_CONFIG, name, line, col, "'%s': no %s plug-in '%s' (%s)", kind,
                        strcmp(kind, "source") ? "sink" : "source", bad, known);
}

/* The chosen source's and sink's checks of their settings (cg_plugin.h), located in text. */
static cg_err_t check_chosen(const cg_config_t *c, const char *text, const char *name,
                             cg_error_t *err)
{
    const cg_source_plugin_t *src = cg_source_plugin_find(c->source);
    const cg_sink_plugin_t *sink = cg_sink_plugin_find(c->sink);
    cg_config_problem_t pr = {.n_keys = 0};
    int bad = src && src->check && src->check(cg_config_plugin_conf(c, src->config_map), c, &pr);
    if (!bad && sink && sink->check)
        bad = sink->check(cg_config_plugin_conf(c, sink->config_map), c, &pr);
    if (!bad)
        return CG_OK;
    int line = 1, col = 1;
    if (pr.n_keys > 0)
        locate(text, pr.keys, pr.index, pr.n_keys, &line, &col);
    return cg_error_set(err, CG_ERR_CONFIG, name, line, col, "%s", pr.text);
}

/* cg_config_load_string, and every error of the settings' walk when more is not NULL. */
static cg_config_t *load_string(const char *text, const char *name, const char *base_dir,
                                cg_error_t *err, cg_error_t *more, size_t max_more, size_t *n);

cg_config_t *cg_config_load_string(const char *text, const char *name, const char *base_dir,
                                   cg_error_t *err)
{
    size_t n;
    return load_string(text, name, base_dir, err, NULL, 0, &n);
}

static cg_config_t *load_string(const char *text, const char *name, const char *base_dir,
                                cg_error_t *err, cg_error_t *more, size_t max_more, size_t *n)
{
    *n = 1; /* unless the walk finds more */
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        cg_error_set(err, CG_ERR_CONFIG, name, jerr.line, jerr.column, "%s", jerr.text);
        return NULL;
    }
    walk_t w = {.text = text,
                .file = name,
                .base_dir = base_dir,
                .err = err,
                .more = more,
                .max_more = max_more};
    if (!json_is_object(root)) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1, "the config must be a JSON object");
        json_decref(root);
        return NULL;
    }
    if (walk_object(&w, root, NULL) != CG_OK) {
        *n = w.n;
        json_decref(root);
        return NULL;
    }
    /* an MLLP listener maps nothing (`cohortgate listen`); the Kafka source's own settings are
     * checked by the plug-in (check_chosen) */
    const char *src_name = json_string_value(json_object_get(root, "source"));
    int kafka_source = !src_name || !strcmp(src_name, "kafka");
    json_t *mapping = json_object_get(root, "mapping");
    /* a database sink (`cohortgate sink`) takes record topics in and maps nothing */
    const char *sink_name =
        json_string_value(json_object_get(json_object_get(root, "output"), "sink"));
    int maps = !sink_name || strcmp(sink_name, "pg");
    if (kafka_source && maps && !json_object_get(mapping, "specs")) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1,
                     "'mapping.specs' must name the mapping specs (a file or a folder)");
        json_decref(root);
        return NULL;
    }
    const char *off = json_string_value(json_object_get(mapping, "source_utc_offset"));
    if (off && *off && (strlen(off) != 6 || (off[0] != '+' && off[0] != '-') || off[3] != ':')) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1,
                     "'mapping.source_utc_offset' is +HH:MM or -HH:MM, not '%s'", off);
        json_decref(root);
        return NULL;
    }
    const char *ct = json_string_value(json_object_get(json_object_get(root, "cohorts"), "topic"));
    if (ct && !strstr(ct, "{cohort}")) {
        const char *keys[] = {"cohorts", "topic"};
        int idx[] = {0, 0}, line, col;
        locate(text, keys, idx, 2, &line, &col);
        cg_error_set(err, CG_ERR_CONFIG, name, line, col,
                     "'cohorts.topic' must contain {cohort}, or every cohort shares one topic");
        json_decref(root);
        return NULL;
    }
    const char *cs =
        json_string_value(json_object_get(json_object_get(root, "hl7"), "default_charset"));
    if (cs) { /* a charset iconv cannot convert would fail every undeclared message */
        char iname[64];
        iconv_t cd = (iconv_t)-1;
        if (cg_hl7_charset_iconv_name(cs, strlen(cs), iname, sizeof(iname)))
            cd = iconv_open("UTF-8", iname);
        if (cd == (iconv_t)-1) {
            const char *keys[] = {"hl7", "default_charset"};
            int idx[] = {0, 0}, line, col;
            locate(text, keys, idx, 2, &line, &col);
            cg_error_set(err, CG_ERR_CONFIG, name, line, col,
                         "'hl7.default_charset': '%s' is not a character set iconv knows", cs);
            json_decref(root);
            return NULL;
        }
        iconv_close(cd);
    }
    const char *ml = json_string_value(json_object_get(json_object_get(root, "metrics"), "listen"));
    char mhost[256], mport[8], merr[300];
    if (ml && !cg_metrics_listen_off(ml) &&
        cg_metrics_listen_parse(ml, mhost, sizeof(mhost), mport, sizeof(mport), merr,
                                sizeof(merr))) {
        const char *keys[] = {"metrics", "listen"};
        int idx[] = {0, 0}, line, col;
        locate(text, keys, idx, 2, &line, &col);
        cg_error_set(err, CG_ERR_CONFIG, name, line, col, "'metrics.listen': %s", merr);
        json_decref(root);
        return NULL;
    }
    if (check_plugins(root, text, name, err) != CG_OK) {
        json_decref(root);
        return NULL;
    }
    cg_config_t *c = build(root, name, base_dir);
    json_decref(root);
    if (c && !(c->text = strdup(text))) {
        cg_config_destroy(c);
        c = NULL;
    }
    if (!c) {
        cg_error_set(err, CG_ERR_NOMEM, name, 0, 0, "out of memory");
    } else if (check_chosen(c, text, name, err) != CG_OK) {
        cg_config_destroy(c);
        return NULL;
    }
    return c;
}

static cg_config_t *load_file(const char *path, cg_error_t *err, cg_error_t *more, size_t max_more,
                              size_t *n);

cg_config_t *cg_config_load_file(const char *path, cg_error_t *err)
{
    size_t n;
    return load_file(path, err, NULL, 0, &n);
}

cg_config_t *cg_config_load_file_all(const char *path, cg_error_t *errs, size_t max, size_t *n)
{
    cg_error_t first;
    cg_config_t *c = load_file(path, &first, max > 1 ? errs + 1 : NULL, max > 1 ? max - 1 : 0, n);
    if (c)
        *n = 0;
    else if (max)
        errs[0] = first;
    return c;
}

static cg_config_t *load_file(const char *path, cg_error_t *err, cg_error_t *more, size_t max_more,
                              size_t *n_errs)
{
    *n_errs = 1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cg_error_set(err, CG_ERR_IO, path, 0, 0, "cannot open: %m");
        return NULL;
    }
    /* read as a stream, so pipes and /dev/stdin work too */
    cg_config_t *c = NULL;
    cg_buf_t text;
    cg_buf_init(&text);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len <= CG_CONFIG_MAX_BYTES)
        cg_buf_append(&text, chunk, n);
    if (ferror(f) || text.failed) {
        cg_error_set(err, CG_ERR_IO, path, 0, 0, "cannot read: %m");
    } else if (text.len > CG_CONFIG_MAX_BYTES) {
        cg_error_set(err, CG_ERR_CONFIG, path, 0, 0, "larger than %d bytes", CG_CONFIG_MAX_BYTES);
    } else {
        char dirbuf[PATH_MAX];
        snprintf(dirbuf, sizeof(dirbuf), "%s", path);
        c = load_string(text.data ? text.data : "", path, dirname(dirbuf), err, more, max_more,
                        n_errs);
        if (c)
            c->from_file = 1;
    }
    cg_buf_free(&text);
    fclose(f);
    return c;
}

void cg_config_destroy(cg_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->plugins && i < c->n_plugins; i++) {
        unfill(c->plugins[i].map, "", c->plugins[i].conf);
        free(c->plugins[i].conf);
    }
    free(c->plugins);
    unfill(cg_config_core_map, "", c);
    free(c->spec_param_view);
    free(c->auth_alias_view);
    free(c->auth_default_view);
    free(c->path);
    free(c->base_dir);
    free(c->text);
    free(c);
}

void cg_config_locate(const cg_config_t *cfg, const char *const *keys, const int *index, int n_keys,
                      int *line, int *col)
{
    static const int zeros[16];
    *line = *col = 1;
    if (cfg && cfg->text && n_keys > 0 && n_keys <= 16)
        locate(cfg->text, keys, index ? index : zeros, n_keys, line, col);
}

cg_pseudo_authority_opts_t cg_config_authority_opts(const cg_config_t *cfg)
{
    return (cg_pseudo_authority_opts_t){.aliases = cfg->auth_alias_view,
                                        .n_aliases = cfg->n_auth_aliases,
                                        .defaults = cfg->auth_default_view,
                                        .n_defaults = cfg->n_auth_defaults,
                                        .missing = (cg_pseudo_missing_t)cfg->auth_missing};
}

void cg_config_mapping_opts(const cg_config_t *cfg, cg_mapping_opts_t *out)
{
    /* the first layer and the layers over it */
    *out =
        (cg_mapping_opts_t){.specs = cfg->n_specs ? cfg->specs[0] : NULL,
                            .more_specs = cfg->n_specs ? (const char *const *)cfg->specs + 1 : NULL,
                            .n_more_specs = cfg->n_specs ? cfg->n_specs - 1 : 0,
                            .vocab = cfg->n_vocab ? cfg->vocab[0] : NULL,
                            .more_vocab = cfg->n_vocab ? (const char *const *)cfg->vocab + 1 : NULL,
                            .n_more_vocab = cfg->n_vocab ? cfg->n_vocab - 1 : 0,
                            .athena = cfg->athena,
                            .cohorts = cfg->cohorts,
                            .key_file = cfg->key_file,
                            .key_env = cfg->key_env,
                            .date_shift_days = cfg->date_shift_days,
                            .message_id_plain = cfg->message_id_plain,
                            .source_utc_offset = cfg->source_utc_offset,
                            .max_message_ms = (unsigned)cfg->max_message_ms,
                            .max_message_memory = (size_t)cfg->max_message_mb << 20,
                            .hl7 = &cfg->hl7,
                            .xml = &cfg->xml,
                            .params = cfg->spec_param_view,
                            .n_params = cfg->n_spec_params,
                            .authorities = cg_config_authority_opts(cfg)};
}

void cg_config_write_reference(FILE *out)
{
    static const char *const type_names[] = {
        "string", "integer", "boolean", "enum",
        "array",  "object",  "map",     "string or list of strings"};
    fprintf(out, "| setting | type | default | description |\n|---|---|---|---|\n");
    const cg_config_map_t *m;
    for (size_t i = 0; (m = map_at(i)) != NULL; i++)
        for (const cg_config_map_t *p = m; p->name; p++) {
            if (prop_find(p->name) != p) /* a row two plug-ins share is written once */
                continue;
            fprintf(out, "| `%s` | %s", p->name, type_names[p->type]);
            if (p->type == CG_CONFIG_ENUM) {
                fputs(" (`", out);
                for (const char *e = p->enums; *e; e++) /* | would end the Markdown cell */
                    fputs(*e == '|' ? "`, `" : (char[]){*e, 0}, out);
                fputs("`)", out);
            }
            if (p->type == CG_CONFIG_INT)
                fprintf(out, " (%ld to %ld)", p->min, p->max);
            if (p->def)
                fprintf(out, " | `%s` | %s |\n", p->def, p->desc);
            else
                fprintf(out, " | %s | %s |\n",
                        p->type == CG_CONFIG_STRING || p->type == CG_CONFIG_STRINGS ? "required"
                                                                                    : "",
                        p->desc);
        }
}
