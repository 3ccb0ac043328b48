/* sink_file.c - file:///dir sinks (sink_impl.h).
 *
 * put() writes the data to a temp file beside the final name, fsyncs it and
 * link(2)s it into place, so a reader sees either nothing or the whole
 * object, and an existing object is never overwritten (EEXIST means an
 * earlier try stored it). link() does the same with a spool file that is
 * already written and fsynced: no byte is copied. Directories are created 0700, files 0600. The
 * data is stored as given: file sinks never gzip. Below the sink's root
 * every directory is opened with openat(O_NOFOLLOW) and every file made
 * with openat/linkat relative to it: a symbolic link placed inside the
 * sink's directory (out/tenant -> /etc) is refused, never followed.
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

static void *file_open(const char *rest, const sink_dest *d, const nsc_config *cfg,
                       char *err, size_t errlen)
{
    (void)d;                /* nothing to authenticate or compress; the directory's mode rules */
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
 * For the sink's root only (the operator's path, links in it followed).
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

/* One put: the final name (for messages), the directory it goes in, open
 * below the root without following a link, and the name in it. */
typedef struct put_paths {
    char final[PATH_MAX];
    int dirfd;                 /* -1 until opened */
    const char *leaf;          /* the last component of final */
    char tmp[NAME_MAX + 1];    /* a unique temp name in dirfd */
} put_paths;

static int paths_make(const file_sink *fs, const char *name, put_paths *pp)
{
    unsigned int r = 0;
    pp->dirfd = -1;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (unsigned int)ts.tv_nsec ^ (unsigned int)(uintptr_t)pp;
    }
    if (snprintf(pp->final, sizeof pp->final, "%s/%s", fs->root, name) >= (int)sizeof pp->final)
        return -1;
    pp->leaf = strrchr(pp->final, '/') + 1;
    int n = snprintf(pp->tmp, sizeof pp->tmp, ".tmp.%.200s.%ld.%08x", pp->leaf,
                     (long)getpid(), r);
    return n >= (int)sizeof pp->tmp ? -1 : 0;
}

/* The directory comp inside dfd, created (0700) when missing, opened
 * without following a symbolic link. -1 with errno (ELOOP for a link). */
static int subdir_open(int dfd, const char *comp)
{
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    struct stat st;
    int fd = openat(dfd, comp, flags);
    if (fd < 0 && errno == ENOTDIR && fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        errno = ELOOP;
    if (fd >= 0 || errno != ENOENT)
        return fd;
    if (mkdirat(dfd, comp, 0700) < 0 && errno != EEXIST)
        return -1;
    (void)fsync(dfd);
    return openat(dfd, comp, flags);
}

/* Open pp->final's directory: the root (made if missing), then each
 * directory of the name below it, none of them a link: a link placed at
 * out/tenant cannot send the files elsewhere. -1 with errno and *where
 * set to the path that failed. */
static int dir_beneath(const file_sink *fs, const char *name, put_paths *pp, char *where,
                       size_t wlen)
{
    char root[PATH_MAX], comp[NAME_MAX + 1];
    snprintf(root, sizeof root, "%s", fs->root);
    snprintf(where, wlen, "%s", fs->root[0] ? fs->root : "/");
    if (mkdir_p(root) < 0)
        return -1;
    int dfd = open(fs->root[0] ? fs->root : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *p = name, *slash;
    while (dfd >= 0 && (slash = strchr(p, '/'))) {
        size_t n = (size_t)(slash - p);
        if (n >= sizeof comp) {
            close(dfd);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (snprintf(where, wlen, "%s/%.*s", fs->root, (int)(slash - name), name) >= (int)wlen)
            where[wlen - 1] = '\0';           /* shown cut; paths_make() checked the length */
        int next = subdir_open(dfd, comp);
        int e = errno;
        close(dfd);
        errno = e;
        dfd = next;
        p = slash + 1;
    }
    pp->dirfd = dfd;
    return dfd < 0 ? -1 : 0;
}

static void paths_release(put_paths *pp)
{
    if (pp->dirfd >= 0)
        close(pp->dirfd);
    pp->dirfd = -1;
}

/* Create pp->tmp (which must not exist), write data and fsync it.
 * *created tells whether the caller must unlink it. */
static sink_result temp_write(const put_paths *pp, const void *data, size_t len, int *created,
                              char *err, size_t errlen)
{
    int fd = openat(pp->dirfd, pp->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
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

/* What the batch is, to compare with an object already under its name:
 * its bytes in memory, or the file it is stored in. */
typedef struct batch_src {
    const void *data;
    size_t len;
    const char *path;          /* set instead of data: a spool file */
} batch_src;

#define CMP_CHUNK 65536

/* 1 when the bytes of fd from off on equal want[0, n), 0 when not, -1 error. */
static int fd_equals(int fd, off_t off, const unsigned char *want, size_t n)
{
    unsigned char chunk[CMP_CHUNK];
    while (n > 0) {
        size_t k = n < sizeof chunk ? n : sizeof chunk;
        ssize_t got = pread(fd, chunk, k, off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? -1 : 0;
        if (memcmp(chunk, want, (size_t)got) != 0)
            return 0;
        want += got, off += got, n -= (size_t)got;
    }
    return 1;
}

/* 1 when the regular file fd (of size st->st_size) holds what src holds. */
static int same_batch(int fd, const struct stat *st, const batch_src *src)
{
    if (!src->path)
        return (size_t)st->st_size == src->len ? fd_equals(fd, 0, src->data, src->len) : 0;
    int sfd = open(src->path, O_RDONLY | O_CLOEXEC);
    struct stat sst;
    int rc = sfd < 0 || fstat(sfd, &sst) < 0 ? -1
           : sst.st_dev == st->st_dev && sst.st_ino == st->st_ino ? 1   /* our own link */
           : sst.st_size != st->st_size ? 0 : 2;
    for (off_t off = 0; rc == 2 && off < sst.st_size;) {
        unsigned char chunk[CMP_CHUNK];
        ssize_t got = pread(sfd, chunk, sizeof chunk, off);
        if (got < 0 && errno == EINTR)
            continue;
        rc = got <= 0 ? -1 : fd_equals(fd, off, chunk, (size_t)got) == 1 ? 2 : 0;
        off += got > 0 ? got : 0;
    }
    if (sfd >= 0)
        close(sfd);
    return rc == 2 ? 1 : rc;
}

/* An object already under the name counts as this batch only if it is a
 * regular file holding the same bytes: anything else (a file placed there,
 * another database's batch) is a failure that names it, never a silent
 * "delivered". */
static sink_result existing_check(const put_paths *pp, const batch_src *src, char *err,
                                  size_t errlen)
{
    struct stat st;
    int fd = openat(pp->dirfd, pp->leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        seterr(err, errlen, "%s exists but is not a regular file (a symbolic link?): the "
               "batch is not counted delivered; remove it", pp->final);
        return SINK_PERMANENT;
    }
    int same = same_batch(fd, &st, src);
    int e = errno;
    close(fd);
    if (same < 0)
        return io_error(e, "cannot compare the existing", pp->final, err, errlen);
    if (!same) {
        seterr(err, errlen, "%s exists with other content (%lld bytes) than this batch: "
               "another writer uses this name; the batch is not counted delivered; move "
               "that file away to deliver it", pp->final, (long long)st.st_size);
        return SINK_PERMANENT;
    }
    return SINK_EXISTS;
}

/* The object is in place, linked now (SINK_OK) or by an earlier try
 * (SINK_EXISTS, once its content is checked): its directory entry is made
 * durable either way, since the earlier try may have been killed before its
 * own fsync, and the batch is recorded as delivered (its spool file removed)
 * on this answer. */
static sink_result in_place(const put_paths *pp, sink_result r, const batch_src *src,
                            char *err, size_t errlen)
{
    if (r == SINK_EXISTS && (r = existing_check(pp, src, err, errlen)) != SINK_EXISTS)
        return r;
    if (fsync(pp->dirfd) < 0)
        return io_error(errno, "cannot sync the directory of", pp->final, err, errlen);
    return r;
}

/* link the temp file to its final name; never replaces an object (nor
 * follows a link there: linkat() never does). */
static sink_result temp_publish(const put_paths *pp, const batch_src *src, char *err,
                                size_t errlen)
{
    int exists = 0;
    if (linkat(pp->dirfd, pp->tmp, pp->dirfd, pp->leaf, 0) < 0) {
        if (errno != EEXIST)
            return io_error(errno, "cannot create", pp->final, err, errlen);
        exists = 1;
    }
    return in_place(pp, exists ? SINK_EXISTS : SINK_OK, src, err, errlen);
}

/* Write data to an unnamed file in the object's directory (O_TMPFILE),
 * fsync it and link it to its name: killed at any point, the put leaves
 * nothing behind. *fallback is set when the filesystem (or a missing
 * /proc) cannot do that; the caller then uses a named temp file. */
static sink_result anon_put(const put_paths *pp, const void *data, size_t len, int *fallback,
                            char *err, size_t errlen)
{
    char proc[64];
    batch_src src = {.data = data, .len = len};
    int fd = openat(pp->dirfd, ".", O_WRONLY | O_TMPFILE | O_CLOEXEC, 0600);
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
        rc = linkat(AT_FDCWD, proc, pp->dirfd, pp->leaf, AT_SYMLINK_FOLLOW);
    }
    int e = errno;
    close(fd);
    if (rc < 0 && e == EEXIST)
        return in_place(pp, SINK_EXISTS, &src, err, errlen);
    if (rc < 0 && e == ENOENT && access("/proc/self/fd", F_OK) != 0)
        *fallback = 1;                             /* no /proc */
    if (rc < 0)
        return io_error(e, "cannot write", pp->final, err, errlen);
    return in_place(pp, SINK_OK, &src, err, errlen);
}

/* What every store does first: check the name, make the paths, create
 * and open the object's directory. SINK_OK, or the result to return. */
static sink_result put_prepare(const file_sink *fs, const char *name, put_paths *pp, char *err,
                               size_t errlen)
{
    char where[PATH_MAX];
    pp->dirfd = -1;
    if (sink_name_check(name, err, errlen) < 0)    /* also when called without sink_put */
        return SINK_PERMANENT;
    if (paths_make(fs, name, pp) < 0) {
        seterr(err, errlen, "object name '%s' makes too long a path", name);
        return SINK_PERMANENT;
    }
    if (dir_beneath(fs, name, pp, where, sizeof where) == 0)
        return SINK_OK;
    if (errno == ELOOP) {
        seterr(err, errlen, "%s is a symbolic link: the file sink does not follow links "
               "below its directory (remove the link, or point --sink at the real directory)",
               where);
        return SINK_PERMANENT;
    }
    return io_error(errno, "cannot create directory", where, err, errlen);
}

static sink_result file_put(void *state, const char *name, const void *data, size_t len,
                            char *err, size_t errlen)
{
    put_paths pp;
    int created = 0, fallback = 0;
    sink_result r = put_prepare(state, name, &pp, err, errlen);
    if (r != SINK_OK)
        goto out;
    r = anon_put(&pp, data, len, &fallback, err, errlen);
    if (!fallback)
        goto out;
    r = temp_write(&pp, data, len, &created, err, errlen);
    if (r == SINK_OK)
        r = temp_publish(&pp, &(batch_src){.data = data, .len = len}, err, errlen);
out:
    if (created)
        unlinkat(pp.dirfd, pp.tmp, 0);
    paths_release(&pp);
    return r;
}

/* link(2) a finished file (a spool file, already fsynced) to its object
 * name: the object is stored without a byte copied. Another filesystem,
 * or one without hard links, falls back to put. */
static sink_result file_link(void *state, const char *name, const char *path, int *fallback,
                             char *err, size_t errlen)
{
    put_paths pp;
    batch_src src = {.path = path};
    sink_result r = put_prepare(state, name, &pp, err, errlen);
    if (r != SINK_OK)
        goto out;
    if (linkat(AT_FDCWD, path, pp.dirfd, pp.leaf, 0) == 0) {
        r = in_place(&pp, SINK_OK, &src, err, errlen);
        goto out;
    }
    switch (errno) {
    case EEXIST:
        r = in_place(&pp, SINK_EXISTS, &src, err, errlen);
        break;
    case EXDEV: case EPERM: case EMLINK: case EOPNOTSUPP: case ENOENT:
        *fallback = 1;          /* ENOENT: put_mapped names the missing spool file */
        r = SINK_RETRY;
        break;
    default:
        r = io_error(errno, "cannot link", pp.final, err, errlen);
    }
out:
    paths_release(&pp);
    return r;
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
