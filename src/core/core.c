/* core — errors, logging and time helpers. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CARESYNC_VERSION
#define CARESYNC_VERSION "0.0.0"
#endif

core_status core_fail(core_error *err, core_status code, const char *field, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

const char *core_status_name(core_status code) {
    switch (code) {
    case CORE_OK: return "ok";
    case CORE_ERR_NOMEM: return "nomem";
    case CORE_ERR_IO: return "io";
    case CORE_ERR_INVALID: return "invalid";
    case CORE_ERR_NOT_FOUND: return "not_found";
    case CORE_ERR_CONFLICT: return "conflict";
    case CORE_ERR_AUTH: return "auth";
    case CORE_ERR_THROTTLED: return "throttled";
    case CORE_ERR_FORBIDDEN: return "forbidden";
    case CORE_ERR_CRYPTO: return "crypto";
    case CORE_ERR_STORAGE: return "storage";
    case CORE_ERR_VERSION: return "version";
    }
    return "unknown";
}

static core_log_level log_level = CORE_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void core_log_set_level(core_log_level level) { log_level = level; }

void core_log(core_log_level level, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level) return;
    char ts[32];
    core_format_time(core_now(), ts);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s %-5s ", ts, names[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
}

const char *core_version(void) { return CARESYNC_VERSION; }

int64_t core_now(void) { return (int64_t)time(NULL); }

double core_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
 * Hand-written because gmtime_r+strftime took the locale and timezone
 * machinery (about 4% of a records request) for a fixed UTC format. */
void core_format_time(int64_t t, char out[32]) {
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    long long y = (long long)(yoe + era * 400 + (m <= 2));
    if (y < 0 || y > 9999) {
        snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(secs / 3600), (int)(secs / 60 % 60),
                 (int)(secs % 60));
        return;
    }
    int f[6] = {(int)y, m, d, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60)};
    static const char sep[6] = {'-', '-', 'T', ':', ':', 'Z'};
    char *o = out;
    *o++ = (char)('0' + f[0] / 1000);
    *o++ = (char)('0' + f[0] / 100 % 10);
    for (int i = 0; i < 6; i++) {
        *o++ = (char)('0' + f[i] / 10 % 10);
        *o++ = (char)('0' + f[i] % 10);
        *o++ = sep[i];
    }
    *o = '\0';
}

core_status core_read_stream(FILE *f, const char *name, char **out, size_t *len, core_error *err) {
    *out = NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    if (!buf) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return core_fail(err, CORE_ERR_IO, NULL, "cannot read %s", name);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return CORE_OK;
}

core_status core_read_file(const char *path, char **out, size_t *len, core_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return core_fail(err, CORE_ERR_IO, NULL, "cannot open %s: %s", path, strerror(errno));
    core_status rc = core_read_stream(f, path, out, len, err);
    fclose(f);
    return rc;
}

core_status core_mkdirs(const char *path, core_error *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return core_fail(err, CORE_ERR_INVALID, NULL, "path too long");
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return core_fail(err, CORE_ERR_IO, NULL, "cannot create %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return core_fail(err, CORE_ERR_IO, NULL, "cannot create %s: %s", tmp, strerror(errno));
    return CORE_OK;
}

unsigned core_mode_excess(const char *path, unsigned max) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    return (unsigned)(sb.st_mode & 07777) & ~max;
}

core_status core_lock_dir(const char *dir, int *fd, core_error *err) {
    *fd = -1;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/caresync.lock", dir) >= (int)sizeof path)
        return core_fail(err, CORE_ERR_INVALID, NULL, "path too long");
    /* No O_TRUNC: the file may be another server's, whose pid it holds. */
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0) return core_fail(err, CORE_ERR_IO, NULL, "cannot open %s: %s", path, strerror(errno));
    /* flock, not fcntl: an fcntl lock is dropped when the process closes any
     * descriptor of the file, and belongs to the process, so a second open in
     * the same process would not be refused. */
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = e == EWOULDBLOCK ? pread(f, pid, sizeof pid - 1, 0) : -1;
        close(f);
        if (e != EWOULDBLOCK) return core_fail(err, CORE_ERR_IO, NULL, "cannot lock %s: %s", path, strerror(e));
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        return core_fail(err, CORE_ERR_CONFLICT, NULL,
                         "data directory %s is in use by another caresync serve%s%s (lock file %s); "
                         "one data directory serves one process",
                         dir, pid[0] ? ", pid " : "", pid, path);
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    /* The pid is only for the message above; failing to write it is harmless. */
    if (ftruncate(f, 0) == 0) {
        ssize_t w = pwrite(f, line, (size_t)len, 0);
        (void)w;
    }
    *fd = f;
    return CORE_OK;
}

void core_unlock_dir(int fd) {
    if (fd >= 0) close(fd);
}
