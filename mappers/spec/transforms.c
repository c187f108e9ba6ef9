/* transforms.c - the value conversions behind the spec transforms that need more than a line:
 * HL7 TS/DTM times to ISO 8601, and HL7 NM numbers to canonical JSON numbers. */
#include "spec_impl.h"

#include "cg_date.h"

#include <string.h>

static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The number the two digits at s write. */
static inline int two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Two decimal digits of v (0..99). */
static void put2(char *o, int v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
}

size_t cg_spec_ts_to_iso(const char *s, size_t len, int want_datetime, const char *utc_offset,
                         int shift_days, char *out)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    /* split off the zone: +ZZZZ / -ZZZZ after the digits; the first '.' found on the way */
    size_t n = 0;
    const char *frac = NULL;
    for (; n < len; n++) {
        if (s[n] >= '0' && s[n] <= '9')
            continue;
        if (s[n] != '.')
            break;
        if (!frac)
            frac = s + n;
    }
    const char *zone = NULL;
    if (n < len) {
        if ((s[n] != '+' && s[n] != '-') || len - n != 5 || digits(s + n + 1, 4) < 0)
            return 0;
        zone = s + n;
    }
    size_t main_len = frac ? (size_t)(frac - s) : n;
    size_t frac_len = frac ? n - main_len - 1 : 0;
    /* YYYY[MM[DD[HH[MM[SS]]]]]; the fraction only after seconds */
    if (main_len < 4 || main_len > 14 || main_len % 2 ||
        (frac && (main_len != 14 || !frac_len || frac_len > 4)))
        return 0;
    if (frac && digits(frac + 1, frac_len) < 0)
        return 0;
    /* the main part is digits (it ends at the first '.'): read without checks */
    int y = two(s) * 100 + two(s + 2), mo = 1, d = 1, h = -1, mi = -1, se = -1;
    if (main_len >= 6)
        mo = two(s + 4);
    if (main_len >= 8)
        d = two(s + 6);
    if (main_len >= 10)
        h = two(s + 8);
    if (main_len >= 12)
        mi = two(s + 10);
    if (main_len >= 14)
        se = two(s + 12);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > cg_date_days_in_month(y, mo) || h > 23 ||
        mi > 59 || se > 60)
        return 0;
    if (shift_days)
        cg_date_civil_from_days(cg_date_days_from_civil(y, mo, d) + shift_days, &y, &mo, &d);
    if (y < 1 || y > 9999)
        return 0;
    /* written by hand: snprintf was the largest single cost of mapping a result row. Unshifted,
     * the digits are the input's own (the same text put2 would write), copied */
    size_t w = 0;
    if (shift_days) {
        put2(out + w, y / 100);
        put2(out + w + 2, y % 100);
        put2(out + w + 5, mo);
        put2(out + w + 8, d);
    } else {
        memcpy(out + w, s, 4);
        memcpy(out + w + 5, main_len >= 6 ? s + 4 : "01", 2);
        memcpy(out + w + 8, main_len >= 8 ? s + 6 : "01", 2);
    }
    out[w + 4] = '-';
    out[w + 7] = '-';
    w += 10;
    if (want_datetime && h >= 0) {
        out[w] = 'T';
        memcpy(out + w + 1, s + 8, 2);
        out[w + 3] = ':';
        memcpy(out + w + 4, mi < 0 ? "00" : s + 10, 2);
        w += 6;
        if (se >= 0) {
            out[w] = ':';
            memcpy(out + w + 1, s + 12, 2);
            w += 3;
        }
        if (frac) {
            out[w++] = '.';
            memcpy(out + w, frac + 1, frac_len);
            w += frac_len;
        }
        if (zone) {
            out[w] = zone[0];
            memcpy(out + w + 1, zone + 1, 2);
            out[w + 3] = ':';
            memcpy(out + w + 4, zone + 3, 2);
            w += 6;
        } else if (utc_offset) {
            size_t ol = strlen(utc_offset);
            if (ol > 39 - w)
                ol = 39 - w;
            memcpy(out + w, utc_offset, ol);
            w += ol;
        }
    }
    out[w] = '\0';
    return w;
}

size_t cg_spec_number(const char *s, size_t len, int integer_only, char *out, size_t out_size)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    size_t i = 0, o = 0;
    int neg = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    size_t int_start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t int_len = i - int_start;
    size_t frac_start = 0, frac_len = 0;
    if (i < len && s[i] == '.') {
        frac_start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        frac_len = i - frac_start;
    }
    if (i != len || (int_len == 0 && frac_len == 0) || (integer_only && frac_len))
        return 0;
    /* drop leading zeros of the integer part, keep one */
    while (int_len > 1 && s[int_start] == '0') {
        int_start++;
        int_len--;
    }
    while (frac_len && s[frac_start + frac_len - 1] == '0')
        frac_len--;
    if (int_len + frac_len + 3 > out_size)
        return 0;
    if (integer_only && int_len > 19) /* beyond int64; the column check tells exactly */
        return 0;
    int zero = (int_len == 0 || (int_len == 1 && s[int_start] == '0')) && frac_len == 0;
    if (neg && !zero)
        out[o++] = '-';
    if (int_len == 0)
        out[o++] = '0';
    memcpy(out + o, s + int_start, int_len);
    o += int_len;
    if (frac_len) {
        out[o++] = '.';
        memcpy(out + o, s + frac_start, frac_len);
        o += frac_len;
    }
    out[o] = '\0';
    return o;
}
