/* spec_row.c - building typed rows (cg_row.h): a rule's columns evaluated, checked against
 * their target column's type (cg_target.h), made canonical and stored as {ptr,len} values, one
 * value array per row in the message arena. No text is encoded here: that is the target's
 * encoder's job (cg_row_encode).
 */
#include "spec_mapper.h"

#include <stdlib.h>
#include <string.h>

static int is_numeric_type(cg_col_type_t t)
{
    return t == CG_COL_INT32 || t == CG_COL_INT64 || t == CG_COL_NUMBER;
}

/* Whether the canonical number num[0..n) (from cg_spec_number) certainly passes
 * cg_target_check for type t, so the check can be skipped: any such text is a valid JSON
 * number, and integers short enough cannot be out of range. Longer ones are checked. */
static int number_surely_ok(cg_col_type_t t, const char *num, size_t n)
{
    size_t digits = n - (num[0] == '-');
    if (t == CG_COL_NUMBER)
        return 1;
    if (t == CG_COL_INT32)
        return digits <= 9;
    /* BIGINT: 19 digits fit up to INT64_MAX (hashed ids are 63-bit, so nearly all of them);
     * below 9e18 without the compare */
    if (digits == 19)
        return num[n - digits] < '9' ||
               memcmp(num + (n - digits),
                      num[0] == '-' ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
    return digits < 19;
}

/* Whether s[0..n) is an integer as cg_spec_number writes it: 0, or -?[1-9][0-9]* (no blanks,
 * sign '+' or leading zeros), so that it would come back unchanged. */
static int canonical_int(const char *s, size_t n)
{
    size_t i = n && s[0] == '-';
    if (i >= n || (s[i] == '0' && (i || n != 1)))
        return 0;
    /* eight at a time (ids have 19 digits): a byte outside '0'..'9' sets its top bit in
     * w - '0' or w + 0x46 (a borrow only spreads above a real hit) */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w | (w - ones * '0') | (w + ones * 0x46)) & high)
            return 0;
    }
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static inline __attribute__((always_inline)) int two(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return 0;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 1;
}

/* Whether v has the exact shape cg_spec_ts_to_iso writes, YYYY-MM-DD for a date, and for a
 * datetime optionally THH:MM[:SS][.f{1,4}][+HH:MM] after it, with every part in the range
 * cg_target_check accepts; such a value passes that check, which is skipped. Anything else
 * (a leap second, a constant in another format) is left to the check. */
static int iso_surely_ok(cg_col_type_t t, const char *s, size_t n)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int c, y, m, d, x;
    if (n < 10 || !two(s, &c) || !two(s + 2, &y) || s[4] != '-' || !two(s + 5, &m) || s[7] != '-' ||
        !two(s + 8, &d))
        return 0;
    y += c * 100;
    if (y < 1 || m < 1 || m > 12 || d < 1 ||
        d > mdays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
        return 0;
    if (n == 10)
        return 1;
    if (t != CG_COL_DATETIME || n < 16 || s[10] != 'T' || !two(s + 11, &x) || x > 23 ||
        s[13] != ':' || !two(s + 14, &x) || x > 59)
        return 0;
    size_t i = 16;
    if (i < n && s[i] == ':') {
        if (n < i + 3 || !two(s + i + 1, &x) || x > 59)
            return 0;
        i += 3;
        if (i < n && s[i] == '.') {
            size_t j = ++i;
            while (i < n && i - j < 4 && s[i] >= '0' && s[i] <= '9')
                i++;
            if (i == j)
                return 0;
        }
    }
    if (i == n)
        return 1;
    return n - i == 6 && (s[i] == '+' || s[i] == '-') && two(s + i + 1, &x) && x <= 15 &&
           s[i + 3] == ':' && two(s + i + 4, &x) && x <= 59;
}

/* The kind of value a column of each type holds. */
static const uint32_t kind_of[] = {
    [CG_COL_INT32] = CG_VALUE_INTEGER,     [CG_COL_INT64] = CG_VALUE_INTEGER,
    [CG_COL_NUMBER] = CG_VALUE_NUMBER,     [CG_COL_VARCHAR] = CG_VALUE_STRING,
    [CG_COL_TEXT] = CG_VALUE_STRING,       [CG_COL_DATE] = CG_VALUE_DATE,
    [CG_COL_DATETIME] = CG_VALUE_DATETIME,
};

/* v cut to at most max characters, at a character boundary (as the "truncate" transform). */
static spec_val_t cut_chars(spec_val_t v, size_t max)
{
    if (v.len <= max) /* no more characters than bytes: nothing to cut */
        return (spec_val_t){v.s, v.len, v.len > 0};
    size_t chars = 0, i = 0;
    while (i < v.len && chars < max) {
        i++;
        while (i < v.len && ((unsigned char)v.s[i] & 0xC0) == 0x80)
            i++;
        chars++;
    }
    return (spec_val_t){v.s, (uint32_t)i, i > 0};
}

/* set_column's cases past the common ones: numbers to make canonical, text to cut or check
 * character by character, dates of another shape. Out of line, so that the common cases pay
 * for none of its stack and registers. */
static __attribute__((noinline)) cg_err_t set_column_slow(cg_mapper_t *mp,
                                                          const cg_target_column_t *col,
                                                          spec_val_t v, const char *src_text,
                                                          cg_value_t *out)
{
    cg_col_type_t t = col->type;
    if (is_numeric_type(t)) {
        char num[128];
        size_t n = cg_spec_number(v.s, v.len, t != CG_COL_NUMBER, num, sizeof(num));
        char why[160];
        if (!n || (!number_surely_ok(t, num, n) &&
                   !cg_target_check(col, num, n, false, why, sizeof(why))))
            return cg_spec_fail_as(
                mp, CG_ERR_MAP, "invalid_number",
                "column %s takes a%s number, not a value of %zu byte%s (from %s)", col->name,
                t == CG_COL_NUMBER ? "" : "n integer", (size_t)v.len, v.len == 1 ? "" : "s",
                src_text ? src_text : "?");
        if (n != v.len || memcmp(num, v.s, n)) { /* "7.20" → "7.2": the new text */
            v = cg_spec_val_copy(mp, num, n);
            if (!v.present)
                return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
        }
        *out = (cg_value_t){v.s, v.len, kind_of[t], 1, 0};
        return CG_OK;
    }
    if (t == CG_COL_VARCHAR && col->max_length > 0) {
        v = cut_chars(v, (size_t)col->max_length);
    }
    char why[160];
    int iso = (t == CG_COL_DATE || t == CG_COL_DATETIME) && iso_surely_ok(t, v.s, v.len);
    if (!iso && !cg_target_check(col, v.s, v.len, true, why, sizeof(why)))
        return cg_spec_fail_as(mp, CG_ERR_MAP, "invalid_value", "%s (from %s)", why,
                               src_text ? src_text : "?");
    *out = (cg_value_t){v.s, v.len, kind_of[t], (uint8_t)iso, 0}; /* iso: digits, -, T, :, ., + */
    return CG_OK;
}

/* Types v for col into *out, checked against the column type; varchar values longer than the
 * column are cut at a character boundary (source values are often longer than 50). Numbers are
 * made canonical. The text stays where it is (the message, the arena) unless it changes. */
static inline cg_err_t set_column(cg_mapper_t *mp, const cg_target_column_t *col, spec_val_t v,
                                  const char *src_text, cg_value_t *out)
{
    cg_col_type_t t = col->type;
    if (!v.present) {
        if (col->required)
            return cg_spec_fail(mp, CG_ERR_REQUIRED, "required column %s has no value (from %s)",
                                col->name, src_text ? src_text : "?");
        *out = (cg_value_t){NULL, 0, CG_VALUE_NULL, 0, 0};
        return CG_OK;
    }
    if (is_numeric_type(t) && v.len <= 20 && canonical_int(v.s, v.len) &&
        number_surely_ok(t, v.s, v.len)) {
        /* ids and concept ids: already the text cg_spec_number would give */
        *out = (cg_value_t){v.s, v.len, kind_of[t], 1, 0};
        return CG_OK;
    }
    /* plain ASCII text: one byte a character, valid UTF-8 without NUL, nothing to escape; the
     * cut and the check below reduce to a length limit */
    if ((t == CG_COL_TEXT || (t == CG_COL_VARCHAR && col->max_length > 0)) &&
        cg_buf_json_plain(v.s, v.len)) {
        size_t n = v.len;
        if (t == CG_COL_VARCHAR && n > (size_t)col->max_length)
            n = (size_t)col->max_length;
        *out = (cg_value_t){v.s, (uint32_t)n, CG_VALUE_STRING, 1, 0};
        return CG_OK;
    }
    /* a date or datetime as cg_spec_ts_to_iso writes it passes the check, which is skipped;
     * the last one that passed is known by its slice (a message's rows share their times, and
     * the transforms' memo gives them the same text) */
    if (t == CG_COL_DATE || t == CG_COL_DATETIME) {
        iso_memo_t *im = &mp->iso_ok[t == CG_COL_DATETIME];
        if (im->gen == mp->gen && im->s == v.s && im->len == v.len) {
            *out = (cg_value_t){v.s, v.len, kind_of[t], 1, 0};
            return CG_OK;
        }
        if (iso_surely_ok(t, v.s, v.len)) {
            *im = (iso_memo_t){mp->gen, v.len, v.s};
            *out = (cg_value_t){v.s, v.len, kind_of[t], 1, 0};
            return CG_OK;
        }
    }
    return set_column_slow(mp, col, v, src_text, out);
}

/* The room for a row id's text (cg_fmt_int64: at most 20 characters). */
#define ROW_ID_TEXT 24

/* The row's id: the keyed hash of its table and the rule's "id" parts when the rule has them
 * and all are present; else of the message's identity (mp->msg_key: never the message id
 * alone, which senders reuse), the spec, the rule and the row's position in it. *how says
 * which, for --trace. */
static cg_err_t row_id(cg_mapper_t *mp, const rule_t *r, uint64_t position, int64_t *id,
                       const char **how)
{
    cg_slice_t parts[CG_PSEUDO_ID_MAX_PARTS];
    cg_slice_t ns = {r->table->name, strlen(r->table->name)};
    cg_err_t rc;
    if (!mp->pseudo)
        return cg_spec_fail(mp, CG_ERR_MAP, "no pseudonym key: row ids cannot be computed");
    if (r->n_id_parts) {
        int any, all = 1;
        if ((rc = cg_spec_eval_key(mp, r->id_parts, r->n_id_parts, parts, &any)))
            return rc;
        for (size_t i = 0; i < r->n_id_parts; i++)
            all &= parts[i].ptr != NULL;
        if (all) {
            *how = "row id (the rule's id)";
            if ((rc = cg_pseudo_key_id_memo(mp->pseudo, &mp->id_memo, CG_PSEUDO_ID_KEY, ns, parts,
                                            r->n_id_parts, id)))
                return cg_spec_fail(mp, rc, "row id failed");
            return CG_OK;
        }
    }
    char pos[24];
    size_t n = 0;
    parts[n++] = (cg_slice_t){mp->spec->name, mp->spec->name_len};
    parts[n++] = (cg_slice_t){r->name, r->name_len};
    parts[n++] = (cg_slice_t){pos, cg_fmt_int64(pos, (int64_t)position)};
    for (size_t i = 0; i < mp->n_msg_key; i++)
        parts[n++] = mp->msg_key[i];
    if (mp->msg_key_patient)
        parts[n++] = mp->patient_state > 0 ? (cg_slice_t){mp->person_sv.s, mp->person_sv.len}
                                           : (cg_slice_t){NULL, 0};
    *how = mp->m ? "row id (MSH-3, MSH-4, MSH-7, MSH-10, rule, position)"
                 : "row id (document id, setId, versionNumber, time, patient, rule, position)";
    if ((rc = cg_pseudo_key_id_memo(mp->pseudo, &mp->id_memo, CG_PSEUDO_ID_MESSAGE, ns, parts, n,
                                    id)))
        return cg_spec_fail(mp, rc, "row id failed");
    return CG_OK;
}

/* --trace: column c's value, with its source and the steps it took recorded in trace (the
 * sources, then the steps, n_tab each). Out of line: the untraced loop is the hot one. */
static __attribute__((noinline)) cg_err_t
traced_column(cg_mapper_t *mp, const column_t *c, spec_val_t *v, const char **trace, size_t n_tab)
{
    cg_buf_reset(&mp->steps);
    cg_err_t rc = cg_spec_eval_expr(mp, c->expr, v); /* a variable's binding steps too */
    trace[c->col->index] = c->expr->text ? c->expr->text : "";
    trace[n_tab + c->col->index] = cg_spec_trace_take(mp);
    return rc;
}

/* A new row at the end of mp->rows; NULL when out of memory. */
static cg_row_t *push_row(cg_mapper_t *mp)
{
    if (mp->n_rows == mp->cap_rows) {
        size_t cap = mp->cap_rows ? mp->cap_rows * 2 : 16;
        cg_row_t *r = realloc(mp->rows, cap * sizeof(*r));
        if (!r)
            return NULL;
        mp->rows = r;
        mp->cap_rows = cap;
    }
    return &mp->rows[mp->n_rows++];
}

cg_err_t cg_spec_rule_applies(cg_mapper_t *mp, int *ok)
{
    const rule_t *r = mp->rule;
    cg_err_t rc;
    *ok = 1;
    if ((rc = cg_spec_budget(mp)))
        return rc;
    /* when first, unless it reads the rule's lets: most rules over OBX[*] make no row for most
     * OBX (one per value type), and their lets are then not worth evaluating */
    if (r->guard) { /* its "in" first, inline; then the rest of an "all", in order */
        spec_val_t a;
        if (!mp->guard_passed) { /* else the rules' pass tested it (cg_spec_hl7_run_rules) */
            if ((rc = eval(mp, r->guard->a, &a)))
                return rc;
            if (!cond_in(r->guard, a)) {
                *ok = 0;
                return CG_OK;
            }
        }
        for (size_t i = 1; r->guard != r->when && i < r->when->n_subs; i++)
            if ((rc = cg_spec_eval_cond(mp, r->when->subs[i], ok)) || !*ok)
                return rc;
    } else if (r->when && !r->when_uses_lets &&
               ((rc = cg_spec_eval_cond(mp, r->when, ok)) || !*ok)) {
        return rc;
    }
    for (size_t i = 0; i < r->n_lets; i++)
        if ((rc = mp->trace ? cg_spec_eval_binding(mp, r->lets[i].expr, mp->spec->n_lets + i)
                            : eval(mp, r->lets[i].expr, &mp->vars[mp->spec->n_lets + i])))
            return rc;
    if (r->when && r->when_uses_lets)
        return cg_spec_eval_cond(mp, r->when, ok);
    return CG_OK;
}

cg_err_t cg_spec_emit_row(cg_mapper_t *mp, uint64_t position)
{
    const rule_t *r = mp->rule;
    int ok;
    cg_err_t rc = cg_spec_rule_applies(mp, &ok);
    if (rc || !ok)
        return rc;
    /* one value a column of the table, absent unless mapped, and the text of a generated key
     * after them: one allocation a row */
    const cg_target_table_t *t = r->table;
    size_t n_tab = t->n_columns;
    cg_value_t *vals = cg_arena_alloc(&mp->arena, n_tab * sizeof(*vals) + ROW_ID_TEXT);
    const char **trace = mp->trace ? cg_arena_alloc(&mp->arena, 2 * n_tab * sizeof(*trace)) : NULL;
    if (!vals || (mp->trace && !trace))
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    memset(vals, 0, n_tab * sizeof(*vals));
    if (trace)
        memset(trace, 0, 2 * n_tab * sizeof(*trace)); /* the sources, then the steps */
    int del = 0;
    if (r->delete_when && (rc = cg_spec_eval_cond(mp, r->delete_when, &del)))
        return rc;
    if (r->pk.col && !r->sets_pk) {
        int64_t id;
        const char *how = "row id";
        mp->column = r->pk.col->name;
        if ((rc = row_id(mp, r, position, &id, &how)))
            return rc;
        char *idbuf = (char *)(vals + n_tab);
        spec_val_t idv = {idbuf, (uint32_t)cg_fmt_int64(idbuf, id), 1};
        /* a BIGINT key takes any int64 as cg_fmt_int64 wrote it: what set_column would find */
        if (r->pk.col->type == CG_COL_INT64)
            vals[r->pk.col->index] = (cg_value_t){idv.s, idv.len, CG_VALUE_INTEGER, 1, 0};
        else if ((rc = set_column(mp, r->pk.col, idv, "row id", &vals[r->pk.col->index])))
            return rc;
        if (trace)
            trace[r->pk.col->index] = how;
    }
    for (size_t i = 0; i < r->n_columns; i++) {
        const column_t *c = &r->columns[i];
        /* a delete names the row (its id) and its person, nothing else: a cancel message need
         * not carry what the row's required columns were made of */
        if (del && !c->col->primary_key && c != r->person)
            continue;
        spec_val_t v;
        mp->column = c->col->name;
        if (trace)
            rc = traced_column(mp, c, &v, trace, n_tab);
        else
            rc = eval(mp, c->expr, &v);
        if (rc)
            return rc;
        /* a value canonical already (spec_prepare.c): what set_column would find, cheaper */
        if (v.present &&
            (c->canon == COL_CANON_NUM ||
             (c->canon == COL_CANON_INT && number_surely_ok(c->col->type, v.s, v.len)))) {
            vals[c->col->index] = (cg_value_t){v.s, v.len, kind_of[c->col->type], 1, 0};
            continue;
        }
        if (c->col->source_id && v.present)
            rc = cg_spec_source_id(mp, v.s, v.len, &v); /* as the records' message_id */
        if (rc || (rc = set_column(mp, c->col, v, c->expr->text, &vals[c->col->index])))
            return rc;
    }
    mp->column = NULL;
    /* facts without a column go beside the row; absent ones are left out */
    cg_row_meta_t *meta = NULL;
    size_t n_meta = 0;
    if (r->n_meta && !(meta = cg_arena_alloc(&mp->arena, r->n_meta * sizeof(*meta))))
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n_meta; i++) {
        spec_val_t v;
        mp->column = r->meta[i].name;
        if ((rc = eval(mp, r->meta[i].expr, &v)))
            return rc;
        if (v.present)
            meta[n_meta++] = (cg_row_meta_t){r->meta[i].name,
                                             {v.s, v.len, CG_VALUE_STRING, 0, 0},
                                             r->meta[i].json_key,
                                             r->meta[i].json_key_len};
    }
    mp->column = NULL;
    cg_row_t *row = push_row(mp);
    if (!row)
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    /* message_id and person_key are the message's, set once it is mapped (cg_spec_finish_rows) */
    *row = (cg_row_t){.table = t,
                      .op = del ? CG_ROW_DELETE : r->op,
                      .values = vals,
                      .cols = r->row_cols,
                      .n_cols = r->n_row_cols,
                      .meta = meta,
                      .n_meta = n_meta,
                      .spec = mp->spec->name,
                      .spec_version = mp->spec->version,
                      .rule = r->name,
                      .json_prov = r->json_prov,
                      .json_prov_len = r->json_prov_len,
                      .trace = trace,
                      .trace_steps = trace ? trace + n_tab : NULL};
    return CG_OK;
}

cg_err_t cg_spec_source_id(cg_mapper_t *mp, const char *s, size_t len, spec_val_t *out)
{
    if (mp->message_id_plain) {
        *out = (spec_val_t){s, (uint32_t)len, 1};
        return CG_OK;
    }
    *out = ABSENT;
    if (!mp->pseudo)
        return CG_OK;
    char hex[CG_PSEUDO_MESSAGE_ID_LEN + 1];
    cg_err_t rc = cg_pseudo_message_id(mp->pseudo, (cg_slice_t){s, len}, hex);
    if (rc)
        return cg_spec_fail(mp, rc, "message id failed");
    *out = cg_spec_val_copy(mp, hex, CG_PSEUDO_MESSAGE_ID_LEN);
    if (!out->present)
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    return CG_OK;
}

/* Every spec ran: the rows get the message's id and the patient's pseudonym. */
void cg_spec_finish_rows(cg_mapper_t *mp, const cg_row_t **rows, size_t *n_rows)
{
    /* key every row by the patient's pseudonym (the last spec's patient) */
    cg_slice_t key = mp->patient_state > 0 ? (cg_slice_t){mp->person_sv.s, mp->person_sv.len}
                                           : (cg_slice_t){"", 0};
    /* the source's time, shifted as the rows' dates are; left out when it is no valid time */
    cg_slice_t when = {"", 0};
    char iso[48];
    size_t n = mp->time_raw.len ? cg_spec_ts_to_iso(mp->time_raw.ptr, mp->time_raw.len, 1,
                                                    mp->utc_offset, mp->shift_days, iso)
                                : 0;
    spec_val_t t = n && mp->n_rows ? cg_spec_val_copy(mp, iso, n) : ABSENT;
    if (t.present)
        when = (cg_slice_t){t.s, t.len};
    /* the sender's id only as configured: keyed by default (it is an identifier) */
    cg_slice_t mid = {"", 0};
    spec_val_t kv;
    if (mp->n_rows && mp->message_id.len &&
        cg_spec_source_id(mp, mp->message_id.ptr, mp->message_id.len, &kv) == CG_OK && kv.present)
        mid = (cg_slice_t){kv.s, kv.len};
    /* the same two texts in every record of the message: looked at for escapes once here */
    uint8_t plain = cg_buf_json_plain(mid.ptr, mid.len) && cg_buf_json_plain(when.ptr, when.len);
    for (size_t i = 0; i < mp->n_rows; i++) {
        mp->rows[i].message_id = mid;
        mp->rows[i].person_key = key;
        mp->rows[i].source_time = when;
        mp->rows[i].source_plain = plain;
    }
    *rows = mp->rows;
    *n_rows = mp->n_rows;
    mp->quality_done = 1;
}
