/* A fake Cocaine engine in C, for measuring a worker's own cost per request.
 *
 * bench/worker_floor.py compiles this file with `cc -O2` into a temporary
 * directory and runs it; it is not part of the package. A Python engine costs
 * more CPU per request than the worker it drives, so it hides the worker's cost
 * (docs/worker.md, "Benchmark"); this one spends well under a microsecond.
 *
 * What it does (PROTOCOL.md §2.4 for the A wire, §3.3-3.4 for B):
 *   - listens on a UNIX socket in a fresh temporary directory and starts the
 *     worker command with the runtime's flags (sorted-map order):
 *       --app bench --endpoint SOCK --locator 127.0.0.1:10053 [--protocol 1] --uuid U
 *   - pins itself and the worker to different CPUs (sched_setaffinity);
 *   - waits for the handshake, answers every heartbeat at once;
 *   - keeps W sessions in flight: each is invoke(event) + one chunk of S bytes
 *     + choke (A: [3,S,[ev]] [4,S,[data]] [6,S,[]]; B: [ch,0,[ev]] [ch,0,[data]]
 *     [ch,2,[]]), written from a pre-encoded payload, all new sessions of one
 *     read in one write;
 *   - parses the worker's replies by msgpack frame boundaries; a session ends
 *     on the worker's choke/close (or a B error); with --verify every echoed
 *     byte is compared, otherwise the echoed length is;
 *   - with --payload-file F the chunk is F's bytes instead (an HTTP request
 *     envelope, for bench/http_apps.py --driver c), and --expect-prefix HEX
 *     replaces the echo checks: a session is good when the first chunk of its
 *     reply starts with those bytes (the head's msgpack [status, ...]);
 *   - runs --warmup sessions, then N measured ones, and prints one JSON line:
 *     req/s, p50/p99 latency, worker CPU us/request (/proc/PID/stat) and its
 *     own CPU us/request (getrusage);
 *   - sends terminate and waits for the worker to exit (SIGKILL after 3 s).
 *
 * usage: floor_engine [--proto 0|1] [-n N] [-s S] [-w W] [--warmup M]
 *                     [--event NAME] [--verify] [--engine-cpu C] [--worker-cpu C]
 *                     [--term-timeout SECONDS] [--payload-file F --expect-prefix HEX]
 *                     -- WORKER_CMD [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int proto = 0;            /* 0 = generation A (0.11), 1 = B (0.12, node::v2) */
static long n_measured = 100000, n_warmup = 5000;
static long width = 1;
static size_t size = 16;
static int verify = 0;
static int engine_cpu = 0, worker_cpu = 1;
static const char *event = "echo";
static const char *payload_file = NULL;    /* the chunk's bytes, instead of generated ones */
static unsigned char expect[16];           /* HTTP mode: what every reply's first chunk starts with */
static size_t expect_len;
static int http_mode;
static double term_timeout = 3.0;          /* seconds the worker gets to exit after the terminate */
static char **cmd;

static pid_t child = -1;
static char sock_dir[64], sock_path[108];

static void die(const char *what) {
    fprintf(stderr, "floor_engine: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    if (child > 0) kill(child, SIGKILL);
    if (sock_path[0]) unlink(sock_path);
    if (sock_dir[0]) rmdir(sock_dir);
    exit(1);
}

static void on_signal(int sig) { /* interrupted: take the worker and the socket along (async-signal-safe calls) */
    if (child > 0) kill(child, SIGKILL);
    if (sock_path[0]) unlink(sock_path);
    if (sock_dir[0]) rmdir(sock_dir);
    _exit(128 + sig);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static double proc_cpu_s(pid_t pid) { /* utime + stime of /proc/PID/stat, fields 14 and 15 */
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0.0;
    ssize_t k = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (k <= 0) return 0.0;
    buf[k] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0.0;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return 0.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ------------------------------------------------------------------ msgpack */
static size_t put_uint(unsigned char *p, uint64_t v) {
    if (v < 0x80) { p[0] = (unsigned char)v; return 1; }
    if (v < 0x100) { p[0] = 0xcc; p[1] = (unsigned char)v; return 2; }
    if (v < 0x10000) { p[0] = 0xcd; p[1] = v >> 8; p[2] = v & 0xff; return 3; }
    if (v < 0x100000000ULL) {
        p[0] = 0xce; p[1] = v >> 24; p[2] = (v >> 16) & 0xff; p[3] = (v >> 8) & 0xff; p[4] = v & 0xff; return 5;
    }
    p[0] = 0xcf;
    for (int i = 0; i < 8; i++) p[1 + i] = (v >> (56 - 8 * i)) & 0xff;
    return 9;
}

static size_t put_raw(unsigned char *p, const void *data, size_t len) { /* old-spec raw only (§1.2) */
    size_t h;
    if (len < 32) { p[0] = 0xa0 | len; h = 1; }
    else if (len < 0x10000) { p[0] = 0xda; p[1] = len >> 8; p[2] = len & 0xff; h = 3; }
    else { p[0] = 0xdb; p[1] = len >> 24; p[2] = (len >> 16) & 0xff; p[3] = (len >> 8) & 0xff; p[4] = len & 0xff; h = 5; }
    memcpy(p + h, data, len);
    return h + len;
}

static uint64_t be(const unsigned char *p, int k) {
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = (v << 8) | p[i];
    return v;
}

/* Skip one value: returns the end, NULL if incomplete, (unsigned char*)1 if malformed. */
#define BAD ((const unsigned char *)1)
static const unsigned char *skip(const unsigned char *p, const unsigned char *end, int depth) {
    if (p >= end) return NULL;
    if (depth > 32) return BAD;
    unsigned c = *p++;
    uint64_t items = 0, len = 0;
    if (c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) return p;
    if ((c & 0xe0) == 0xa0) { len = c & 0x1f; goto bytes; }
    if ((c & 0xf0) == 0x90) { items = c & 0x0f; goto array; }
    if ((c & 0xf0) == 0x80) { items = 2 * (uint64_t)(c & 0x0f); goto array; }
    switch (c) {
    case 0xcc: case 0xd0: len = 1; goto bytes;
    case 0xcd: case 0xd1: len = 2; goto bytes;
    case 0xce: case 0xd2: case 0xca: len = 4; goto bytes;
    case 0xcf: case 0xd3: case 0xcb: len = 8; goto bytes;
    case 0xd9: case 0xc4: if (end - p < 1) return NULL; len = be(p, 1); p += 1; goto bytes;
    case 0xda: case 0xc5: if (end - p < 2) return NULL; len = be(p, 2); p += 2; goto bytes;
    case 0xdb: case 0xc6: if (end - p < 4) return NULL; len = be(p, 4); p += 4; goto bytes;
    case 0xdc: if (end - p < 2) return NULL; items = be(p, 2); p += 2; goto array;
    case 0xdd: if (end - p < 4) return NULL; items = be(p, 4); p += 4; goto array;
    case 0xde: if (end - p < 2) return NULL; items = 2 * be(p, 2); p += 2; goto array;
    case 0xdf: if (end - p < 4) return NULL; items = 2 * be(p, 4); p += 4; goto array;
    default: return BAD; /* ext and the reserved byte: never on this wire */
    }
bytes:
    if ((uint64_t)(end - p) < len) return NULL;
    return p + len;
array:
    while (items--) {
        p = skip(p, end, depth + 1);
        if (p == NULL || p == BAD) return p;
    }
    return p;
}

/* A non-negative integer; returns its end, NULL if incomplete, BAD if not one. */
static const unsigned char *get_uint(const unsigned char *p, const unsigned char *end, uint64_t *v) {
    if (p >= end) return NULL;
    unsigned c = *p;
    int k;
    if (c < 0x80) { *v = c; return p + 1; }
    switch (c) { case 0xcc: k = 1; break; case 0xcd: k = 2; break; case 0xce: k = 4; break; case 0xcf: k = 8; break;
    default: return BAD; }
    if (end - p < 1 + k) return NULL;
    *v = be(p + 1, k);
    return p + 1 + k;
}

/* A raw (or str8/bin, read as raw): data and length; NULL if not a raw. */
static const unsigned char *get_raw(const unsigned char *p, size_t *len) {
    unsigned c = *p;
    if ((c & 0xe0) == 0xa0) { *len = c & 0x1f; return p + 1; }
    if (c == 0xd9 || c == 0xc4) { *len = be(p + 1, 1); return p + 2; }
    if (c == 0xda || c == 0xc5) { *len = be(p + 1, 2); return p + 3; }
    if (c == 0xdb || c == 0xc6) { *len = be(p + 1, 4); return p + 5; }
    return NULL;
}

/* ------------------------------------------------------------------ state */
static int fd = -1;
static unsigned char *out;                 /* pending output */
static size_t out_len, out_off, out_cap;
static unsigned char *in;                  /* unparsed input */
static size_t in_len, in_cap;
static unsigned char *payload;             /* the chunk data */
static size_t ev_len, data_len;
static unsigned char *ev_enc, *data_enc;   /* pre-encoded args: "91 <raw event>", "91 <raw data>" */

static long total, next_idx, completed, inflight, phase_end;
static uint64_t first_sid;
static uint32_t *got;                      /* echoed bytes per session */
static unsigned char *state;               /* 0 new, 1 in flight, 2 done */
static double *sent_at;
static float *lat;                         /* latency of measured sessions, seconds */
static long n_lat;
static long bad, errors, heartbeats;
static int handshaken, worker_terminated;
static char bad_detail[256];

static void out_reserve(size_t more) {
    if (out_off && out_off == out_len) out_off = out_len = 0;
    if (out_len + more <= out_cap) return;
    if (out_off) { memmove(out, out + out_off, out_len - out_off); out_len -= out_off; out_off = 0; }
    while (out_len + more > out_cap) out_cap = out_cap ? out_cap * 2 : 1 << 16;
    out = realloc(out, out_cap);
    if (!out) die("out of memory");
}

static void put_control(int type, int with_args) { /* heartbeat reply / terminate */
    out_reserve(64);
    unsigned char *p = out + out_len;
    if (proto) { *p++ = 0x93; *p++ = 0x01; *p++ = (unsigned char)type; }
    else { *p++ = 0x93; *p++ = (unsigned char)type; *p++ = 0x00; }
    if (with_args) { *p++ = 0x92; *p++ = 0x01; p += put_raw(p, "benchmark finished", 18); }
    else *p++ = 0x90;
    out_len = p - out;
}

/* Issue new sessions until W are in flight or the phase is issued: one buffer, one write. */
static void pump(double t) {
    long k = width - inflight;
    if (k > phase_end - next_idx) k = phase_end - next_idx;
    if (k <= 0) return;
    out_reserve((size_t)k * (3 * 12 + ev_len + data_len));
    unsigned char *p = out + out_len;
    unsigned char t_invoke = proto ? 0 : 3, t_chunk = proto ? 0 : 4, t_choke = proto ? 2 : 6;
    for (; k > 0; k--) {
        long idx = next_idx++;
        unsigned char sid[9];
        size_t sl = put_uint(sid, first_sid + (uint64_t)idx);
        /* A: [type, session, args]; B: [channel, type, args] */
#define HEAD(T) do { *p++ = 0x93; if (proto) { memcpy(p, sid, sl); p += sl; *p++ = (T); } \
                     else { *p++ = (T); memcpy(p, sid, sl); p += sl; } } while (0)
        HEAD(t_invoke); memcpy(p, ev_enc, ev_len); p += ev_len;
        HEAD(t_chunk); memcpy(p, data_enc, data_len); p += data_len;
        HEAD(t_choke); *p++ = 0x90;
#undef HEAD
        state[idx] = 1;
        sent_at[idx] = t;
        inflight++;
    }
    out_len = p - out;
}

static void session_done(long idx, double t, int error) {
    if (state[idx] != 1) return;
    state[idx] = 2;
    inflight--;
    completed++;
    if (error) errors++;
    else if (http_mode) {
        if (got[idx] != 1) {
            bad++;
            if (!bad_detail[0]) snprintf(bad_detail, sizeof bad_detail, "session %ld: no reply with the expected head", idx);
        }
    } else if (got[idx] != size) {
        bad++;
        if (!bad_detail[0]) snprintf(bad_detail, sizeof bad_detail, "session %ld echoed %u of %zu bytes", idx, got[idx], size);
    }
    if (idx >= n_warmup) lat[n_lat++] = (float)(t - sent_at[idx]);
}

static void session_chunk(long idx, const unsigned char *data, size_t len) {
    if (state[idx] != 1) return;
    if (http_mode) { /* got: 0 nothing yet, 1 a good head, all ones a bad one */
        if (got[idx] == 0) got[idx] = len >= expect_len && memcmp(data, expect, expect_len) == 0 ? 1 : 0xffffffffu;
        return;
    }
    if (verify && (got[idx] + len > size || memcmp(data, payload + got[idx], len) != 0)) {
        if (!bad_detail[0]) snprintf(bad_detail, sizeof bad_detail, "session %ld: echoed bytes differ at %u", idx, got[idx]);
        got[idx] = 0xffffffffu;  /* counted as bad at its end */
        return;
    }
    got[idx] += len;
}

/* One frame from the worker, [a, b, args(, headers)] with args at p..end. */
static void frame(uint64_t a, uint64_t b, const unsigned char *args, const unsigned char *args_end, double t) {
    uint64_t type = proto ? b : a, sid = proto ? a : b;
    size_t nargs = (*args & 0xf0) == 0x90 ? (*args & 0x0f) : 16;
    if ((proto && sid == 1) || (!proto && sid == 0)) { /* control */
        if (proto ? (type == 0 && nargs == 1) : type == 0) { handshaken = 1; return; }
        if (type == (proto ? 0u : 1u)) { heartbeats++; put_control(proto ? 0 : 1, 0); return; }
        if (type == (proto ? 1u : 2u)) { worker_terminated = 1; return; }
        return;
    }
    if (sid < first_sid || sid - first_sid >= (uint64_t)total) die("reply on a session the engine never opened");
    long idx = (long)(sid - first_sid);
    unsigned t_chunk = proto ? 0 : 4, t_error = proto ? 1 : 5, t_choke = proto ? 2 : 6;
    if (type == t_chunk) {
        size_t len;
        const unsigned char *d = nargs >= 1 ? get_raw(args + 1, &len) : NULL;
        if (!d || d + len > args_end) { if (!bad++) snprintf(bad_detail, sizeof bad_detail, "chunk without data"); return; }
        session_chunk(idx, d, len);
    } else if (type == t_error) {
        if (proto) session_done(idx, t, 1); /* B: terminal */
        else { errors++; got[idx] = 0xffffffffu; } /* A: the choke that follows ends it */
    } else if (type == t_choke) {
        session_done(idx, t, 0);
    }
}

static void parse(double t) {
    const unsigned char *p = in, *end = in + in_len;
    while (p < end) {
        const unsigned char *q = skip(p, end, 0);
        if (q == NULL) break;
        if (q == BAD || (*p != 0x93 && *p != 0x94)) die("malformed frame from the worker");
        uint64_t a, b;
        const unsigned char *r = get_uint(p + 1, q, &a);
        if (r == NULL || r == BAD || (r = get_uint(r, q, &b)) == NULL || r == BAD) die("frame head is not two ints");
        const unsigned char *args_end = skip(r, q, 1);
        if ((*r & 0xf0) != 0x90 && *r != 0xdc) die("frame args are not an array");
        frame(a, b, r, args_end, t);
        p = q;
    }
    in_len = end - p;
    if (in_len && p != in) memmove(in, p, in_len);
}

static int flush_out(void) { /* 0 = all written */
    while (out_off < out_len) {
        ssize_t k = write(fd, out + out_off, out_len - out_off);
        if (k < 0) {
            if (errno == EAGAIN || errno == EINTR) return 1;
            die("write to the worker");
        }
        out_off += (size_t)k;
    }
    out_off = out_len = 0;
    return 0;
}

static int read_in(void) { /* 1 = got data, 0 = would block, -1 = EOF */
    if (in_cap - in_len < 1 << 18) {
        in_cap = in_cap ? in_cap * 2 : 1 << 20;
        in = realloc(in, in_cap);
        if (!in) die("out of memory");
    }
    ssize_t k = read(fd, in + in_len, in_cap - in_len);
    if (k > 0) { in_len += (size_t)k; return 1; }
    if (k == 0) return -1;
    if (errno == EAGAIN || errno == EINTR) return 0;
    die("read from the worker");
    return -1;
}

static void child_check(void) {
    int st;
    if (child > 0 && waitpid(child, &st, WNOHANG) == child) {
        child = -1;
        errno = 0;
        die(WIFEXITED(st) ? "the worker exited early" : "the worker was killed");
    }
}

/* Run until `cond` holds; pump() keeps the window full while a phase is open. */
static void loop_until(int (*cond)(void), double timeout) {
    double start = now_s(), last_progress = start;
    long last_completed = completed;
    while (!cond()) {
        struct pollfd pf = {fd, POLLIN | (out_off < out_len ? POLLOUT : 0), 0};
        int r = poll(&pf, 1, 200);
        if (r < 0 && errno != EINTR) die("poll");
        double t = now_s();
        if (r > 0 && (pf.revents & (POLLIN | POLLHUP | POLLERR))) {
            int got_data;
            while ((got_data = read_in()) == 1) {
                parse(t);
                if (in_len == 0 || in_cap - in_len >= 1 << 18) break;
            }
            if (got_data < 0) { errno = 0; die("the worker closed the socket"); }
            pump(t);
        }
        if (out_off < out_len) flush_out();
        if (r == 0) child_check();
        if (completed != last_completed) { last_completed = completed; last_progress = t; }
        else if (t - last_progress > timeout) { errno = 0; die("stalled: no progress within the timeout"); }
    }
}

static int is_handshaken(void) { return handshaken; }
static int phase_done(void) { return completed == phase_end; }

static int cmpf(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL (i + 1 < argc ? argv[++i] : (errno = 0, die("missing value"), ""))
        if (!strcmp(a, "--")) { cmd = argv + i + 1; break; }
        else if (!strcmp(a, "--proto")) proto = atoi(VAL);
        else if (!strcmp(a, "-n")) n_measured = atol(VAL);
        else if (!strcmp(a, "-s")) size = (size_t)atol(VAL);
        else if (!strcmp(a, "-w")) width = atol(VAL);
        else if (!strcmp(a, "--warmup")) n_warmup = atol(VAL);
        else if (!strcmp(a, "--event")) event = VAL;
        else if (!strcmp(a, "--verify")) verify = 1;
        else if (!strcmp(a, "--term-timeout")) term_timeout = atof(VAL);
        else if (!strcmp(a, "--engine-cpu")) engine_cpu = atoi(VAL);
        else if (!strcmp(a, "--worker-cpu")) worker_cpu = atoi(VAL);
        else if (!strcmp(a, "--payload-file")) payload_file = VAL;
        else if (!strcmp(a, "--expect-prefix")) {
            const char *hex = VAL;
            size_t n = strlen(hex) / 2;
            if (strlen(hex) % 2 || n == 0 || n > sizeof expect) { errno = 0; die("--expect-prefix: 1-16 bytes in hex"); }
            for (size_t j = 0; j < n; j++) {
                unsigned v;
                if (sscanf(hex + 2 * j, "%2x", &v) != 1) { errno = 0; die("--expect-prefix: not hex"); }
                expect[j] = (unsigned char)v;
            }
            expect_len = n;
            http_mode = 1;
        }
        else { errno = 0; fprintf(stderr, "floor_engine: unknown option %s\n", a); return 64; }
#undef VAL
    }
    if (payload_file) { /* the chunk's bytes from a file: its size is S */
        FILE *f = fopen(payload_file, "rb");
        if (!f || fseek(f, 0, SEEK_END) != 0) die("--payload-file");
        long len = ftell(f);
        if (len <= 0 || fseek(f, 0, SEEK_SET) != 0) die("--payload-file: empty or unreadable");
        size = (size_t)len;
        payload = malloc(size + 1);
        if (!payload || fread(payload, 1, size, f) != size) die("--payload-file: read");
        fclose(f);
    }
    if (!cmd || !cmd[0] || n_measured <= 0 || width <= 0 || n_warmup < 0 || (proto != 0 && proto != 1)
        || (http_mode && !payload_file)) {
        fprintf(stderr, "usage: floor_engine [--proto 0|1] [-n N] [-s S] [-w W] [--warmup M] [--event NAME]"
                        " [--verify] [--engine-cpu C] [--worker-cpu C] [--term-timeout S]"
                        " [--payload-file F --expect-prefix HEX] -- WORKER_CMD [ARGS...]\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    total = n_warmup + n_measured;
    first_sid = proto ? 2 : 1;  /* A: the engine's counter from 1; B: channels 2, 3, ... */
    got = calloc(total, sizeof *got);
    state = calloc(total, 1);
    sent_at = calloc(total, sizeof *sent_at);
    lat = calloc(n_measured, sizeof *lat);
    if (!payload_file) payload = malloc(size + 1);
    ev_enc = malloc(strlen(event) + 8);
    data_enc = malloc(size + 8);
    if (!got || !state || !sent_at || !lat || !payload || !ev_enc || !data_enc) die("out of memory");
    if (!payload_file)
        for (size_t i = 0; i < size; i++) payload[i] = (unsigned char)(i * 131 + 7); /* every byte value, not just text */
    ev_enc[0] = 0x91; ev_len = 1 + put_raw(ev_enc + 1, event, strlen(event));
    data_enc[0] = 0x91; data_len = 1 + put_raw(data_enc + 1, payload, size);

    strcpy(sock_dir, "/tmp/floor-engine-XXXXXX");
    if (!mkdtemp(sock_dir)) { sock_dir[0] = 0; die("mkdtemp"); }
    snprintf(sock_path, sizeof sock_path, "%s/bench.sock", sock_dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4) < 0) die("listen");

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char uuid[40];
    snprintf(uuid, sizeof uuid, "0f100e00-0000-4000-8000-%012x", (unsigned)getpid());
    int argc_cmd = 0;
    while (cmd[argc_cmd]) argc_cmd++;
    char **wargv = calloc(argc_cmd + 12, sizeof *wargv);
    int k = 0;
    for (int i = 0; i < argc_cmd; i++) wargv[k++] = cmd[i];
    wargv[k++] = "--app"; wargv[k++] = "bench"; wargv[k++] = "--endpoint"; wargv[k++] = sock_path;
    wargv[k++] = "--locator"; wargv[k++] = "127.0.0.1:10053";
    if (proto) { wargv[k++] = "--protocol"; wargv[k++] = "1"; }
    wargv[k++] = "--uuid"; wargv[k++] = uuid;
    wargv[k] = NULL;
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        if (worker_cpu >= 0 && worker_cpu < ncpu) {
            cpu_set_t set; CPU_ZERO(&set); CPU_SET(worker_cpu, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        execvp(wargv[0], wargv);
        fprintf(stderr, "floor_engine: exec %s: %s\n", wargv[0], strerror(errno));
        _exit(127);
    }
    if (engine_cpu >= 0 && engine_cpu < ncpu) {
        cpu_set_t set; CPU_ZERO(&set); CPU_SET(engine_cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    for (double t0 = now_s();;) {
        struct pollfd pf = {lfd, POLLIN, 0};
        if (poll(&pf, 1, 200) > 0) break;
        child_check();
        if (now_s() - t0 > 300) { errno = 0; die("the worker did not connect within 300 s"); }
    }
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) die("accept");
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);

    loop_until(is_handshaken, 300);
    phase_end = n_warmup;
    pump(now_s());
    flush_out();
    loop_until(phase_done, 30);

    double cpu_w0 = proc_cpu_s(child), cpu_e0 = self_cpu_s(), t0 = now_s();
    phase_end = total;
    pump(t0);
    flush_out();
    loop_until(phase_done, 30);
    double t1 = now_s(), cpu_w1 = proc_cpu_s(child), cpu_e1 = self_cpu_s();

    /* terminate, then wait for the worker's exit */
    put_control(proto ? 1 : 2, 1);
    flush_out();
    int status = -1;
    for (double ts = now_s(); now_s() - ts < term_timeout;) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 50) > 0) {
            int rr;
            while ((rr = read_in()) == 1) parse(now_s());
            if (rr < 0) break;
        }
        if (waitpid(child, &status, WNOHANG) == child) { child = -1; break; }
    }
    if (child > 0) {
        double ts = now_s();
        while (now_s() - ts < term_timeout && waitpid(child, &status, WNOHANG) != child) usleep(10000);
        if (waitpid(child, &status, WNOHANG) == 0) { kill(child, SIGKILL); waitpid(child, &status, 0); status = -1; }
        child = -1;
    }
    close(fd);
    close(lfd);
    unlink(sock_path);
    rmdir(sock_dir);

    qsort(lat, n_lat, sizeof *lat, cmpf);
    double secs = t1 - t0;
    double p50 = n_lat ? lat[(n_lat - 1) / 2] : 0, p99 = n_lat ? lat[(long)((n_lat - 1) * 0.99)] : 0;
    int exit_code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    printf("{\"ok\": %s, \"proto\": %d, \"n\": %ld, \"s\": %zu, \"w\": %ld, \"warmup\": %ld, \"verify\": %s, "
           "\"rps\": %.0f, \"secs\": %.4f, \"p50us\": %.1f, \"p99us\": %.1f, "
           "\"worker_cpu_us\": %.3f, \"engine_cpu_us\": %.3f, \"bad\": %ld, \"errors\": %ld, "
           "\"heartbeats\": %ld, \"worker_terminated\": %s, \"exit\": %d, \"detail\": \"%s\"}\n",
           bad == 0 && errors == 0 && n_lat == n_measured ? "true" : "false", proto, n_measured, size, width,
           n_warmup, verify ? "true" : "false", n_measured / secs, secs, p50 * 1e6, p99 * 1e6,
           (cpu_w1 - cpu_w0) / n_measured * 1e6, (cpu_e1 - cpu_e0) / n_measured * 1e6, bad, errors, heartbeats,
           worker_terminated ? "true" : "false", exit_code, bad_detail);
    return bad == 0 && errors == 0 ? 0 : 2;
}
