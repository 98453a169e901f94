/* core — errors, logging and time helpers. */
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

void core_format_time(int64_t t, char out[32]) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

core_status core_read_file(const char *path, char **out, size_t *len, core_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return core_fail(err, CORE_ERR_IO, NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory"); }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory"); }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) { free(buf); return core_fail(err, CORE_ERR_IO, NULL, "cannot read %s", path); }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return CORE_OK;
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
