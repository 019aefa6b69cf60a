/*
 * test_transfers.c - every transfer operation against a real daemon: read,
 * send, open + send open, with headers and trailers, ranges, zero-length
 * files, and the errors the daemon reports on the channel.
 */
#ifdef __linux__
#define _GNU_SOURCE /* syscall(2), for the openat2 probe */
#endif
#include "harness.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <errno.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#endif

#define BIG (3u * 1024 * 1024 + 123)

static bool file_stat(const struct env* e, const char* rel, struct stat* st)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", e->root, rel);
    return stat(path, st) == 0;
}

/* sfd_read of [offset, offset+len) of a pattern file of fsize bytes. */
static bool read_range_ok(struct env* e, const char* rel, size_t fsize,
                          off_t offset, size_t len, unsigned seed)
{
    size_t want = (size_t)offset >= fsize ? 0 : fsize - (size_t)offset;
    unsigned char* buf;
    struct outcome o;
    ssize_t n;
    bool ok;
    int fd;
    if (len && len < want)
        want = len;
    fd = sfd_read(e->srv, rel, offset, len, false);
    if (fd < 0)
        return false;
    if (!read_info(fd, &o, T_MS) || !o.got_info || o.info.size != want) {
        close(fd);
        return false;
    }
    buf = malloc(want + 1);
    n = read_all(fd, buf, want, T_MS);
    ok = n >= 0 && (size_t)n == want && is_pattern(buf, want, (size_t)offset, seed);
    free(buf);
    close(fd);
    return ok;
}

static void test_spawn_twice_returns_zero(void)
{
    struct env* e;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(sfd_spawn(e->name, e->root, "run", 0, 0) == 0);
    /* Whatever the second daemon's logging setup. */
    test_setenv("SENDFILED_LOG", "syslog");
    CHECK(sfd_spawn(e->name, e->root, "run", 0, 0) == 0);
    test_setenv("SENDFILED_LOG", "none");
    CHECK(sfd_spawn(e->name, e->root, "run", 5, 100) == 0);
    /* The first daemon still serves. */
    CHECK(put_file(e, "a", NULL, 100, 1));
    CHECK(read_range_ok(e, "a", 100, 0, 0, 1));
}

static void test_read_whole_file(void)
{
    struct env* e;
    struct outcome o;
    struct stat st;
    unsigned char* buf;
    ssize_t n;
    int fd;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "big.bin", NULL, BIG, 7));
    CHECK(file_stat(e, "big.bin", &st));
    fd = sfd_read(e->srv, "big.bin", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    CHECK(read_info(fd, &o, T_MS));
    CHECK(o.got_info && !o.garbage);
    CHECK(o.info.cmd == SFD_FILE_INFO && o.info.stat == SFD_STAT_OK);
    CHECK(o.info.size == BIG);
    CHECK(o.info.mtime == st.st_mtime);
    CHECK(o.info.ctime == st.st_ctime);
    CHECK(o.info.atime > 0);
    buf = malloc(BIG);
    n = read_all(fd, buf, BIG, T_MS);
    close(fd);
    if (n != (ssize_t)BIG || !is_pattern(buf, BIG, 0, 7)) {
        free(buf);
        CHECK(!"data read differs from the file");
    }
    free(buf);
}

static void test_read_nonblocking(void)
{
    struct env* e;
    struct outcome o;
    unsigned char buf[70000];
    int fd;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sizeof(buf), 3));
    fd = sfd_read(e->srv, "f", 0, 0, true);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(read_info(fd, &o, T_MS) && o.got_info && o.info.size == sizeof(buf));
    CHECK(read_all(fd, buf, sizeof(buf), T_MS) == (ssize_t)sizeof(buf));
    CHECK(is_pattern(buf, sizeof(buf), 0, 3));
    close(fd);
}

static void test_read_ranges(void)
{
    struct env* e;
    const size_t sz = 200000;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "r", NULL, sz, 11));
    CHECK(read_range_ok(e, "r", sz, 0, 0, 11));
    CHECK(read_range_ok(e, "r", sz, 1, 0, 11));
    CHECK(read_range_ok(e, "r", sz, 10, 100, 11));
    CHECK(read_range_ok(e, "r", sz, 65535, 70001, 11));
    CHECK(read_range_ok(e, "r", sz, (off_t)sz - 5, 100, 11)); /* clipped */
    CHECK(read_range_ok(e, "r", sz, 0, sz * 2, 11));          /* clipped */
    CHECK(read_range_ok(e, "r", sz, (off_t)sz, 0, 11));       /* empty */
    CHECK(read_range_ok(e, "r", sz, (off_t)sz + 10, 5, 11));  /* past EOF */
    CHECK(read_range_ok(e, "r", sz, 3, SIZE_MAX, 11));        /* huge len */
}

static void test_read_zero_length_file(void)
{
    struct env* e;
    struct outcome o;
    int fd;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "empty", NULL, 0, 0));
    fd = sfd_read(e->srv, "empty", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(read_info(fd, &o, T_MS) && o.got_info && o.info.size == 0);
    CHECK(wait_eof(fd, T_MS));
    close(fd);
}

static void test_read_errors(void)
{
    struct env* e;
    struct outcome o;
    char dir[256];
    int fd;
    CHECK((e = env_start(0, 0)) != NULL);
    fd = sfd_read(e->srv, "no/such/file", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(read_info(fd, &o, T_MS));
    CHECK(!o.got_info && !o.garbage && o.info_err == ENOENT);
    CHECK(wait_eof(fd, T_MS));
    close(fd);

    snprintf(dir, sizeof(dir), "%s/adir", e->root);
    CHECK(mkdir(dir, 0755) == 0);
    fd = sfd_read(e->srv, "adir", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(read_info(fd, &o, T_MS));
    CHECK(!o.got_info && !o.garbage && o.info_err == EINVAL);
    CHECK(wait_eof(fd, T_MS));
    close(fd);

    /* The longest path the client accepts reaches the daemon, which
     * answers on the channel. */
    {
        static char p[SFD_MAX_PATH_LEN + 1];
        size_t i;
        for (i = 0; i < SFD_MAX_PATH_LEN; i++)
            p[i] = i % 2 ? '/' : 'a';
        p[SFD_MAX_PATH_LEN - 1] = 'z';
        p[SFD_MAX_PATH_LEN] = '\0';
        fd = sfd_read(e->srv, p, 0, 0, false);
        CHECK(fd >= 0);
        CHECK(read_info(fd, &o, T_MS) && !o.got_info && o.info_err != 0);
        CHECK(wait_eof(fd, T_MS));
        close(fd);
    }
    /* And the daemon is still fine. */
    CHECK(put_file(e, "ok", NULL, 10, 2));
    CHECK(read_range_ok(e, "ok", 10, 0, 0, 2));
}

/* sfd_send_hdtr of a range of a pattern file to a stream socket pair;
 * checks the bytes, the progress rule and completion. */
static bool send_ok(struct env* e, const char* rel, size_t fsize, off_t offset,
                    size_t len, const char* hdr, const char* trl, unsigned seed)
{
    size_t want = (size_t)offset >= fsize ? 0 : fsize - (size_t)offset;
    size_t hl = hdr ? strlen(hdr) : 0, tl = trl ? strlen(trl) : 0, got = 0;
    unsigned char* buf;
    struct outcome o;
    int sv[2], st;
    bool ok;
    if (len && len < want)
        want = len;
    if (!stream_pair(sv))
        return false;
    st = sfd_send_hdtr(e->srv, rel, sv[0], offset, len, hdr, hl, trl, tl, false);
    close(sv[0]);
    if (st < 0) {
        close(sv[1]);
        return false;
    }
    buf = malloc(hl + want + tl + 1);
    memset(&o, 0, sizeof(o));
    ok = run_status(st, &o, sv[1], buf, hl + want + tl, &got, T_MS);
    ok = ok && o.got_info && o.info.size == want && o.complete && !o.xfer_err &&
         o.eof && !o.garbage && progress_ok(&o, hl + want + tl) &&
         got == hl + want + tl && memcmp(buf, hdr ? hdr : "", hl) == 0 &&
         is_pattern(buf + hl, want, (size_t)offset, seed) &&
         memcmp(buf + hl + want, trl ? trl : "", tl) == 0;
    free(buf);
    close(st);
    close(sv[1]);
    return ok;
}

static void test_send_to_socket(void)
{
    struct env* e;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "big", NULL, BIG, 5));
    CHECK(send_ok(e, "big", BIG, 0, 0, NULL, NULL, 5));
}

static void test_send_ranges(void)
{
    struct env* e;
    const size_t sz = 100000;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "r", NULL, sz, 9));
    CHECK(send_ok(e, "r", sz, 1000, 0, NULL, NULL, 9));
    CHECK(send_ok(e, "r", sz, 1000, 5000, NULL, NULL, 9));
    CHECK(send_ok(e, "r", sz, (off_t)sz - 1, 10, NULL, NULL, 9));
    CHECK(send_ok(e, "r", sz, (off_t)sz + 1, 10, NULL, NULL, 9));
}

static void test_send_zero_length_file(void)
{
    struct env* e;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "empty", NULL, 0, 0));
    CHECK(send_ok(e, "empty", 0, 0, 0, NULL, NULL, 0));
}

static void test_send_to_pipe_and_file(void)
{
    struct env* e;
    struct outcome o;
    unsigned char* buf;
    const size_t sz = 300000;
    char out[256];
    size_t got = 0;
    int p[2], st, fd;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sz, 4));

    CHECK(pipe(p) == 0);
    st = sfd_send(e->srv, "f", p[1], 0, 0, false);
    close(p[1]);
    CHECK(st >= 0);
    buf = malloc(sz);
    memset(&o, 0, sizeof(o));
    if (!run_status(st, &o, p[0], buf, sz, &got, T_MS) || got != sz ||
        !is_pattern(buf, sz, 0, 4)) {
        free(buf);
        CHECK(!"send to a pipe");
    }
    close(st);
    close(p[0]);
    CHECK(o.complete && progress_ok(&o, sz) && !o.garbage);

    /* A regular file as the destination. */
    snprintf(out, sizeof(out), "%s/out", e->root);
    fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        free(buf);
    CHECK(fd >= 0);
    st = sfd_send(e->srv, "f", fd, 0, 0, false);
    if (st < 0) {
        free(buf);
        close(fd);
    }
    CHECK(st >= 0);
    memset(&o, 0, sizeof(o));
    run_status(st, &o, -1, NULL, 0, NULL, T_MS);
    close(st);
    memset(buf, 0, sz);
    got = (size_t)pread(fd, buf, sz, 0);
    close(fd);
    if (!o.complete || !progress_ok(&o, sz) || got != sz || !is_pattern(buf, sz, 0, 4)) {
        free(buf);
        CHECK(!"send to a regular file");
    }
    free(buf);
}

static void test_send_errors(void)
{
    struct env* e;
    struct outcome o;
    int sv[2], st;
    CHECK((e = env_start(0, 0)) != NULL);

    /* Refused: ENOENT on the status channel; the destination is let go. */
    CHECK(stream_pair(sv));
    st = sfd_send(e->srv, "missing", sv[0], 0, 0, false);
    close(sv[0]);
    CHECK(st >= 0);
    CHECK(read_info(st, &o, T_MS));
    CHECK(!o.got_info && o.info_err == ENOENT && !o.garbage);
    CHECK(wait_eof(st, T_MS));
    CHECK(wait_eof(sv[1], T_MS));
    close(st);
    close(sv[1]);

    /* The destination is closed: EPIPE after the file info. */
    CHECK(put_file(e, "big", NULL, BIG, 1));
    CHECK(stream_pair(sv));
    close(sv[1]);
    st = sfd_send(e->srv, "big", sv[0], 0, 0, false);
    close(sv[0]);
    CHECK(st >= 0);
    memset(&o, 0, sizeof(o));
    CHECK(run_status(st, &o, -1, NULL, 0, NULL, T_MS));
    CHECK(o.got_info && !o.complete && o.xfer_err == EPIPE && o.eof && !o.garbage);
    close(st);
}

static void test_open_then_send_open(void)
{
    struct env* e;
    struct outcome o;
    unsigned char* buf;
    size_t got = 0;
    int sv[2], st;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "big", NULL, BIG, 8));
    st = sfd_open(e->srv, "big", 100, 0, true);
    CHECK(st >= 0);
    CHECK(fcntl(st, F_GETFL) & O_NONBLOCK);
    CHECK(read_info(st, &o, T_MS) && o.got_info && o.info.size == BIG - 100);
    /* Nothing else comes until the file is sent. */
    CHECK(!wait_readable(st, 50));
    CHECK(stream_pair(sv));
    CHECK(sfd_send_open(e->srv, o.info.txnid, sv[0]));
    close(sv[0]);
    buf = malloc(BIG);
    if (!run_status(st, &o, sv[1], buf, BIG, &got, T_MS) || got != BIG - 100 ||
        !is_pattern(buf, got, 100, 8)) {
        free(buf);
        CHECK(!"data sent after open");
    }
    free(buf);
    CHECK(o.complete && progress_ok(&o, BIG - 100) && !o.garbage && o.eof);
    close(st);
    close(sv[1]);
}

static void test_open_errors(void)
{
    struct env* e;
    struct outcome o;
    int st;
    CHECK((e = env_start(0, 0)) != NULL);
    st = sfd_open(e->srv, "nothing-here", 0, 0, false);
    CHECK(st >= 0);
    CHECK(read_info(st, &o, T_MS) && o.info_err == ENOENT && !o.garbage);
    CHECK(wait_eof(st, T_MS));
    close(st);
    /* Unknown transfer ids are ignored; the daemon keeps serving. */
    CHECK(sfd_cancel(e->srv, 0x5eed));
    {
        int sv[2];
        CHECK(stream_pair(sv));
        CHECK(sfd_send_open(e->srv, 0x5eed, sv[0]));
        close(sv[0]);
        CHECK(wait_eof(sv[1], T_MS)); /* its duplicate was closed */
        close(sv[1]);
    }
    CHECK(put_file(e, "ok", NULL, 10, 2));
    CHECK(read_range_ok(e, "ok", 10, 0, 0, 2));
}

static void test_send_hdtr_variants(void)
{
    struct env* e;
    static char big_hdr[SFD_MAX_HDTR_LEN / 2 + 1], big_trl[SFD_MAX_HDTR_LEN / 2 + 1];
    const size_t sz = 150000;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sz, 6));
    CHECK(put_file(e, "empty", NULL, 0, 0));
    CHECK(send_ok(e, "f", sz, 0, 0, "HEADER\r\n", NULL, 6));
    CHECK(send_ok(e, "f", sz, 0, 0, NULL, "--trailer--", 6));
    CHECK(send_ok(e, "f", sz, 0, 0, "H", "T", 6));
    CHECK(send_ok(e, "empty", 0, 0, 0, "only a header", "and a trailer", 0));
    CHECK(send_ok(e, "f", sz, 777, 1000, "range:", ":end", 6));
    CHECK(send_ok(e, "f", sz, (off_t)sz + 5, 0, "past", "eof", 6));
    memset(big_hdr, 'h', sizeof(big_hdr) - 1);
    memset(big_trl, 't', sizeof(big_trl) - 1);
    CHECK(send_ok(e, "f", sz, 0, 0, big_hdr, big_trl, 6)); /* exactly the limit */
}

static void test_send_open_hdtr(void)
{
    struct env* e;
    struct outcome o;
    unsigned char buf[70000];
    const char* hdr = "HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n";
    const char* trl = "\r\n0\r\n\r\n";
    size_t hl = strlen(hdr), tl = strlen(trl), got = 0;
    int sv[2], st;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, 60000, 12));
    st = sfd_open(e->srv, "f", 0, 0, false);
    CHECK(st >= 0);
    CHECK(read_info(st, &o, T_MS) && o.got_info && o.info.size == 60000);
    CHECK(stream_pair(sv));
    CHECK_ERRNO(sfd_send_open_hdtr(e->srv, o.info.txnid, sv[0], buf,
                                   SFD_MAX_HDTR_LEN, buf, 1), false, EMSGSIZE);
    CHECK(sfd_send_open_hdtr(e->srv, o.info.txnid, sv[0], hdr, hl, trl, tl));
    close(sv[0]);
    CHECK(run_status(st, &o, sv[1], buf, sizeof(buf), &got, T_MS));
    CHECK(o.complete && !o.garbage && progress_ok(&o, hl + 60000 + tl));
    CHECK(got == hl + 60000 + tl);
    CHECK(memcmp(buf, hdr, hl) == 0);
    CHECK(is_pattern(buf + hl, 60000, 0, 12));
    CHECK(memcmp(buf + hl + 60000, trl, tl) == 0);
    close(st);
    close(sv[1]);
}

static void test_large_file_with_header(void)
{
    /* 64 MiB; ci/c-tests.sh --valgrind asks for less ($SFD_TEST_LARGE_MB). */
    const char* mb = getenv("SFD_TEST_LARGE_MB");
    const size_t SZ = (mb ? (size_t)strtoul(mb, NULL, 10) : 64) * 1024 * 1024;
    struct env* e;
    static char hdr[4096];
    memset(hdr, 'H', sizeof(hdr) - 1);
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "huge", NULL, SZ, 13));
    CHECK(send_ok(e, "huge", SZ, 0, 0, hdr, "<end>", 13));
}

static void test_client_limits_with_daemon(void)
{
    struct env* e;
    static char path[SFD_MAX_PATH_LEN + 2];
    static char hdtr[SFD_MAX_HDTR_LEN + 1];
    int sv[2];
    CHECK((e = env_start(0, 0)) != NULL);
    memset(path, 'p', SFD_MAX_PATH_LEN + 1);
    CHECK_ERRNO(sfd_read(e->srv, path, 0, 0, false), -1, ENAMETOOLONG);
    CHECK(stream_pair(sv));
    CHECK_ERRNO(sfd_send_hdtr(e->srv, "f", sv[0], 0, 0, hdtr, sizeof(hdtr), NULL, 0,
                              false), -1, EMSGSIZE);
    close(sv[0]);
    close(sv[1]);
    CHECK(put_file(e, "ok", NULL, 10, 2));
    CHECK(read_range_ok(e, "ok", 10, 0, 0, 2));
}

static void test_many_concurrent_reads(void)
{
    enum { N = 24, SZ = 90001 };
    struct env* e;
    int fds[N];
    size_t i;
    unsigned char* buf;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, SZ, 21));
    for (i = 0; i < N; i++) {
        fds[i] = sfd_read(e->srv, "f", (off_t)i, 0, false);
        CHECK(fds[i] >= 0);
    }
    buf = malloc(SZ);
    for (i = 0; i < N; i++) {
        struct outcome o;
        ssize_t n = -1;
        if (read_info(fds[i], &o, T_MS) && o.got_info && o.info.size == SZ - i)
            n = read_all(fds[i], buf, SZ - i, T_MS);
        close(fds[i]);
        if (n != (ssize_t)(SZ - i) || !is_pattern(buf, SZ - i, i, 21)) {
            free(buf);
            for (i++; i < N; i++)
                close(fds[i]);
            CHECK(!"concurrent read differs");
        }
    }
    free(buf);
}

#ifdef __linux__
/* Whether this process can open from the kernel's caches only: openat2(2)
 * with RESOLVE_CACHED (Linux 5.12). Before 5.6 (or under valgrind, which
 * does not know the call) it is ENOSYS, before 5.12 the flag is EINVAL; the
 * contract then sends every transfer to the daemon. */
static bool has_cached_open(void)
{
#ifdef SYS_openat2
    struct {
        uint64_t flags, mode, resolve;
    } how = { O_RDONLY | O_CLOEXEC, 0, 0x20 /* RESOLVE_CACHED */ };
    long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
    if (fd >= 0) {
        close((int)fd);
        return true;
    }
    return errno == EAGAIN;
#else
    return false;
#endif
}
#endif

/* Whether a cached Send to a socket with room must finish in this process:
 * on Linux with the attempt on (SENDFILED_INLINE not 0) and a cached open,
 * on a filesystem that answers RWF_NOWAIT reads (tmpfs may not: it is then
 * the daemon's). FreeBSD and macOS always hand the daemon the transfer. */
static bool finishes_here(const struct env* e)
{
#ifdef __linux__
    const char* v = getenv("SENDFILED_INLINE");
    struct statfs fs;
    if (v && strcmp(v, "0") == 0)
        return false;
    if (!has_cached_open())
        return false;
    return statfs(e->root, &fs) == 0 && fs.f_type != 0x01021994 /* tmpfs */;
#else
    (void)e;
    return false;
#endif
}

/* sfd_send_here: a Send finished in this process makes no channel and
 * says so with 1 and the file info; otherwise the status pipe is exactly
 * sfd_send_hdtr()'s. The bytes at the destination are the same either
 * way. */
static void test_send_here(void)
{
    const size_t sz = 10000;
    struct sfd_file_info info;
    struct outcome o;
    unsigned char buf[10000 + 2];
    struct env* e;
    int sv[2], st = -2, rc;
    size_t got = 0;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sz, 4));
    /* Read once, so that every page is cached. */
    CHECK(send_ok(e, "f", sz, 0, 0, NULL, NULL, 4));
    CHECK(stream_pair(sv));
    memset(&info, 0, sizeof(info));
    rc = sfd_send_here(e->srv, "f", sv[0], 0, 0, "H", 1, "T", 1, false, &info,
                       &st);
    close(sv[0]);
    if (finishes_here(e)) {
        CHECK(rc == 1);
        CHECK(st == -1);
        CHECK(info.cmd == SFD_FILE_INFO && info.stat == 0 && info.size == sz);
        /* Every byte is already there: the peer sees them, then EOF. */
        CHECK(read_all(sv[1], buf, sizeof(buf), T_MS) == (ssize_t)(sz + 2));
    } else {
        CHECK(rc == 0);
        CHECK(st >= 0);
        memset(&o, 0, sizeof(o));
        CHECK(run_status(st, &o, sv[1], buf, sizeof(buf), &got, T_MS));
        CHECK(o.got_info && o.info.size == sz && o.complete && o.eof &&
              !o.garbage);
        CHECK(got == sz + 2);
        close(st);
    }
    CHECK(buf[0] == 'H' && is_pattern(buf + 1, sz, 0, 4) && buf[sz + 1] == 'T');
    close(sv[1]);

    /* A refusal comes on the pipe, as sfd_send_hdtr() answers it. */
    CHECK(stream_pair(sv));
    st = -2;
    rc = sfd_send_here(e->srv, "missing", sv[0], 0, 0, NULL, 0, NULL, 0, false,
                       &info, &st);
    close(sv[0]);
    CHECK(rc == 0 && st >= 0);
    memset(&o, 0, sizeof(o));
    CHECK(read_info(st, &o, T_MS));
    CHECK(!o.got_info && o.info_err == ENOENT);
    close(st);
    close(sv[1]);
}

int main(void)
{
    static const struct sfd_test tests[] = {
        { "spawn_twice_returns_zero", test_spawn_twice_returns_zero },
        { "read_whole_file", test_read_whole_file },
        { "read_nonblocking", test_read_nonblocking },
        { "read_ranges", test_read_ranges },
        { "read_zero_length_file", test_read_zero_length_file },
        { "read_errors", test_read_errors },
        { "send_to_socket", test_send_to_socket },
        { "send_ranges", test_send_ranges },
        { "send_zero_length_file", test_send_zero_length_file },
        { "send_to_pipe_and_file", test_send_to_pipe_and_file },
        { "send_errors", test_send_errors },
        { "open_then_send_open", test_open_then_send_open },
        { "open_errors", test_open_errors },
        { "send_hdtr_variants", test_send_hdtr_variants },
        { "send_open_hdtr", test_send_open_hdtr },
        { "large_file_with_header", test_large_file_with_header },
        { "client_limits_with_daemon", test_client_limits_with_daemon },
        { "many_concurrent_reads", test_many_concurrent_reads },
        { "send_here", test_send_here },
    };
    return sfd_run_tests(tests, N_ELEMS(tests));
}
