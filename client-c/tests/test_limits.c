/*
 * test_limits.c - the daemon's limits and lifecycle as a C client sees them:
 * EMFILE at maxfiles, a slot freed by cancel is reusable while another
 * transfer is held, the open-file timeout (ETIMEDOUT), cancel of an open
 * file, of a transfer in flight and in the middle of its header (the channel
 * closes without a message, as the original's), shutdown with live transfers, and malformed datagrams (zero-length,
 * oversized, too many or too few descriptors, wrong version) that the daemon
 * must survive without leaking the descriptors that came with them.
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static bool open_ok(struct env* e, const char* rel, int* st, struct outcome* o)
{
    *st = sfd_open(e->srv, rel, 0, 0, false);
    return *st >= 0 && read_info(*st, o, T_MS) && o->got_info && !o->garbage;
}

/* Reads a channel to its end: the final error (0 if none: closed without
 * a message), then EOF. */
static bool ends_with(int fd, int want_err, int timeout_ms)
{
    struct outcome o;
    memset(&o, 0, sizeof(o));
    o.got_info = true; /* the file info was read already */
    if (!run_status(fd, &o, -1, NULL, 0, NULL, timeout_ms))
        return false;
    return o.eof && !o.garbage && o.xfer_err == want_err && !o.complete;
}

static void emfile_at_the_limit(void)
{
    struct env* e;
    struct outcome o, o2;
    int held, fd;
    CHECK((e = env_start(1, 0)) != NULL);
    CHECK(put_file(e, "a", NULL, 1000, 1));
    CHECK(open_ok(e, "a", &held, &o));

    fd = sfd_read(e->srv, "a", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(read_info(fd, &o2, T_MS));
    CHECK(!o2.got_info && !o2.garbage && o2.info_err == EMFILE);
    CHECK(wait_eof(fd, T_MS));
    close(fd);

    fd = sfd_open(e->srv, "a", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(read_info(fd, &o2, T_MS) && o2.info_err == EMFILE);
    close(fd);

    CHECK(sfd_cancel(e->srv, o.info.txnid));
    CHECK(wait_eof(held, T_MS));
    close(held);
}

/* The limit counts the daemon's transfers: a Read of a cached file
 * finished in this process (sendfiled.3, "Where a transfer runs") takes no
 * slot, so these requests go to the daemon whole. */
static void test_emfile_at_the_limit(void)
{
    const char* was = getenv("SENDFILED_INLINE");
    char* saved = was ? strdup(was) : NULL;
    if (setenv("SENDFILED_INLINE", "0", 1) != 0) {
        free(saved);
        CHECK(!"setenv");
    }
    emfile_at_the_limit();
    if (saved) {
        setenv("SENDFILED_INLINE", saved, 1);
        free(saved);
    } else {
        unsetenv("SENDFILED_INLINE");
    }
}

static void test_slot_reuse_after_cancel(void)
{
    struct env* e;
    struct outcome a, b, c;
    int sa, sb, sc, sv[2];
    size_t got = 0;
    unsigned char buf[5000];
    CHECK((e = env_start(2, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sizeof(buf), 2));
    CHECK(open_ok(e, "f", &sa, &a)); /* held throughout */
    CHECK(open_ok(e, "f", &sb, &b));
    CHECK(a.info.txnid != b.info.txnid);

    CHECK(sfd_cancel(e->srv, b.info.txnid));
    CHECK(wait_eof(sb, T_MS));
    close(sb);

    /* B's slot is free again while A is still held. */
    CHECK(open_ok(e, "f", &sc, &c));
    CHECK(stream_pair(sv));
    CHECK(sfd_send_open(e->srv, c.info.txnid, sv[0]));
    close(sv[0]);
    CHECK(run_status(sc, &c, sv[1], buf, sizeof(buf), &got, T_MS));
    CHECK(c.complete && got == sizeof(buf) && is_pattern(buf, got, 0, 2));
    close(sc);
    close(sv[1]);

    /* A was untouched by all that. */
    CHECK(!wait_readable(sa, 0));
    CHECK(sfd_cancel(e->srv, a.info.txnid));
    CHECK(wait_eof(sa, T_MS));
    close(sa);
}

static void test_open_timeout(void)
{
    struct env* e;
    struct outcome o;
    int st, st2;
    CHECK((e = env_start(1, 200)) != NULL);
    CHECK(put_file(e, "f", NULL, 10, 1));
    CHECK(open_ok(e, "f", &st, &o));
    /* Never sent: the daemon gives up on its own. */
    CHECK(ends_with(st, ETIMEDOUT, T_MS));
    close(st);
    /* And its slot is free (maxfiles is 1). */
    CHECK(open_ok(e, "f", &st2, &o));
    close(st2);
}

static void test_cancel_in_flight(void)
{
    enum { SZ = 32 * 1024 * 1024 };
    struct env* e;
    struct outcome o;
    size_t got = 0;
    int sv[2], st;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "big", NULL, SZ, 3));
    CHECK(stream_pair(sv));
    st = sfd_send(e->srv, "big", sv[0], 0, 0, false);
    close(sv[0]);
    CHECK(st >= 0);
    CHECK(read_info(st, &o, T_MS) && o.got_info && o.info.size == SZ);
    /* Nobody reads the destination, so the transfer cannot finish. */
    CHECK(sfd_cancel(e->srv, o.info.txnid));
    CHECK(run_status(st, &o, sv[1], NULL, 0, &got, T_MS));
    CHECK(o.xfer_err == 0 && !o.complete && !o.garbage && o.eof);
    CHECK(got < SZ);
    close(st);
    close(sv[1]);
}

static void test_cancel_inside_the_header(void)
{
    struct env* e;
    struct outcome o;
    static char hdr[SFD_MAX_HDTR_LEN - 1]; /* + the 1-byte trailer */
    unsigned char buf[SFD_MAX_HDTR_LEN + 100];
    size_t got = 0, i;
    int sv[2], st, small = 1;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, 100000, 3));
    memset(hdr, 'h', sizeof(hdr));
    CHECK(stream_pair(sv));
    /* The smallest send buffer the system allows: the header cannot fit. */
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
    st = sfd_send_hdtr(e->srv, "f", sv[0], 0, 0, hdr, sizeof(hdr), "T", 1, false);
    close(sv[0]);
    CHECK(st >= 0);
    CHECK(read_info(st, &o, T_MS) && o.got_info);
    CHECK(sfd_cancel(e->srv, o.info.txnid));
    CHECK(run_status(st, &o, sv[1], buf, sizeof(buf), &got, T_MS));
    CHECK(o.xfer_err == 0 && !o.complete && o.eof && !o.garbage);
    /* Whatever arrived is a prefix of the header, never file data. */
    CHECK(got < sizeof(hdr));
    for (i = 0; i < got; i++)
        CHECK(buf[i] == 'h');
    close(st);
    close(sv[1]);
}

static void test_shutdown_with_live_transfers(void)
{
    struct env* e;
    struct outcome o, o2;
    int held, st, sv[2];
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "big", NULL, 8 * 1024 * 1024, 3));
    CHECK(open_ok(e, "big", &held, &o));
    CHECK(stream_pair(sv));
    st = sfd_send(e->srv, "big", sv[0], 0, 0, false);
    close(sv[0]);
    CHECK(st >= 0);
    CHECK(read_info(st, &o2, T_MS) && o2.got_info);
    env_stop(e); /* must still exit 0 */
    CHECK(!test_failed());
    CHECK(wait_eof(held, T_MS));
    memset(&o2, 0, sizeof(o2));
    o2.got_info = true;
    CHECK(run_status(st, &o2, sv[1], NULL, 0, NULL, T_MS));
    CHECK(o2.eof && !o2.complete && !o2.garbage);
    close(held);
    close(st);
    close(sv[1]);
}

/* --- malformed datagrams --------------------------------------------- */

/* Sends one datagram with descriptors, as a broken client might. */
static ssize_t send_raw(int srv, const void* buf, size_t len, const int* fds,
                        size_t nfds)
{
    struct msghdr m;
    struct iovec iov;
    union {
        struct cmsghdr align;
        unsigned char bytes[CMSG_SPACE(sizeof(int) * 16)];
    } ctl;
    memset(&m, 0, sizeof(m));
    memset(&ctl, 0, sizeof(ctl));
    iov.iov_base = (void*)buf;
    iov.iov_len = len;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr* c;
        m.msg_control = ctl.bytes;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(srv, &m, 0);
}

static void put_le(unsigned char* at, uint64_t v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        at[i] = (unsigned char)(v >> (8 * i));
}

/* A Read request in the wire format (client/src/protocol.rs), written out by
 * hand here only so that the test can break it on purpose. */
static size_t read_request(unsigned char* out, unsigned version, const char* path)
{
    size_t pl = strlen(path) + 1;
    memset(out, 0, 40);
    out[0] = (unsigned char)version;
    out[1] = 1; /* Read */
    put_le(out + 4, pl, 4);
    memcpy(out + 40, path, pl);
    return 40 + pl;
}

/* Makes n pipes; keeps the read ends in r[], returns the write ends in w[]. */
static bool pipes(int* r, int* w, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) != 0)
            return false;
        r[i] = p[0];
        w[i] = p[1];
    }
    return true;
}

static void close_all(int* fds, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        close(fds[i]);
}

/* After the write ends went to the daemon and ours are closed, every read
 * end must reach EOF (the daemon closed what it got), with at most one error
 * header (EINVAL/EPROTO) on the first. */
static bool all_released(int* r, size_t n)
{
    size_t i;
    bool ok = true;
    for (i = 0; i < n; i++) {
        unsigned char buf[SFD_MAX_RESP_SIZE];
        ssize_t k = read_msg(r[i], buf, sizeof(buf), T_MS);
        if (k == SFD_HDR_SIZE)
            k = (sfd_get_stat(buf) == EINVAL || sfd_get_stat(buf) == EPROTO) &&
                        wait_eof(r[i], T_MS)
                    ? 0
                    : -1;
        if (k != 0)
            ok = false;
    }
    return ok;
}

static void test_daemon_survives_bad_datagrams(void)
{
    struct env* e;
    static unsigned char big[100000];
    unsigned char req[128];
    int r[16], w[16], sndbuf = 1 << 20;
    size_t len;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "ok", NULL, 5000, 4));

    /* Zero-length. */
    CHECK(send_raw(e->srv, "", 0, NULL, 0) == 0);

    /* Oversized: a valid start followed by far too much. */
    CHECK(setsockopt(e->srv, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
    len = read_request(big, 1, "ok");
    memset(big + len, 'x', sizeof(big) - len);
    CHECK(pipes(r, w, 1));
    CHECK(send_raw(e->srv, big, sizeof(big), w, 1) == (ssize_t)sizeof(big));
    close_all(w, 1);
    CHECK(all_released(r, 1));
    close_all(r, 1);

    /* Too many descriptors for a Read (3 instead of 1). */
    len = read_request(req, 1, "ok");
    CHECK(pipes(r, w, 3));
    CHECK(send_raw(e->srv, req, len, w, 3) == (ssize_t)len);
    close_all(w, 3);
    CHECK(all_released(r, 3));
    close_all(r, 3);

    /* More descriptors than the daemon has room for. */
    CHECK(pipes(r, w, 16));
    CHECK(send_raw(e->srv, req, len, w, 16) == (ssize_t)len);
    close_all(w, 16);
    CHECK(all_released(r, 16));
    close_all(r, 16);

    /* Too few: a Send (needs status + destination) with one. */
    req[1] = 2;
    CHECK(pipes(r, w, 1));
    CHECK(send_raw(e->srv, req, len, w, 1) == (ssize_t)len);
    close_all(w, 1);
    CHECK(all_released(r, 1));
    close_all(r, 1);

    /* Unknown protocol version. */
    len = read_request(req, 99, "ok");
    CHECK(pipes(r, w, 1));
    CHECK(send_raw(e->srv, req, len, w, 1) == (ssize_t)len);
    close_all(w, 1);
    CHECK(all_released(r, 1));
    close_all(r, 1);

    /* Garbage with descriptors. */
    CHECK(pipes(r, w, 2));
    CHECK(send_raw(e->srv, "zz", 2, w, 2) == 2);
    close_all(w, 2);
    CHECK(all_released(r, 2));
    close_all(r, 2);

    /* Still alive, still serving. */
    CHECK(kill(e->pid, 0) == 0);
    {
        struct outcome o;
        unsigned char buf[5000];
        int fd = sfd_read(e->srv, "ok", 0, 0, false);
        CHECK(fd >= 0);
        CHECK(read_info(fd, &o, T_MS) && o.got_info && o.info.size == 5000);
        CHECK(read_all(fd, buf, sizeof(buf), T_MS) == 5000);
        CHECK(is_pattern(buf, 5000, 0, 4));
        close(fd);
    }
}

int main(void)
{
    static const struct sfd_test tests[] = {
        { "emfile_at_the_limit", test_emfile_at_the_limit },
        { "slot_reuse_after_cancel", test_slot_reuse_after_cancel },
        { "open_timeout", test_open_timeout },
        { "cancel_in_flight", test_cancel_in_flight },
        { "cancel_inside_the_header", test_cancel_inside_the_header },
        { "shutdown_with_live_transfers", test_shutdown_with_live_transfers },
        { "daemon_survives_bad_datagrams", test_daemon_survives_bad_datagrams },
    };
    return sfd_run_tests(tests, N_ELEMS(tests));
}
