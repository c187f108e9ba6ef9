/* mllp_allow.c - which peer addresses may connect to the listener (listen.allow): a list of
 * IPv4 and IPv6 addresses or CIDR prefixes, parsed once; a peer outside it is closed at
 * accept, before any byte is read. An IPv4 peer reaching an IPv6 socket (::ffff:a.b.c.d) is
 * compared as the IPv4 address it is. */
#include "mllp_int.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

typedef struct allow_net {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix; /* bits */
} allow_net_t;

struct mllp_allow {
    allow_net_t *nets;
    size_t n;
};

static int parse_one(const char *s, size_t len, allow_net_t *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
    } else {
        return -1;
    }
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || p < 0 || p > out->prefix)
            return -1;
        out->prefix = (int)p;
    }
    return 0;
}

mllp_allow_t *mllp_allow_new(const char *text, char *errstr, size_t errstr_size)
{
    mllp_allow_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (const char *p = text ? text : ""; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        if (p == s)
            continue;
        allow_net_t *nn = realloc(a->nets, (a->n + 1) * sizeof(*nn));
        if (!nn) {
            snprintf(errstr, errstr_size, "out of memory");
            mllp_allow_destroy(a);
            return NULL;
        }
        a->nets = nn;
        if (parse_one(s, (size_t)(p - s), &a->nets[a->n])) {
            snprintf(errstr, errstr_size,
                     "listen.allow: '%.*s' is not an IPv4 or IPv6 address or ADDRESS/PREFIX",
                     (int)(p - s > 64 ? 64 : p - s), s);
            mllp_allow_destroy(a);
            return NULL;
        }
        a->n++;
    }
    return a;
}

void mllp_allow_destroy(mllp_allow_t *a)
{
    if (!a)
        return;
    free(a->nets);
    free(a);
}

static int prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes))
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xFF << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int mllp_allow_check(const mllp_allow_t *a, const struct sockaddr_storage *sa)
{
    if (!a || !a->n)
        return 1;
    int family = sa->ss_family;
    const unsigned char *addr;
    if (family == AF_INET) {
        addr = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        addr = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (!memcmp(addr, v4mapped, 12)) {
            family = AF_INET;
            addr += 12;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < a->n; i++)
        if (a->nets[i].family == family && prefix_match(a->nets[i].addr, addr, a->nets[i].prefix))
            return 1;
    return 0;
}

/* Whether sa is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z). */
static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

int mllp_plaintext_check(const mllp_conf_t *cf, const struct sockaddr *sa, int tls, char *errstr,
                         size_t errstr_size)
{
    if (tls || cf->plaintext || is_loopback(sa))
        return 0;
    snprintf(errstr, errstr_size,
             "listen.address %s is not a loopback address: set listen.tls.cert_file and "
             "listen.tls.key_file, or \"listen\": {\"plaintext\": true} to accept the network "
             "without TLS",
             cf->address);
    return -1;
}
