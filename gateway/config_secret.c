/* config_secret.c - setting values kept out of the config file ({"env": NAME}, {"file": PATH}),
 * so that a Kafka password can come from the service manager's environment or a secrets mount
 * (systemd's LoadCredential, Kubernetes secrets) while the config itself stays shareable. */
#include "config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_SECRET_MAX_BYTES 65536

static int read_file(const char *path, char **out, char *why, size_t why_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_size, "cannot read the file %s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(CG_SECRET_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CG_SECRET_MAX_BYTES + 1, f) : 0;
    int failed = !buf || ferror(f);
    fclose(f);
    if (failed || n > CG_SECRET_MAX_BYTES) {
        snprintf(why, why_size, "cannot read the file %s: %s", path,
                 failed ? "read error" : "larger than 64 KiB");
        free(buf);
        return -1;
    }
    /* one trailing newline, as `echo secret > file` leaves it */
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (memchr(buf, '\0', n) || !n) {
        snprintf(why, why_size, "the file %s %s", path, n ? "holds a NUL byte" : "is empty");
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

int cg_config_secret_read(json_t *spec, const char *base_dir, char **out, char *why,
                          size_t why_size)
{
    *out = NULL;
    json_t *env = json_object_get(spec, "env"), *file = json_object_get(spec, "file");
    if (json_object_size(spec) != 1 || !(json_is_string(env) || json_is_string(file)) ||
        !json_string_length(env ? env : file)) {
        snprintf(why, why_size,
                 "must be {\"env\": \"NAME\"} or {\"file\": \"PATH\"}, nothing else");
        return -1;
    }
    if (env) {
        const char *name = json_string_value(env);
        const char *v = getenv(name);
        if (!v || !*v) {
            snprintf(why, why_size, "comes from the environment variable %s, which is %s", name,
                     v ? "empty" : "not set");
            return -1;
        }
        if (!(*out = strdup(v))) {
            snprintf(why, why_size, "out of memory");
            return -1;
        }
        return 0;
    }
    const char *p = json_string_value(file);
    char path[4096];
    if (p[0] == '/' || !base_dir)
        snprintf(path, sizeof(path), "%s", p);
    else
        snprintf(path, sizeof(path), "%s/%s", base_dir, p);
    return read_file(path, out, why, why_size);
}
