/* sink_file.c - file:///dir sinks (sink_impl.h).
 *
 * put() writes the data to a temp file beside the final name, fsyncs it and
 * link(2)s it into place, so a reader sees either nothing or the whole
 * object, and an existing object is never overwritten (EEXIST means an
 * earlier try stored it). link() does the same with a spool file that is
 * already written and fsynced: no byte is copied. Directories are created 0700, files 0600. The
 * data is stored as given: file sinks never gzip.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sink/sink_impl.h"
#include "base/util.h"

#define FILE_EXAMPLE "file:///var/lib/nscollect/out"

typedef struct file_sink {
    char root[PATH_MAX];      /* absolute, no trailing or doubled '/' ("" = "/") */
} file_sink;

/* Absolute path p into out as "/a/b" (the root directory becomes "").
 * -1 on a "." or ".." component or no room. */
static int path_normalize(const char *p, char *out, size_t outlen)
{
    if (outlen < 2 || sink_path_normalize(p, out + 1, outlen - 1) < 0)
        return -1;
    out[0] = out[1] ? '/' : '\0';
    return 0;
}

static int file_check(const char *rest, char *err, size_t errlen)
{
    char norm[PATH_MAX - NAME_MAX];
    if (!rest[0])
        return seterr(err, errlen, "no directory; expected an absolute directory path, "
                    "as in " FILE_EXAMPLE);
    if (rest[0] != '/')
        return seterr(err, errlen, "expected an absolute directory path after file://, "
                    "as in " FILE_EXAMPLE);
    if (sink_has_control(rest))
        return seterr(err, errlen, "the path contains control characters");
    if (path_normalize(rest, norm, sizeof norm) < 0)
        return seterr(err, errlen, "the path may not contain '.' or '..' components "
                    "(or is too long); expected an absolute directory path, as in "
                    FILE_EXAMPLE);
    return 0;
}

static void *file_open(const char *rest, const char *credentials, const nsc_config *cfg,
                       char *err, size_t errlen)
{
    (void)credentials;      /* nothing to authenticate; the directory's mode rules */
    (void)cfg;
    if (file_check(rest, err, errlen) < 0)
        return NULL;
    file_sink *fs = calloc(1, sizeof *fs);
    if (!fs) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    path_normalize(rest, fs->root, sizeof fs->root);
    return fs;
}

static void file_close(void *state)
{
    free(state);
}

static void file_describe(const void *state, const char *name, char *out, size_t outlen)
{
    const file_sink *fs = state;
    snprintf(out, outlen, "%s/%s", fs->root, name);
}

/* ---- put ---- */

/* Map errno from a write step to a result and a message naming path. */
static sink_result io_error(int e, const char *what, const char *path, char *err, size_t errlen)
{
    if (e == ENOSPC || e == EDQUOT) {
        seterr(err, errlen, "disk full writing %s: %s", path, strerror(e));
        return SINK_RETRY;
    }
    if (e == EIO) {
        seterr(err, errlen, "I/O error writing %s: %s", path, strerror(e));
        return SINK_RETRY;
    }
    seterr(err, errlen, "%s %s: %s", what, path, strerror(e));
    switch (e) {
    case EACCES: case EPERM: case EROFS: case ENOTDIR: case EISDIR:
    case ENAMETOOLONG: case ELOOP: case EMLINK:
        return SINK_PERMANENT;
    default:
        return SINK_RETRY;      /* EMFILE, ENOMEM, EINTR...: worth another try */
    }
}

/* mkdir -p dir (mode 0700), fsyncing the parent of each directory made.
 * dir is modified while working and restored. -1 with errno. */
static int mkdir_p(char *dir)
{
    if (!dir[0])
        return 0;
    if (mkdir(dir, 0700) == 0) {
        (void)fsync_parent(dir);
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    char *slash = strrchr(dir, '/');
    if (errno != ENOENT || !slash || slash == dir)
        return -1;
    *slash = '\0';
    int rc = mkdir_p(dir);
    *slash = '/';
    if (rc < 0)
        return -1;
    if (mkdir(dir, 0700) < 0)
        return errno == EEXIST ? 0 : -1;
    (void)fsync_parent(dir);
    return 0;
}

/* The paths of one put: final name, its directory, and a unique temp name. */
typedef struct put_paths {
    char final[PATH_MAX];
    char dir[PATH_MAX];
    char tmp[PATH_MAX];
} put_paths;

static int paths_make(const file_sink *fs, const char *name, put_paths *pp)
{
    unsigned int r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (unsigned int)ts.tv_nsec ^ (unsigned int)(uintptr_t)pp;
    }
    if (snprintf(pp->final, sizeof pp->final, "%s/%s", fs->root, name) >= (int)sizeof pp->final)
        return -1;
    const char *slash = strrchr(pp->final, '/');
    snprintf(pp->dir, sizeof pp->dir, "%.*s", (int)(slash - pp->final), pp->final);
    int n = snprintf(pp->tmp, sizeof pp->tmp, "%s/.tmp.%s.%ld.%08x", pp->dir, slash + 1,
                     (long)getpid(), r);
    return n >= (int)sizeof pp->tmp ? -1 : 0;
}

/* Create pp->tmp (which must not exist), write data and fsync it.
 * *created tells whether the caller must unlink it. */
static sink_result temp_write(const put_paths *pp, const void *data, size_t len, int *created,
                              char *err, size_t errlen)
{
    int fd = open(pp->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_error(errno, "cannot create", pp->final, err, errlen);
    *created = 1;
    int rc = write_full(fd, data, len);
    if (rc == 0)
        rc = fsync(fd);
    int e = errno;
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    return rc < 0 ? io_error(e, "cannot write", pp->final, err, errlen) : SINK_OK;
}

/* The object is in place, linked now (SINK_OK) or by an earlier try
 * (SINK_EXISTS): its directory entry is made durable either way, since the
 * earlier try may have been killed before its own fsync_dir(), and the
 * batch is recorded as delivered (its spool file removed) on this answer. */
static sink_result in_place(const put_paths *pp, sink_result r, char *err, size_t errlen)
{
    if (fsync_dir(pp->dir) < 0)
        return io_error(errno, "cannot sync the directory of", pp->final, err, errlen);
    return r;
}

/* link(2) the temp file to its final name; never replaces an object. */
static sink_result temp_publish(const put_paths *pp, char *err, size_t errlen)
{
    int exists = 0;
    if (link(pp->tmp, pp->final) < 0) {
        if (errno != EEXIST)
            return io_error(errno, "cannot create", pp->final, err, errlen);
        exists = 1;
    }
    return in_place(pp, exists ? SINK_EXISTS : SINK_OK, err, errlen);
}

/* Write data to an unnamed file in pp->dir (O_TMPFILE), fsync it and link
 * it to pp->final: killed at any point, the put leaves nothing behind.
 * *fallback is set when the filesystem (or a missing /proc) cannot do
 * that; the caller then uses a named temp file. */
static sink_result anon_put(const put_paths *pp, const void *data, size_t len, int *fallback,
                            char *err, size_t errlen)
{
    char proc[64];
    const char *dir = pp->dir[0] ? pp->dir : "/";
    int fd = open(dir, O_WRONLY | O_TMPFILE | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
            *fallback = 1;
        return io_error(errno, "cannot create", pp->final, err, errlen);
    }
    int rc = write_full(fd, data, len);
    if (rc == 0)
        rc = fsync(fd);
    if (rc == 0) {
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        rc = linkat(AT_FDCWD, proc, AT_FDCWD, pp->final, AT_SYMLINK_FOLLOW);
    }
    int e = errno;
    close(fd);
    if (rc < 0 && e == EEXIST)
        return in_place(pp, SINK_EXISTS, err, errlen);
    if (rc < 0 && e == ENOENT && access(dir, F_OK) == 0)
        *fallback = 1;                             /* no /proc */
    if (rc < 0)
        return io_error(e, "cannot write", pp->final, err, errlen);
    return in_place(pp, SINK_OK, err, errlen);
}

/* What every store does first: check the name, make the paths, create the
 * object's directory. SINK_OK, or the result to return. */
static sink_result put_prepare(const file_sink *fs, const char *name, put_paths *pp, char *err,
                               size_t errlen)
{
    if (sink_name_check(name, err, errlen) < 0)    /* also when called without sink_put */
        return SINK_PERMANENT;
    if (paths_make(fs, name, pp) < 0) {
        seterr(err, errlen, "object name '%s' makes too long a path", name);
        return SINK_PERMANENT;
    }
    if (mkdir_p(pp->dir) < 0)
        return io_error(errno, "cannot create directory", pp->dir, err, errlen);
    return SINK_OK;
}

static sink_result file_put(void *state, const char *name, const void *data, size_t len,
                            char *err, size_t errlen)
{
    put_paths pp;
    int created = 0, fallback = 0;
    sink_result r = put_prepare(state, name, &pp, err, errlen);
    if (r != SINK_OK)
        return r;
    r = anon_put(&pp, data, len, &fallback, err, errlen);
    if (!fallback)
        goto out;
    r = temp_write(&pp, data, len, &created, err, errlen);
    if (r == SINK_OK)
        r = temp_publish(&pp, err, errlen);
out:
    if (created)
        unlink(pp.tmp);
    return r;
}

/* link(2) a finished file (a spool file, already fsynced) to its object
 * name: the object is stored without a byte copied. Another filesystem,
 * or one without hard links, falls back to put. */
static sink_result file_link(void *state, const char *name, const char *path, int *fallback,
                             char *err, size_t errlen)
{
    put_paths pp;
    sink_result r = put_prepare(state, name, &pp, err, errlen);
    if (r != SINK_OK)
        return r;
    if (link(path, pp.final) < 0) {
        switch (errno) {
        case EEXIST:
            return in_place(&pp, SINK_EXISTS, err, errlen);
        case EXDEV: case EPERM: case EMLINK: case EOPNOTSUPP: case ENOENT:
            *fallback = 1;      /* ENOENT: put_mapped names the missing spool file */
            return SINK_RETRY;
        default:
            return io_error(errno, "cannot link", pp.final, err, errlen);
        }
    }
    return in_place(&pp, SINK_OK, err, errlen);
}

const sink_ops sink_file_ops = {
    .scheme = "file",
    .check = file_check,
    .open = file_open,
    .put = file_put,
    .link = file_link,
    .describe = file_describe,
    .close = file_close,
};
