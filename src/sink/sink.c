/* sink.c - see sink.h. Splits "scheme://rest", checks the URL, and hands
 * the work to a backend from a small table (sink_impl.h).
 *
 * What every URL shares (a known scheme, no control characters, a length)
 * is checked here; the rest of a URL is each backend's own (ops->check:
 * the file sink's directory, GCS's bucket naming rules and prefix).
 * Object names are checked here for every backend.
 */
#include "sink/sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sink/sink_impl.h"
#include "base/util.h"


#define SINK_URL_MAX 1024     /* same as a tenant's sink column */
#define SINK_NAME_MAX 512     /* object names are short and generated */
#define URL_EXPECTED "expected file:///absolute/dir, gs://bucket[/prefix] or " \
                     "secops://REGION/PROJECT/CUSTOMER_ID[?log_type=TYPE]"

struct sink {
    const sink_ops *ops;
    void *state;
};

typedef struct backend {
    const char *scheme;
    const sink_ops *ops;
} backend;

static const backend backends[] = {
    {"file", &sink_file_ops},
    {"gs", &sink_gcs_ops},
    {"secops", &sink_secops_ops},
};

static int is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

int sink_has_control(const char *s)
{
    for (; *s; s++)
        if (is_control((unsigned char)*s))
            return 1;
    return 0;
}

/* Copy s into out with control characters shown as \xNN, for messages. */
static void escape_controls(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s && o + 5 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_control(c))
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

int sink_path_normalize(const char *p, char *out, size_t outlen)
{
    size_t o = 0;
    while (*p) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return -1;
        if (o + (o > 0) + n + 1 > outlen)
            return -1;
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
    return 0;
}

/* ---- dispatch ---- */

/* The backend for url's scheme; *rest points past "://". NULL with err. */
static const backend *backend_for(const char *url, const char **rest, char *err, size_t errlen)
{
    const char *sep = strstr(url, "://");
    if (!sep) {
        seterr(err, errlen, "sink URL '%s' has no scheme; " URL_EXPECTED, url);
        return NULL;
    }
    size_t n = (size_t)(sep - url);
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (strlen(backends[i].scheme) == n && memcmp(url, backends[i].scheme, n) == 0) {
            *rest = sep + 3;
            return &backends[i];
        }
    }
    seterr(err, errlen, "sink URL '%s': unknown scheme '%.*s'; " URL_EXPECTED, url, (int)n, url);
    return NULL;
}

/* Check url; on success *be is its backend and norm the normalized rest. */
static int url_parse(const char *url, const backend **be, char *norm, size_t normlen,
                     char *err, size_t errlen)
{
    char why[512] = "";
    const char *rest = NULL;
    if (!url || !url[0])
        return seterr(err, errlen, "sink URL is empty; " URL_EXPECTED);
    if (sink_has_control(url)) {
        char shown[256];
        escape_controls(url, shown, sizeof shown);
        return seterr(err, errlen, "sink URL '%s' contains control characters; " URL_EXPECTED,
                    shown);
    }
    if (strlen(url) >= SINK_URL_MAX)
        return seterr(err, errlen, "sink URL '%.60s...' is longer than %d bytes", url,
                    SINK_URL_MAX - 1);
    *be = backend_for(url, &rest, err, errlen);
    if (!*be)
        return -1;
    int rc = snprintf(norm, normlen, "%s", rest) >= (int)normlen ? -1 : 0;
    if (rc == 0 && (*be)->ops->check)
        rc = (*be)->ops->check(norm, why, sizeof why);
    if (rc < 0)
        return seterr(err, errlen, "sink URL '%s': %s", url, why[0] ? why : "not valid");
    return 0;
}

int sink_url_check(const char *url, char *err, size_t errlen)
{
    const backend *be = NULL;
    char norm[SINK_URL_MAX];
    return url_parse(url, &be, norm, sizeof norm, err, errlen);
}

int sink_stream_check(const char *url, const char *stream, char *err, size_t errlen)
{
    const backend *be = NULL;
    char norm[SINK_URL_MAX], why[512] = "";
    if (url_parse(url, &be, norm, sizeof norm, err, errlen) < 0)
        return -1;
    if (!be->ops->stream_check || be->ops->stream_check(norm, stream, why, sizeof why) == 0)
        return 0;
    return seterr(err, errlen, "sink URL '%s': %s", url, why);
}

sink *sink_open(const sink_dest *d, const nsc_config *cfg, char *err, size_t errlen)
{
    const char *url = d->url;
    const backend *be = NULL;
    char norm[SINK_URL_MAX], why[512] = "";
    if (url_parse(url, &be, norm, sizeof norm, err, errlen) < 0)
        return NULL;
    sink *s = calloc(1, sizeof *s);
    if (!s) {
        seterr(err, errlen, "cannot open sink '%s': out of memory", url);
        return NULL;
    }
    s->ops = be->ops;
    s->state = s->ops->open(norm, d, cfg, why, sizeof why);
    if (!s->state) {
        seterr(err, errlen, "cannot open sink '%s': %s", url, why[0] ? why : "unknown error");
        free(s);
        return NULL;
    }
    return s;
}

void sink_free(sink *s)
{
    if (!s)
        return;
    s->ops->close(s->state);
    free(s);
}

int sink_name_check(const char *name, char *err, size_t errlen)
{
    char norm[SINK_NAME_MAX];
    if (!name || !name[0])
        return seterr(err, errlen, "empty object name");
    if (sink_has_control(name))
        return seterr(err, errlen, "object name contains control characters");
    if (name[0] == '/')
        return seterr(err, errlen, "object name '%s' is absolute; expected a relative name", name);
    if (strlen(name) >= sizeof norm || sink_path_normalize(name, norm, sizeof norm) < 0 ||
        strcmp(norm, name) != 0)
        return seterr(err, errlen, "object name '%s' is not valid (expected tenant/file, "
                    "without '.', '..' or empty parts)", name);
    return 0;
}

/* sink_track() is for one put: forget it when the put is over. */
static sink_result untrack(sink *s, sink_result r)
{
    if (s->ops->track)
        s->ops->track(s->state, NULL);
    return r;
}

sink_result sink_put(sink *s, const char *name, const void *data, size_t len,
                     char *err, size_t errlen)
{
    if (sink_name_check(name, err, errlen) < 0)
        return untrack(s, SINK_PERMANENT);
    return untrack(s, s->ops->put(s->state, name, data, len, err, errlen));
}

/* Map the file and put its bytes: the backend reads them from the page
 * cache, no copy in our memory. */
static sink_result put_mapped(sink *s, const char *name, const char *path, char *err,
                              size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        seterr(err, errlen, "cannot read spool file %s: %s%s", path, strerror(e),
               e == ENOENT ? " (the batch's records are gone; delete its outbox row "
                             "to stop retrying)" : "");
        if (fd >= 0)
            close(fd);
        return e == ENOENT ? SINK_PERMANENT : SINK_RETRY;
    }
    size_t len = (size_t)st.st_size;
    void *p = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : (void *)"";
    close(fd);
    if (p == MAP_FAILED) {
        seterr(err, errlen, "cannot map spool file %s: %s", path, strerror(errno));
        return SINK_RETRY;
    }
    sink_result r = s->ops->put(s->state, name, p, len, err, errlen);
    if (len)
        munmap(p, len);
    return r;
}

sink_result sink_put_file(sink *s, const char *name, const char *path, char *err, size_t errlen)
{
    if (sink_name_check(name, err, errlen) < 0)
        return untrack(s, SINK_PERMANENT);
    if (s->ops->link) {
        int fallback = 0;
        sink_result r = s->ops->link(s->state, name, path, &fallback, err, errlen);
        if (!fallback)
            return untrack(s, r);
    }
    return untrack(s, put_mapped(s, name, path, err, errlen));
}

void sink_track(sink *s, sink_progress *p)
{
    if (s->ops->track)
        s->ops->track(s->state, p);
}

void sink_describe(const sink *s, const char *name, char *out, size_t outlen)
{
    s->ops->describe(s->state, name, out, outlen);
}
