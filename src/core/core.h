/* core — errors, logging, configuration and small shared helpers.
 *
 * Library modules report failures through a core_error filled by the callee;
 * they never print. Only the cli and http layers log. */
#ifndef CARESYNC_CORE_H
#define CARESYNC_CORE_H

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Status codes shared by every module. 0 is success. */
typedef enum {
    CORE_OK = 0,
    CORE_ERR_NOMEM,     /* allocation failed */
    CORE_ERR_IO,        /* file or socket error */
    CORE_ERR_INVALID,   /* input failed validation (field says which) */
    CORE_ERR_NOT_FOUND, /* no such object (or not visible to the caller) */
    CORE_ERR_CONFLICT,  /* uniqueness violated, e.g. username taken */
    CORE_ERR_AUTH,      /* bad credentials / session */
    CORE_ERR_THROTTLED, /* too many attempts; retry_after says when */
    CORE_ERR_FORBIDDEN, /* role may not do this */
    CORE_ERR_CRYPTO,    /* authentication tag mismatch, KDF failure */
    CORE_ERR_STORAGE,   /* SQLite failure */
    CORE_ERR_VERSION,   /* database schema newer than this binary */
} core_status;

/* Caller-owned error detail. Zero-initialise it; callees fill it on failure. */
typedef struct {
    core_status code;
    char field[48];    /* offending input field, or "" */
    char message[240]; /* human-readable, safe to show to the user */
    int retry_after;   /* seconds, for CORE_ERR_THROTTLED */
} core_error;

/* Record an error and return its code, so callers can `return core_fail(...)`. */
core_status core_fail(core_error *err, core_status code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *core_status_name(core_status code);

/* Logging (used by cli/http only). Level names: debug, info, warn, error. */
typedef enum { CORE_LOG_DEBUG, CORE_LOG_INFO, CORE_LOG_WARN, CORE_LOG_ERROR } core_log_level;
void core_log_set_level(core_log_level level);
void core_log(core_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *core_version(void);
/* Wall-clock seconds since the epoch; monotonic seconds since an arbitrary point. */
int64_t core_now(void);
double core_monotonic(void);
/* Format t (UTC) as RFC 3339 into out (>= 21 bytes). */
void core_format_time(int64_t t, char out[32]);
/* Read a whole file; *out is malloc'd and NUL-terminated, caller frees. */
core_status core_read_file(const char *path, char **out, size_t *len, core_error *err);
/* The same for an open stream (stdin, say) read to its end; name is for the
 * error message. The stream stays open: the caller owns it. */
core_status core_read_stream(FILE *f, const char *name, char **out, size_t *len, core_error *err);

/* json_dumps (jansson flags), but NULL rather than a damaged text when an
 * allocation fails mid-way (jansson 2.14 can return a text with a key
 * missing; see json.c). Use it for every JSON text the service keeps or
 * sends. malloc'd. */
struct json_t;
char *core_json_dumps(const struct json_t *json, size_t flags);

/* Parsing JSON: use these, never json_loads/json_loadb/json_loadf/
 * json_load_file. jansson 2.14 ignores some failed allocations while it
 * parses (a string's byte dropped when its buffer cannot grow:
 * "atopic_dermatitis" read as "atopic_dermatiis", and accepted). Core gives
 * jansson allocators that note a failure in a thread-local flag; a parse
 * that met one returns NULL with CORE_ERR_NOMEM, so the result is the exact
 * value or nothing. Other failures: CORE_ERR_INVALID (not JSON; message
 * "malformed JSON at line L column C: ...") or, for the file, CORE_ERR_IO.
 * flags are jansson's (JSON_REJECT_DUPLICATES ...). jerr and err may be
 * NULL; jerr is filled as jansson fills it, with "out of memory" (or the
 * I/O error) as its text on those failures. The result is a new reference
 * the caller owns.
 *
 * core_json_init() installs the allocators (json_set_alloc_funcs) once per
 * process; the parsers call it themselves, and main calls it before any
 * thread starts so the install never races another thread's allocation.
 * core_json_malloc/core_json_free are those allocators: plain malloc/free
 * plus the flag, for a test harness that must install its own
 * (tests/unit/failalloc.c) to keep the flag working. */
struct json_error_t;
void core_json_init(void);
void *core_json_malloc(size_t n);
void core_json_free(void *p);
struct json_t *core_json_loadb(const char *buf, size_t len, size_t flags, struct json_error_t *jerr, core_error *err);
/* s NUL-terminated (NULL: CORE_ERR_INVALID). */
struct json_t *core_json_loads(const char *s, size_t flags, struct json_error_t *jerr, core_error *err);
/* A whole stream (stdin, say; left open) or file; name is for messages. */
struct json_t *core_json_loadf(FILE *f, const char *name, size_t flags, struct json_error_t *jerr, core_error *err);
struct json_t *core_json_load_file(const char *path, size_t flags, struct json_error_t *jerr, core_error *err);
/* Make a directory and its parents (mode 0700). */
core_status core_mkdirs(const char *path, core_error *err);

/* Little-endian fields of file formats (nn model files), read and written
 * byte by byte so a file means the same on any host. Floats are IEEE-754
 * binary32 bit patterns, moved as a 32-bit integer. */
static inline void core_put_le32(uint8_t *out, uint32_t v) {
    out[0] = (uint8_t)v, out[1] = (uint8_t)(v >> 8), out[2] = (uint8_t)(v >> 16), out[3] = (uint8_t)(v >> 24);
}
static inline uint32_t core_get_le32(const uint8_t *in) {
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}
static inline void core_put_lef32(uint8_t *out, float f) {
    uint32_t v;
    _Static_assert(sizeof f == sizeof v, "float is binary32");
    __builtin_memcpy(&v, &f, sizeof v);
    core_put_le32(out, v);
}
static inline float core_get_lef32(const uint8_t *in) {
    uint32_t v = core_get_le32(in);
    float f;
    __builtin_memcpy(&f, &v, sizeof f);
    return f;
}

/* The data directory is private to the service's user: the directory and
 * its subdirectories 0700, its files 0600 (the process sets umask 077 before
 * writing; see cli/main.c). core_mode_excess() gives the permission bits of
 * path beyond max (0 when there are none or path does not exist), so callers
 * can warn about an existing directory made by something else. */
unsigned core_mode_excess(const char *path, unsigned max);

/* One data directory, one server: take an exclusive flock() on
 * DIR/caresync.lock (created 0600) without waiting. On success *fd is the
 * open lock file (close-on-exec); the lock lasts until it is closed or the
 * process ends, so the caller keeps it open for its lifetime and releases
 * it with core_unlock_dir(). The holder's pid is written into the file for
 * the message a second taker gets: CORE_ERR_CONFLICT. */
core_status core_lock_dir(const char *dir, int *fd, core_error *err);
void core_unlock_dir(int fd);

/* Service configuration. core_config_defaults() gives the embedded defaults:
 * 127.0.0.1:8080, data in ./var, web assets from the source tree. Strings are
 * borrowed (argv or literals), never freed by core. */
typedef struct {
    const char *host;
    int port;
    const char *data_dir;
    const char *web_dir;
    const char *iso_codes_dir;
    const char *tls_cert;
    const char *tls_key;
    int threads;
    size_t max_body;
    int session_ttl;                /* seconds */
    int login_max_failures;         /* per (account, client address) within login_window */
    int login_max_failures_ip;      /* per client address within login_window */
    int login_window;               /* seconds */
    int login_max_failures_account; /* per account from all addresses within login_account_window */
    int login_account_window;       /* seconds */
    int signup_per_window;          /* new accounts per client address per signup_window */
    int signup_window;              /* seconds */
    const char *model_path;         /* screening model file (a missing one disables screening) */
    const char *backbone_dir;       /* where the model's pretrained backbone is (../shared/models) */
    int screen_per_window;          /* photos per account per screen_window */
    int screen_window;              /* seconds */
    int surveil_k;                  /* small-cell threshold of every release (11) */
    double surveil_budget;          /* total epsilon an organisation may spend (10) */
    int surveil_seal_delay;         /* seconds after a week ends before it is released (86400) */
    int surveil_reward_batch;       /* contributions' rewards go to the ledger in batches of at least this (11) */
    int market_daily_cap;           /* tokens one person may earn from data requests per UTC day (200) */
    int share_daily_cap;            /* tokens one person may earn from shared screening results per UTC day (50) */
    int share_photo_distance;       /* contributed photos this close (bits of 64) are the same photo (10) */
    /* Connection limits (see docs/API.md "Limits"): what one client, or many
     * slow ones, can hold of the server. */
    int max_connections;    /* all clients together (2000) */
    int per_ip_connections; /* from one client address (64) */
    int head_timeout;       /* seconds to receive a whole request head (10) */
    int idle_timeout;       /* seconds without a byte before a connection is closed (30) */
    int min_body_rate;      /* bytes/s a body must average once head_timeout has passed (1024) */
} core_config;

void core_config_defaults(core_config *cfg);

#endif
