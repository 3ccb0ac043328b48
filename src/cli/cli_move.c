/* cli_move.c - `tenant export NAME [--out FILE]` and `tenant import FILE`:
 * a tenant moved to another database exactly once (issue 20).
 *
 * The file: "NSCMOVE1", scrypt parameters (log2 N, r, p), a 16-byte salt,
 * a 12-byte nonce and the ciphertext length (8 bytes, big-endian) form a
 * 48-byte header; then AES-256-GCM ciphertext and its 16-byte tag, keyed by
 * scrypt(passphrase, salt) (EVP_PBE_scrypt, N = 2^15, r = 8, p = 1) with the
 * header as associated data. The plaintext is the token's length (4 bytes,
 * big-endian), the token, then one JSON document made by SQLite's JSON
 * functions (blobs in base64 through EVP_EncodeBlock): tenant settings,
 * streams with cursors, iterator positions and dedupe keys, undelivered batches with their
 * bodies (spool files read in), object names and pinned destinations.
 * The passphrase comes from --passphrase-file, --passphrase-env VAR or
 * $NSCOLLECT_PASSPHRASE, never argv.
 *
 * Export marks the tenant moved (disabled, moved_at, moved_export) in the
 * transaction that reads its state; the file is written to FILE.tmp and
 * fsynced before that commit and renamed after it. Import runs in one
 * transaction and records the export id, so a file is imported once.
 * Errors: exit 2 with a message, nothing written. Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "daemon/db.h"
#include "daemon/secret.h"
#include "daemon/tenant.h"

#define MAGIC "NSCMOVE1"
#define HDR_LEN 48
#define SALT_LEN 16
#define NONCE_LEN 12
#define TAG_LEN 16
#define PASS_MAX 1024
#define FILE_MAX ((size_t)1 << 31)
#define SCRYPT_LOG_N 15
#define SCRYPT_MAXMEM ((uint64_t)256 << 20)

/* ---- passphrase and encryption ---- */

typedef struct pass {
    char p[PASS_MAX + 1];
    size_t len;
} pass;

static int pass_from_file(const char *path, pass *ps)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error("cannot read passphrase file '%s': %s", path, strerror(errno)), -1;
    ssize_t n = read(fd, ps->p, PASS_MAX + 1);
    close(fd);
    if (n < 0)
        return cli_error("cannot read passphrase file '%s': %s", path, strerror(errno)), -1;
    if (n > PASS_MAX)
        return cli_error("passphrase file '%s' is larger than %d bytes", path, PASS_MAX), -1;
    ps->len = (size_t)n;
    return 0;
}

/* The passphrase from --passphrase-file, --passphrase-env or
 * $NSCOLLECT_PASSPHRASE; trailing newlines dropped; not empty. */
static int pass_read(const char *file, const char *env, pass *ps)
{
    if (file && env)
        return cli_error("give either --passphrase-file or --passphrase-env, not both"), -1;
    if (file) {
        if (pass_from_file(file, ps) < 0)
            return -1;
    } else {
        const char *var = env ? env : "NSCOLLECT_PASSPHRASE";
        const char *v = getenv(var);
        if (!v)
            return cli_error("no passphrase: give --passphrase-file FILE or --passphrase-env VAR "
                             "(or set NSCOLLECT_PASSPHRASE)%s%s%s", env ? "; " : "",
                             env ? var : "", env ? " is not set" : ""), -1;
        if (strlen(v) > PASS_MAX)
            return cli_error("the passphrase in %s is longer than %d bytes", var, PASS_MAX), -1;
        ps->len = strlen(v);
        memcpy(ps->p, v, ps->len);
    }
    while (ps->len && (ps->p[ps->len - 1] == '\n' || ps->p[ps->len - 1] == '\r'))
        ps->len--;
    if (ps->len == 0)
        return cli_error("the passphrase is empty"), -1;
    return 0;
}

static int derive(const pass *ps, const unsigned char *hdr, unsigned char key[32])
{
    uint64_t n = (uint64_t)1 << hdr[8];
    return EVP_PBE_scrypt(ps->p, ps->len, hdr + 12, SALT_LEN, n, hdr[9], hdr[10],
                          SCRYPT_MAXMEM, key, 32) == 1 ? 0 : -1;
}

/* AES-256-GCM over in (len bytes) into out, with hdr as associated data.
 * enc: tag written after the ciphertext; else checked. 0 or -1. */
static int gcm(int enc, const unsigned char key[32], const unsigned char *hdr,
               const unsigned char *in, size_t len, unsigned char *out, unsigned char *tag)
{
    int rc = -1, n = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c || len > INT32_MAX)
        goto out;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, hdr + 28, enc) != 1 ||
        EVP_CipherUpdate(c, NULL, &n, hdr, HDR_LEN) != 1 ||
        EVP_CipherUpdate(c, out, &n, in, (int)len) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + n, &n) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

static void be_put(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t be_get(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Encrypt plain into a new file path (O_EXCL, 0600, fsynced). 0 or -1. */
static int seal_file(const char *path, const pass *ps, const unsigned char *plain, size_t len)
{
    unsigned char hdr[HDR_LEN] = MAGIC, key[32], tag[TAG_LEN];
    unsigned char *ct = malloc(len ? len : 1);
    int fd = -1, rc = -1;
    hdr[8] = SCRYPT_LOG_N, hdr[9] = 8, hdr[10] = 1, hdr[11] = 0;
    be_put(hdr + 40, len, 8);
    if (!ct || RAND_bytes(hdr + 12, SALT_LEN + NONCE_LEN) != 1 || derive(ps, hdr, key) < 0 ||
        gcm(1, key, hdr, plain, len, ct, tag) < 0) {
        cli_error("cannot encrypt the export: out of memory or OpenSSL failed");
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, hdr, HDR_LEN) < 0 || write_all(fd, ct, len) < 0 ||
        write_all(fd, tag, TAG_LEN) < 0 || fsync(fd) < 0) {
        cli_error("cannot write '%s': %s", path, strerror(errno));
        if (fd >= 0)
            unlink(path);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    secret_wipe(key, sizeof key);
    free(ct);
    return rc;
}

static int read_file(const char *path, buf *b)
{
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error("cannot read '%s': %s", path, strerror(errno)), -1;
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        if (buf_append(b, chunk, (size_t)n) < 0) {
            close(fd);
            return cli_error("'%s' is too large for an export file", path), -1;
        }
    close(fd);
    if (n < 0)
        return cli_error("cannot read '%s': %s", path, strerror(errno)), -1;
    return 0;
}

/* Decrypt file path into *plain (malloc'd; caller wipes and frees). */
static int open_file(const char *path, const pass *ps, unsigned char **plain, size_t *len)
{
    buf b;
    unsigned char key[32];
    int rc = -1;
    buf_init(&b, FILE_MAX);
    *plain = NULL;
    if (read_file(path, &b) < 0)
        goto out;
    const unsigned char *h = (const unsigned char *)b.data;
    if (b.len < HDR_LEN || memcmp(h, MAGIC, 8) != 0) {
        cli_error("'%s' is not a nscollect export file", path);
        goto out;
    }
    uint64_t ct_len = be_get(h + 40, 8);
    if (ct_len != b.len - HDR_LEN - TAG_LEN || b.len < HDR_LEN + TAG_LEN) {
        cli_error("export file '%s' is truncated or damaged (%zu bytes, expected %llu)", path,
                  b.len, (unsigned long long)ct_len + HDR_LEN + TAG_LEN);
        goto out;
    }
    if (h[8] < 10 || h[8] > 20 || h[9] == 0 || h[9] > 32 || h[10] == 0 || h[10] > 16) {
        cli_error("export file '%s' has unexpected scrypt parameters", path);
        goto out;
    }
    *plain = malloc(ct_len ? ct_len : 1);
    if (!*plain || derive(ps, h, key) < 0) {
        cli_error("cannot decrypt '%s': out of memory", path);
        goto out;
    }
    if (gcm(0, key, h, h + HDR_LEN, ct_len, *plain, (unsigned char *)b.data + HDR_LEN + ct_len) < 0) {
        cli_error("cannot decrypt export file '%s': wrong passphrase, or the file was changed",
                  path);
        goto out;
    }
    *len = ct_len;
    rc = 0;
out:
    if (rc < 0 && *plain) {
        free(*plain);
        *plain = NULL;
    }
    secret_wipe(key, sizeof key);
    buf_release(&b);
    return rc;
}

/* ---- SQL functions: base64 (EVP_EncodeBlock) and spool files ---- */

static void sql_b64(sqlite3_context *c, int argc, sqlite3_value **v)
{
    (void)argc;
    int n = sqlite3_value_bytes(v[0]);
    const unsigned char *p = sqlite3_value_blob(v[0]);
    unsigned char *out = sqlite3_malloc64(4 * ((uint64_t)n / 3 + 1) + 1);
    if (!out)
        return sqlite3_result_error_nomem(c);
    int m = EVP_EncodeBlock(out, p ? p : (const unsigned char *)"", n);
    sqlite3_result_text(c, (char *)out, m, sqlite3_free);
}

static void sql_unb64(sqlite3_context *c, int argc, sqlite3_value **v)
{
    (void)argc;
    int n = sqlite3_value_bytes(v[0]);
    const unsigned char *p = sqlite3_value_text(v[0]);
    unsigned char *out = sqlite3_malloc64((uint64_t)n / 4 * 3 + 1);
    if (!p || !out || n % 4 != 0) {
        sqlite3_free(out);
        return sqlite3_result_error(c, "bad base64 in the export file", -1);
    }
    int m = EVP_DecodeBlock(out, p, n);
    if (m < 0) {
        sqlite3_free(out);
        return sqlite3_result_error(c, "bad base64 in the export file", -1);
    }
    for (int i = n - 1; i >= 0 && p[i] == '=' && m > 0; i--)
        m--;                              /* EVP_DecodeBlock counts the padding */
    sqlite3_result_blob(c, out, m, sqlite3_free);
}

/* nsc_spool(id): the body of spooled batch id (<db>.spool/<id>.ndjson). */
static void sql_spool(sqlite3_context *c, int argc, sqlite3_value **v)
{
    (void)argc;
    char path[CONFIG_PATH_MAX + 64];
    buf b;
    snprintf(path, sizeof path, "%s.spool/%lld.ndjson", (const char *)sqlite3_user_data(c),
             (long long)sqlite3_value_int64(v[0]));
    buf_init(&b, FILE_MAX);
    if (read_file(path, &b) < 0)
        sqlite3_result_error(c, "a spool file cannot be read", -1);
    else
        sqlite3_result_blob(c, b.len ? b.data : "", (int)b.len, SQLITE_TRANSIENT);
    buf_release(&b);
}

static int add_functions(sqlite3 *db, const char *db_path)
{
    int f = SQLITE_UTF8 | SQLITE_DETERMINISTIC;
    return sqlite3_create_function(db, "nsc_b64", 1, f, NULL, sql_b64, NULL, NULL) ||
           sqlite3_create_function(db, "nsc_unb64", 1, f, NULL, sql_unb64, NULL, NULL) ||
           sqlite3_create_function(db, "nsc_spool", 1, SQLITE_UTF8, (void *)db_path, sql_spool,
                                   NULL, NULL) ? -1 : 0;
}

/* ---- export ---- */

static const char export_sql[] =
    "SELECT json_object('export_id', ?2, 'exported_at', unixepoch(),"
    " 'source_db', (SELECT db_id FROM identity),"
    " 'tenant', json_object('name', t.name, 'url', t.url, 'sink', t.sink,"
    "  'sink_credentials', t.sink_credentials, 'interval_s', t.interval_s,"
    "  'lookback_s', t.lookback_s, 'overlap_s', t.overlap_s, 'page_size', t.page_size,"
    "  'max_records', t.max_records, 'window', t.window, 'enabled', t.enabled,"
    "  'created_at', t.created_at, 'api', t.api, 'requests_per_second', t.requests_per_second),"
    " 'streams', (SELECT json_group_array(json_object('name', s.name, 'created_at', s.created_at,"
    "  'not_before', s.not_before, 'fail_count', s.fail_count, 'last_error', s.last_error,"
    "  'last_error_at', s.last_error_at, 'last_ok_at', s.last_ok_at, 'first_start', s.first_start,"
    "  'conflicts', s.conflicts, 'ambiguous_retries', s.ambiguous_retries,"
    "  'cursor', c.position,"
    "  'cursor_at', c.updated_at, 'iterator', (SELECT json_object('index_name', i.index_name,"
    "  'start_epoch', i.start_epoch, 'state', i.state, 'pages', i.pages, 'resends', i.resends,"
    "  'updated_at', i.updated_at) FROM iterator i WHERE i.stream_id = s.id), 'seen', (SELECT json_group_array(json_array(k.at,"
    "  nsc_b64(k.key), k.stored_at, k.digest)) FROM seen k WHERE k.stream_id = s.id)))"
    "  FROM stream s LEFT JOIN cursor c ON c.stream_id = s.id WHERE s.tenant_id = t.id),"
    " 'outbox', (SELECT json_group_array(json_object('stream', (SELECT name FROM stream"
    "  WHERE id = o.stream_id), 'object_name', o.object_name, 'created_at', o.created_at,"
    "  'records', o.records, 'bytes', o.bytes, 'newest_at', o.newest_at,"
    "  'attempts', o.attempts, 'last_error', o.last_error, 'sink_url', o.sink_url,"
    "  'sink_credentials', o.sink_credentials, 'sink_gzip', o.sink_gzip,"
    "  'sink_maybe', o.sink_maybe, 'sent_bytes', o.sent_bytes, 'in_flight', o.in_flight,"
    "  'body', nsc_b64(CASE WHEN o.spooled THEN nsc_spool(o.id) ELSE o.body END)))"
    "  FROM (SELECT * FROM outbox WHERE tenant_id = t.id ORDER BY id) o))"
    " FROM tenant t WHERE t.id = ?1";

/* Token frame + JSON document into *out (malloc'd). */
static int export_payload(sqlite3 *db, const tenant *t, const char *export_id,
                          unsigned char **out, size_t *len)
{
    char err[512];
    int rc = -1;
    sqlite3_stmt *st = db_prepare(db, export_sql, err, sizeof err);
    if (!st)
        return cli_error("cannot read tenant '%s': %s", t->name, err), -1;
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_text(st, 2, export_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        cli_error("cannot read tenant '%s': %s", t->name, sqlite3_errmsg(db));
        goto out;
    }
    size_t jlen = (size_t)sqlite3_column_bytes(st, 0);
    *len = 4 + t->token_len + jlen;
    if (!(*out = malloc(*len))) {
        cli_error("out of memory exporting tenant '%s'", t->name);
        goto out;
    }
    be_put(*out, t->token_len, 4);
    memcpy(*out + 4, t->token, t->token_len);
    memcpy(*out + 4 + t->token_len, sqlite3_column_text(st, 0), jlen);
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

static int mark_moved(sqlite3 *db, int64_t id, const char *export_id)
{
    char err[512];
    sqlite3_stmt *st = db_prepare(db, "UPDATE tenant SET moved_at = unixepoch(), moved_export "
                                  "= ?2, enabled = 0, updated_at = unixepoch() WHERE id = ?1",
                                  err, sizeof err);
    if (!st)
        return cli_error("cannot mark the tenant moved: %s", err), -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, export_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        cli_error("cannot mark the tenant moved: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

static void new_export_id(char out[33])
{
    unsigned char r[16] = {0};
    (void)RAND_bytes(r, sizeof r);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static void sync_dir_of(const char *path)
{
    char copy[CONFIG_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* In the open transaction: check, read, mark moved, write tmp. */
static int export_in_txn(cli_ctx *ctx, sqlite3 *db, tenant *t, const pass *ps,
                         const char *tmp, const char *export_id)
{
    char err[1024];
    secret_key key = {{0}};
    unsigned char *plain = NULL;
    size_t len = 0;
    int rc = -1;
    if (db_int(db, "SELECT moved_at IS NOT NULL FROM tenant WHERE id = ?1", t->id, 0)) {
        cli_error("tenant '%s' was already exported (moved) from this database", t->name);
        goto out;
    }
    if (cli_load_key(ctx, db, &key) != 0)
        goto out;
    if (tenant_load_token(db, &key, t, err, sizeof err) < 0) {
        cli_error("%s", err);
        goto out;
    }
    if (export_payload(db, t, export_id, &plain, &len) < 0 || mark_moved(db, t->id, export_id) < 0 ||
        seal_file(tmp, ps, plain, len) < 0)
        goto out;
    rc = 0;
out:
    if (plain) {
        secret_wipe(plain, len);
        free(plain);
    }
    secret_wipe(&key, sizeof key);
    return rc;
}

static int do_export(cli_ctx *ctx, const char *name, const char *out, const pass *ps)
{
    char err[1024], tmp[CONFIG_PATH_MAX + 8], export_id[33];
    struct stat sb;
    tenant t;
    memset(&t, 0, sizeof t);
    int rc = EXIT_USAGE;
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    if (stat(out, &sb) == 0 || stat(tmp, &sb) == 0)
        return cli_error("'%s' (or '%s') already exists: give another --out", out, tmp);
    sqlite3 *db = cli_open_db(ctx);
    if (!db)
        return EXIT_USAGE;
    new_export_id(export_id);
    if (add_functions(db, ctx->db_path) < 0 || db_begin(db, err, sizeof err) < 0) {
        cli_error("cannot export from '%s': %s", ctx->db_path, sqlite3_errmsg(db));
        goto out;
    }
    if (tenant_find(db, name, &t, err, sizeof err) != 0) {
        cli_error("%s", err);
        db_rollback(db);
        goto out;
    }
    if (export_in_txn(ctx, db, &t, ps, tmp, export_id) < 0) {
        db_rollback(db);
        unlink(tmp);
        goto out;
    }
    if (db_commit(db, err, sizeof err) < 0) {
        cli_error("cannot export tenant '%s': %s (nothing changed)", name, err);
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, out) < 0) {
        cli_error("tenant '%s' is exported and marked moved, but '%s' cannot be renamed to '%s': "
                  "%s; rename it by hand", name, tmp, out, strerror(errno));
        goto out;
    }
    sync_dir_of(out);
    printf("tenant '%s' exported to '%s' (export %s); it is moved: nothing is fetched or "
           "delivered for it here any more\n", name, out, export_id);
    rc = 0;
out:
    tenant_release(&t);
    db_close(db);
    return rc;
}

/* ---- import ---- */

static const char *const import_sql[] = {
    "INSERT INTO tenant (name, url, token, token_fp, sink, sink_credentials, interval_s,"
    " lookback_s, overlap_s, page_size, max_records, window, enabled, created_at, updated_at,"
    " api, requests_per_second)"
    " SELECT j->>'name', j->>'url', x'', '', j->>'sink', j->>'sink_credentials',"
    " j->>'interval_s', j->>'lookback_s', j->>'overlap_s', j->>'page_size', j->>'max_records',"
    " j->>'window', j->>'enabled', j->>'created_at', unixepoch(), coalesce(j->>'api', 'data'),"
    " j->>'requests_per_second'"
    " FROM (SELECT ?1 -> '$.tenant' AS j)",
    "INSERT INTO stream (tenant_id, name, created_at, not_before, fail_count, last_error,"
    " last_error_at, last_ok_at, first_start, conflicts, ambiguous_retries) SELECT ?2,"
    " value->>'name', value->>'created_at', value->>'not_before', value->>'fail_count',"
    " value->>'last_error', value->>'last_error_at', value->>'last_ok_at', value->>'first_start',"
    " coalesce(value->>'conflicts', 0), coalesce(value->>'ambiguous_retries', 0)"
    " FROM json_each(?1, '$.streams')",
    "INSERT INTO cursor (stream_id, position, updated_at) SELECT s.id, j.value->>'cursor',"
    " j.value->>'cursor_at' FROM json_each(?1, '$.streams') j JOIN stream s ON"
    " s.tenant_id = ?2 AND s.name = j.value->>'name' WHERE j.value->>'cursor' IS NOT NULL",
    "INSERT INTO iterator (stream_id, index_name, start_epoch, state, pages, resends, updated_at)"
    " SELECT s.id, i->>'index_name', i->>'start_epoch', i->>'state', i->>'pages',"
    " i->>'resends', i->>'updated_at' FROM (SELECT value->>'name' AS n, value->'iterator' AS i"
    " FROM json_each(?1, '$.streams')) j JOIN stream s ON s.tenant_id = ?2 AND s.name = j.n"
    " WHERE json_type(j.i) = 'object'",
    "INSERT INTO seen (stream_id, at, key, stored_at, digest) SELECT s.id, k.value->>'$[0]',"
    " nsc_unb64(k.value->>'$[1]'), k.value->>'$[2]', k.value->>'$[3]'"
    " FROM json_each(?1, '$.streams') j"
    " JOIN stream s ON s.tenant_id = ?2 AND s.name = j.value->>'name'"
    " JOIN json_each(j.value, '$.seen') k",
    "INSERT INTO outbox (tenant_id, stream_id, object_name, created_at, records, bytes,"
    " newest_at, body, attempts, next_attempt_at, last_error, spooled, sink_url,"
    " sink_credentials, sink_gzip, sink_maybe, sent_bytes, in_flight) SELECT ?2, s.id,"
    " o.value->>'object_name',"
    " o.value->>'created_at', o.value->>'records', o.value->>'bytes', o.value->>'newest_at',"
    " nsc_unb64(o.value->>'body'), o.value->>'attempts', 0, o.value->>'last_error', 0,"
    " o.value->>'sink_url', o.value->>'sink_credentials', o.value->>'sink_gzip',"
    " o.value->>'sink_maybe', coalesce(o.value->>'sent_bytes', 0),"
    " coalesce(o.value->>'in_flight', 0) FROM json_each(?1, '$.outbox') o JOIN stream s ON"
    " s.tenant_id = ?2 AND s.name = o.value->>'stream' ORDER BY o.key",
    ("INSERT INTO imported (export_id, tenant, imported_at) SELECT ?1->>'$.export_id',"
     " ?1->>'$.tenant.name', unixepoch() WHERE ?2 > 0"),  /* (): one element (clang) */
};

static int run_sql(sqlite3 *db, const char *sql, const char *doc, size_t len, int64_t id)
{
    char err[512];
    sqlite3_stmt *st = db_prepare(db, sql, err, sizeof err);
    if (!st)
        return cli_error("cannot import: %s", err), -1;
    sqlite3_bind_text(st, 1, doc, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc < 0)
        cli_error("cannot import: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* A text answer to sql about doc, into out; "" when none. */
static void doc_text(sqlite3 *db, const char *sql, const char *doc, size_t len,
                     char *out, size_t outlen)
{
    sqlite3_stmt *st = db_prepare(db, sql, out, outlen);
    out[0] = '\0';
    if (!st)
        return;
    sqlite3_bind_text(st, 1, doc, (int)len, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* Refuse a document already imported, a name that exists, a bad shape. */
static int import_check(sqlite3 *db, const char *doc, size_t len, char *name, size_t nlen)
{
    char err[512], seen[64];
    doc_text(db, "SELECT json_valid(?1)", doc, len, seen, sizeof seen);
    if (strcmp(seen, "1") != 0)
        return cli_error("the export file's contents are not valid (not a nscollect export?)"), -1;
    doc_text(db, "SELECT ?1->>'$.tenant.name'", doc, len, name, nlen);
    if (tenant_name_check(name, err, sizeof err) < 0)
        return cli_error("the export file names no valid tenant: %s", err), -1;
    doc_text(db, "SELECT tenant FROM imported WHERE export_id = ?1->>'$.export_id'", doc, len,
             seen, sizeof seen);
    if (seen[0])
        return cli_error("this export of tenant '%s' was already imported into this database; "
                         "nothing was changed", name), -1;
    doc_text(db, "SELECT name FROM tenant WHERE name = ?1->>'$.tenant.name'", doc, len,
             seen, sizeof seen);
    if (seen[0])
        return cli_error("tenant '%s' already exists in database '%s': remove it or import elsewhere; nothing was changed",
                         name, sqlite3_db_filename(db, "main")), -1;
    return 0;
}

static int seal_token(sqlite3 *db, const secret_key *key, int64_t id, const char *tok, size_t n)
{
    char err[256], fp[32];
    unsigned char *sealed = NULL;
    size_t slen = 0;
    if (secret_seal(key, id, tok, n, &sealed, &slen) < 0)
        return cli_error("cannot seal the imported token"), -1;
    secret_fingerprint(tok, n, fp, sizeof fp);
    sqlite3_stmt *st = db_prepare(db, "UPDATE tenant SET token = ?2, token_fp = ?3 WHERE id = ?1",
                                  err, sizeof err);
    int rc = -1;
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_blob(st, 2, sealed, (int)slen, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, fp, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    }
    if (rc < 0)
        cli_error("cannot store the imported token: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    free(sealed);
    return rc;
}

/* Every statement of the import, in the open transaction. */
static int import_rows(sqlite3 *db, const secret_key *key, const char *tok, size_t toklen,
                       const char *doc, size_t len, char *name, size_t nlen)
{
    if (import_check(db, doc, len, name, nlen) < 0 || run_sql(db, import_sql[0], doc, len, 0) < 0)
        return -1;
    int64_t id = sqlite3_last_insert_rowid(db);
    for (size_t i = 1; i < sizeof import_sql / sizeof *import_sql; i++)
        if (run_sql(db, import_sql[i], doc, len, id) < 0)
            return -1;
    char want[32], got[32];
    doc_text(db, "SELECT json_array_length(?1, '$.outbox')", doc, len, want, sizeof want);
    snprintf(got, sizeof got, "%lld",
             (long long)db_int(db, "SELECT count(*) FROM outbox WHERE tenant_id = ?1", id, -1));
    if (strcmp(want, got) != 0)
        return cli_error("the export file's batches name streams it does not hold"), -1;
    return seal_token(db, key, id, tok, toklen);
}

static int do_import(cli_ctx *ctx, const char *file, const pass *ps, int any_shard)
{
    char err[1024], name[TENANT_NAME_MAX + 64] = "";
    unsigned char *plain = NULL;
    size_t len = 0;
    secret_key key = {{0}};
    int rc = EXIT_USAGE;
    if (open_file(file, ps, &plain, &len) < 0)
        return EXIT_USAGE;
    size_t toklen = len >= 4 ? (size_t)be_get(plain, 4) : 0;
    sqlite3 *db = NULL;
    if (len < 4 || toklen > len - 4) {
        cli_error("export file '%s' is damaged (its token frame is wrong)", file);
        goto out;
    }
    if (!(db = cli_open_db(ctx)) || cli_load_key(ctx, db, &key) != 0)
        goto out;
    if (add_functions(db, ctx->db_path) < 0 || db_begin(db, err, sizeof err) < 0) {
        cli_error("cannot import into '%s': %s", ctx->db_path, sqlite3_errmsg(db));
        goto out;
    }
    if (import_rows(db, &key, (char *)plain + 4, toklen, (char *)plain + 4 + toklen,
                    len - 4 - toklen, name, sizeof name) < 0 ||
        cli_check_shard(ctx, "tenant import", name, any_shard) != 0) {
        db_rollback(db);
        goto out;
    }
    if (db_commit(db, err, sizeof err) < 0) {
        cli_error("cannot import '%s': %s (nothing changed)", file, err);
        goto out;
    }
    printf("tenant '%s' imported from '%s' with %lld undelivered batches\n", name, file,
           (long long)db_int(db, "SELECT count(*) FROM outbox o JOIN tenant t ON t.id = "
                             "o.tenant_id WHERE t.name = (SELECT tenant FROM imported ORDER BY "
                             "rowid DESC LIMIT 1)", 0, 0));
    rc = 0;
out:
    secret_wipe(plain, len);
    free(plain);
    secret_wipe(&key, sizeof key);
    db_close(db);
    return rc;
}

/* ---- commands ---- */

static const char move_usage[] =
    "usage: nscollect tenant export NAME [--out FILE] [--passphrase-file F | --passphrase-env VAR]\n"
    "       nscollect tenant import FILE [--passphrase-file F | --passphrase-env VAR] [--any-shard]\n"
    "       (the passphrase defaults to $NSCOLLECT_PASSPHRASE; FILE defaults to NAME.nscexport)\n";

/* Parse argv (argv[0] = export|import): one positional, --out, passphrase. */
static int move_parse(int argc, char **argv, const char **arg, const char **out,
                      const char **pfile, const char **penv, int *any_shard)
{
    static const struct option lo[] = {
        {"out", required_argument, NULL, 'o'}, {"passphrase-file", required_argument, NULL, 'f'},
        {"passphrase-env", required_argument, NULL, 'e'}, {"help", no_argument, NULL, 'h'},
        {"any-shard", no_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'h')
            return fputs(move_usage, stdout), 1;
        if (c == '?' || (c == 'o' && argv[0][0] == 'i') || (c == 'a' && argv[0][0] == 'e'))
            return cli_error("tenant %s: unknown option or missing value (see nscollect tenant "
                             "--help)", argv[0]), fputs(move_usage, stderr), -1;
        if (c == 'a')
            *any_shard = 1;
        else
            *(c == 'o' ? out : c == 'f' ? pfile : penv) = optarg;
    }
    if (optind + 1 != argc)
        return cli_error("tenant %s takes exactly one %s", argv[0],
                         argv[0][0] == 'e' ? "NAME" : "FILE"), fputs(move_usage, stderr), -1;
    *arg = argv[optind];
    return 0;
}

int tenant_move_cmd(cli_ctx *ctx, int argc, char **argv)
{
    const char *arg = NULL, *out = NULL, *pfile = NULL, *penv = NULL;
    char def[CONFIG_PATH_MAX];
    pass ps;
    int any_shard = 0;
    int p = move_parse(argc, argv, &arg, &out, &pfile, &penv, &any_shard), rc;
    if (p != 0)
        return p > 0 ? 0 : EXIT_USAGE;
    if (pass_read(pfile, penv, &ps) < 0)
        return EXIT_USAGE;
    if (argv[0][0] == 'e') {
        char err[256];
        if (tenant_name_check(arg, err, sizeof err) < 0)
            return cli_error("%s", err);
        snprintf(def, sizeof def, "%s.nscexport", arg);
        rc = do_export(ctx, arg, out ? out : def, &ps);
    } else {
        rc = do_import(ctx, arg, &ps, any_shard);
    }
    secret_wipe(&ps, sizeof ps);
    return rc;
}
