/* write_bench — committed ledger writes per second through HTTP (issue 15):
 * POST /api/consents against a real `caresync serve`, over N keep-alive
 * connections with one request in flight on each (HTTP/1.1 without
 * pipelining), driven by one epoll loop.
 *
 *   write_bench [--bin PATH] [--url http://127.0.0.1:PORT] [--conns N]
 *               [--users U] [--seconds S] [--threads T]
 *
 * With --bin (default ./build-bench/caresync) it starts its own server on a
 * fresh data directory (port 0, --threads T, the per-address limit lifted
 * above N) and stops it with SIGTERM at the end; with --url it measures a
 * running server (sign-ups must be allowed). U users sign up; each makes
 * one consent first (that one registers the wallet), then connection i
 * writes as user i % U for S seconds. Printed: committed tx/s (201 answers
 * per second, each one a consent in a durably committed block), blocks and
 * transactions per block over the run (from /api/health: height and
 * tree_size), latency p50/p99, and any non-201 answer. Exit 1 on any
 * non-201 answer or transport error.
 *
 * To compare with the synchronous path, point --bin at a binary built from
 * before the deferred answers (bench/README.md, "HTTP writes"). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int port;

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A response parsed from buf[0..len): status, where the body starts and its
 * length. Returns the bytes of the whole response once complete, else 0. */
static size_t parse(const char *buf, size_t len, int *status, size_t *body_at, size_t *body_len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - buf) + 4;
    *status = atoi(buf + 9);
    const char *cl = memmem(buf, head, "\r\nContent-Length:", 17);
    if (!cl) cl = memmem(buf, head, "\r\ncontent-length:", 17);
    size_t n = cl ? strtoul(cl + 17, NULL, 10) : 0;
    if (len < head + n) return 0;
    *body_at = head;
    *body_len = n;
    return head + n;
}

/* One blocking request on a fresh connection (set-up only). out gets the
 * whole response, NUL-terminated. */
static int request(const char *req, char *out, size_t cap) {
    int fd = dial();
    size_t n = strlen(req), off = 0;
    while (off < n) {
        ssize_t w = write(fd, req + off, n - off);
        if (w <= 0) {
            perror("write");
            exit(1);
        }
        off += (size_t)w;
    }
    size_t len = 0;
    int status = 0;
    size_t at, bl;
    while (!parse(out, len, &status, &at, &bl)) {
        ssize_t r = read(fd, out + len, cap - 1 - len);
        if (r <= 0) {
            fprintf(stderr, "write_bench: connection closed during set-up\n");
            exit(1);
        }
        len += (size_t)r;
        out[len] = '\0';
    }
    close(fd);
    return status;
}

typedef struct {
    char cookie[128], csrf[128];
} user;

static const char consent_body[] = "{\"scope\":[\"symptoms\"],\"purpose\":\"research\",\"expires_in_days\":30}";

static int build_post(char *out, size_t cap, const user *u) {
    return snprintf(out, cap,
                    "POST /api/consents HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: cs_session=%s\r\nX-CSRF-Token: %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                    u->cookie, u->csrf, sizeof consent_body - 1, consent_body);
}

static void health(long long *height, long long *tree) {
    char out[8192];
    if (request("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", out, sizeof out) != 200) {
        fprintf(stderr, "write_bench: /api/health failed: %s\n", out);
        exit(1);
    }
    const char *h = strstr(out, "\"height\":"), *t = strstr(out, "\"tree_size\":");
    *height = h ? atoll(h + 9) : -1;
    *tree = t ? atoll(t + 12) : -1;
}

typedef struct {
    int fd;
    char req[1024];
    size_t req_len, sent;
    char buf[16384];
    size_t len;
    double t0;
} conn;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *bin = "./build-bench/caresync", *url = NULL;
    int nconns = 64, nusers = 16, threads = 2;
    double seconds = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bin") && i + 1 < argc)
            bin = argv[++i];
        else if (!strcmp(argv[i], "--url") && i + 1 < argc)
            url = argv[++i];
        else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
            nconns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--users") && i + 1 < argc)
            nusers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--bin PATH | --url http://127.0.0.1:PORT] [--conns N] [--users U] "
                    "[--seconds S] [--threads T]\n",
                    argv[0]);
            return 2;
        }
    }
    if (nconns < 1 || nusers < 1 || seconds <= 0) return 2;
    signal(SIGPIPE, SIG_IGN);

    pid_t server = 0;
    char dir[] = "/tmp/write-bench.XXXXXX";
    if (url) {
        const char *p = strrchr(url, ':');
        port = p ? atoi(p + 1) : 0;
    } else {
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
        int pipefd[2];
        if (pipe(pipefd)) return 1;
        char th[16], lim[16];
        snprintf(th, sizeof th, "%d", threads);
        snprintf(lim, sizeof lim, "%d", nconns + 16);
        server = fork();
        if (server == 0) {
            dup2(pipefd[1], 1);
            close(pipefd[0]);
            execl(bin, bin, "serve", "--port", "0", "--data-dir", dir, "--log-level", "warn", "--threads", th,
                  "--max-connections-per-ip", lim, "--signups-per-window", "100000", (char *)NULL);
            perror("exec");
            _exit(127);
        }
        close(pipefd[1]);
        FILE *f = fdopen(pipefd[0], "r");
        char line[512];
        while (fgets(line, sizeof line, f)) {
            const char *m = strstr(line, "listening on http://127.0.0.1:");
            if (m) {
                port = atoi(m + strlen("listening on http://127.0.0.1:"));
                break;
            }
        }
        if (!port) {
            fprintf(stderr, "write_bench: %s did not start\n", bin);
            return 1;
        }
    }

    /* Users, and each one's first consent (it registers the wallet). */
    user *users = calloc((size_t)nusers, sizeof *users);
    static char out[65536], req[2048];
    for (int i = 0; i < nusers; i++) {
        char body[128];
        int bl = snprintf(body, sizeof body, "{\"username\":\"bench%d_%d\",\"password\":\"bench-password-123\"}", i,
                          (int)getpid());
        snprintf(req, sizeof req,
                 "POST /api/auth/signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                 bl, body);
        int st = request(req, out, sizeof out);
        const char *c = strstr(out, "cs_session="), *t = strstr(out, "\"csrf_token\":\"");
        if (st != 201 || !c || !t) {
            fprintf(stderr, "write_bench: sign-up failed (%d): %s\n", st, out);
            return 1;
        }
        sscanf(c + 11, "%127[^;\r\n]", users[i].cookie);
        sscanf(t + 14, "%127[^\"]", users[i].csrf);
        build_post(req, sizeof req, &users[i]);
        st = request(req, out, sizeof out);
        if (st != 201) {
            fprintf(stderr, "write_bench: first consent failed (%d): %s\n", st, out);
            return 1;
        }
    }

    /* The run. */
    int ep = epoll_create1(0);
    conn *cs = calloc((size_t)nconns, sizeof *cs);
    size_t lat_cap = 1u << 20, nlat = 0;
    double *lat = malloc(lat_cap * sizeof *lat);
    long long h0, t0, h1, t1, ok = 0, bad = 0;
    health(&h0, &t0);
    double start = now(), stop = start + seconds;
    for (int i = 0; i < nconns; i++) {
        conn *c = &cs[i];
        c->fd = dial();
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        c->req_len = (size_t)build_post(c->req, sizeof c->req, &users[i % nusers]);
        c->t0 = now();
        ssize_t w = write(c->fd, c->req, c->req_len);
        c->sent = w > 0 ? (size_t)w : 0;
        struct epoll_event ev = {.events = EPOLLIN | (c->sent < c->req_len ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    int open_conns = nconns;
    while (open_conns > 0) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (c->sent < c->req_len) {
                ssize_t w = write(c->fd, c->req + c->sent, c->req_len - c->sent);
                if (w > 0) c->sent += (size_t)w;
                if (c->sent == c->req_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                fprintf(stderr, "write_bench: the server closed a connection\n");
                bad++;
                close(c->fd);
                open_conns--;
                continue;
            }
            c->len += (size_t)r;
            int status;
            size_t at, bl, whole = parse(c->buf, c->len, &status, &at, &bl);
            if (!whole) continue;
            double t = now();
            if (status == 201) {
                ok++;
                if (nlat < lat_cap) lat[nlat++] = t - c->t0;
            } else {
                if (bad < 5) fprintf(stderr, "write_bench: %d %.*s\n", status, (int)bl, c->buf + at);
                bad++;
            }
            memmove(c->buf, c->buf + whole, c->len - whole);
            c->len -= whole;
            if (t >= stop) {
                close(c->fd);
                open_conns--;
                continue;
            }
            c->t0 = t;
            ssize_t w = write(c->fd, c->req, c->req_len);
            c->sent = w > 0 ? (size_t)w : 0;
            if (c->sent < c->req_len) {
                struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
        }
    }
    double elapsed = now() - start;
    health(&h1, &t1);
    qsort(lat, nlat, sizeof *lat, cmp_double);
    long long blocks = h1 - h0, txs = t1 - t0;
    printf("POST /api/consents: %d connections, %d users, %d server threads, %.1f s\n", nconns, nusers, threads,
           elapsed);
    printf("  committed: %lld (%.0f tx/s), non-201: %lld\n", ok, (double)ok / elapsed, bad);
    printf("  blocks: %lld, tx per block: %.1f (ledger grew by %lld tx)\n", blocks,
           blocks > 0 ? (double)txs / (double)blocks : 0.0, txs);
    if (nlat)
        printf("  latency ms: p50 %.1f, p99 %.1f, max %.1f\n", 1e3 * lat[nlat / 2], 1e3 * lat[nlat * 99 / 100],
               1e3 * lat[nlat - 1]);
    if (server) {
        kill(server, SIGTERM);
        int st;
        waitpid(server, &st, 0);
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "write_bench: could not remove %s\n", dir);
    }
    free(lat);
    free(cs);
    free(users);
    close(ep);
    return bad ? 1 : 0;
}
