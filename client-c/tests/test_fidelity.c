/*
 * test_fidelity.c - the status channel as a client written for the original
 * sendfiled reads it: with plain read(2) calls of the original's sizes and
 * no knowledge of this project's additions.
 *
 * - a small sfd_send: exactly one sfd_xfer_stat after the file info, and it
 *   is the completion;
 * - sfd_send_open of a small file: one read of up to 48 bytes returns
 *   exactly the 16-byte completion;
 * - sfd_cancel of an open file, of a running send and of a Read: the next
 *   read on the channel returns 0 (no message);
 * - sfd_shutdown with opens held: their channels read 0;
 * - "/" and "//" are EINVAL, "" is ENOENT;
 * - a sfd_send_open after the open-file deadline is refused, every time.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* One read of exactly an sfd_file_info; true if it is a good one. */
static bool got_file_info(int fd, struct sfd_file_info* fi)
{
    unsigned char buf[sizeof(struct sfd_file_info)];
    if (!wait_readable(fd, T_MS))
        return false;
    return read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf) &&
           sfd_unmarshal_file_info(fi, buf);
}

/* read(2) returns 0 at once or after the daemon closes: no message. */
static bool next_read_is_eof(int fd)
{
    unsigned char buf[SFD_MAX_RESP_SIZE];
    if (!wait_readable(fd, T_MS))
        return false;
    return read(fd, buf, sizeof(buf)) == 0;
}

static void test_small_send_is_info_then_completion(void)
{
    struct env* e;
    struct sfd_file_info fi;
    struct sfd_xfer_stat xs;
    unsigned char buf[sizeof(struct sfd_xfer_stat)], data[32];
    int st, p[2];
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "ten", "0123456789", 10, 0));
    CHECK(pipe(p) == 0);
    st = sfd_send(e->srv, "ten", p[1], 0, 0, false);
    close(p[1]);
    CHECK(st >= 0);
    CHECK(got_file_info(st, &fi) && fi.size == 10);
    /* The one message a client of the original reads next. */
    CHECK(wait_readable(st, T_MS));
    CHECK(read(st, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
    CHECK(sfd_unmarshal_xfer_stat(&xs, buf));
    CHECK(sfd_xfer_complete(&xs));
    CHECK(next_read_is_eof(st));
    CHECK(read_all(p[0], data, sizeof(data), T_MS) == 10);
    CHECK(memcmp(data, "0123456789", 10) == 0);
    close(st);
    close(p[0]);
}

static void test_send_open_of_a_small_file_is_one_completion(void)
{
    struct env* e;
    struct sfd_file_info fi;
    struct sfd_xfer_stat xs;
    unsigned char buf[48], data[16];
    int st, p[2];
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "abc", "abc", 3, 0));
    st = sfd_open(e->srv, "abc", 0, 0, false);
    CHECK(st >= 0);
    CHECK(got_file_info(st, &fi) && fi.size == 3);
    CHECK(pipe(p) == 0);
    CHECK(sfd_send_open(e->srv, fi.txnid, p[1]));
    close(p[1]);
    CHECK(wait_readable(st, T_MS));
    CHECK(read(st, buf, sizeof(buf)) == (ssize_t)sizeof(struct sfd_xfer_stat));
    CHECK(sfd_unmarshal_xfer_stat(&xs, buf) && sfd_xfer_complete(&xs));
    CHECK(next_read_is_eof(st));
    CHECK(read_all(p[0], data, sizeof(data), T_MS) == 3);
    close(st);
    close(p[0]);
}

static void test_cancel_closes_without_a_message(void)
{
    enum { SZ = 8 * 1024 * 1024 };
    struct env* e;
    struct sfd_file_info fi;
    unsigned char* buf;
    ssize_t n;
    int st, p[2], rd;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "big", NULL, SZ, 7));

    /* An open file. */
    st = sfd_open(e->srv, "big", 0, 0, false);
    CHECK(st >= 0);
    CHECK(got_file_info(st, &fi));
    CHECK(sfd_cancel(e->srv, fi.txnid));
    CHECK(next_read_is_eof(st));
    close(st);

    /* A send stuck on a pipe nobody reads (a pipe holds far less than the
     * file, and less than the daemon reports progress for). */
    CHECK(pipe(p) == 0);
    st = sfd_send(e->srv, "big", p[1], 0, 0, false);
    close(p[1]);
    CHECK(st >= 0);
    CHECK(got_file_info(st, &fi) && fi.size == SZ);
    CHECK(sfd_cancel(e->srv, fi.txnid));
    CHECK(next_read_is_eof(st));
    close(st);
    close(p[0]);

    /* A Read never read past its file info: the data pipe holds a prefix
     * of the file and then ends, with no message after the data. */
    rd = sfd_read(e->srv, "big", 0, 0, false);
    CHECK(rd >= 0);
    CHECK(got_file_info(rd, &fi) && fi.size == SZ);
    CHECK(sfd_cancel(e->srv, fi.txnid));
    buf = malloc(SZ);
    CHECK(buf != NULL);
    n = read_all(rd, buf, SZ, T_MS);
    if (n < 0 || n >= SZ || !is_pattern(buf, (size_t)n, 0, 7)) {
        free(buf);
        close(rd);
        CHECK(!"a cancelled Read ends with a prefix of the file");
    }
    free(buf);
    close(rd);
}

static void test_shutdown_closes_held_opens_without_a_message(void)
{
    struct env* e;
    struct sfd_file_info fi;
    int a, b;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", "x", 1, 0));
    a = sfd_open(e->srv, "f", 0, 0, false);
    CHECK(a >= 0 && got_file_info(a, &fi));
    b = sfd_open(e->srv, "f", 0, 0, false);
    CHECK(b >= 0 && got_file_info(b, &fi));
    env_stop(e); /* sfd_shutdown; must exit 0 */
    CHECK(!test_failed());
    CHECK(next_read_is_eof(a));
    CHECK(next_read_is_eof(b));
    close(a);
    close(b);
}

static void test_the_root_itself_is_einval(void)
{
    static const struct {
        const char* path;
        int err;
    } cases[] = { { "/", EINVAL }, { "//", EINVAL }, { "", ENOENT } };
    struct env* e;
    struct outcome o;
    size_t i;
    int fd, p[2];
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(pipe(p) == 0);
    for (i = 0; i < N_ELEMS(cases); i++) {
        fd = sfd_read(e->srv, cases[i].path, 0, 0, false);
        CHECK(fd >= 0);
        CHECK(read_info(fd, &o, T_MS) && o.info_err == cases[i].err);
        CHECK(wait_eof(fd, T_MS));
        close(fd);
        fd = sfd_send(e->srv, cases[i].path, p[1], 0, 0, false);
        CHECK(fd >= 0);
        CHECK(read_info(fd, &o, T_MS) && o.info_err == cases[i].err);
        close(fd);
        fd = sfd_open(e->srv, cases[i].path, 0, 0, false);
        CHECK(fd >= 0);
        CHECK(read_info(fd, &o, T_MS) && o.info_err == cases[i].err);
        close(fd);
    }
    close(p[0]);
    close(p[1]);
}

static void test_send_open_after_the_deadline_is_refused(void)
{
    enum { TIMEOUT_MS = 10, RUNS = 200 };
    struct env* e;
    struct sfd_file_info fi;
    struct timespec got_info;
    unsigned char buf[SFD_MAX_RESP_SIZE];
    int run, st, p[2];
    CHECK((e = env_start(0, TIMEOUT_MS)) != NULL);
    CHECK(put_file(e, "f", "data", 4, 0));
    for (run = 0; run < RUNS; run++) {
        st = sfd_open(e->srv, "f", 0, 0, false);
        CHECK(st >= 0);
        CHECK(got_file_info(st, &fi));
        /* The daemon set the deadline before it wrote the info, so once
         * the timeout has passed since the info arrived, so has it. */
        clock_gettime(CLOCK_MONOTONIC, &got_info);
        wait_since(&got_info, TIMEOUT_MS);
        CHECK(pipe(p) == 0);
        CHECK(sfd_send_open(e->srv, fi.txnid, p[1]));
        close(p[1]);
        CHECK(wait_readable(st, T_MS));
        CHECK(read(st, buf, sizeof(buf)) == SFD_HDR_SIZE);
        CHECK(sfd_get_cmd(buf) == SFD_XFER_STAT && sfd_get_stat(buf) == ETIMEDOUT);
        CHECK(next_read_is_eof(st));
        /* Nothing was sent: the destination ends empty. */
        CHECK(wait_eof(p[0], T_MS));
        close(st);
        close(p[0]);
    }
}

int main(void)
{
    static const struct sfd_test tests[] = {
        { "small_send_is_info_then_completion", test_small_send_is_info_then_completion },
        { "send_open_of_a_small_file_is_one_completion",
          test_send_open_of_a_small_file_is_one_completion },
        { "cancel_closes_without_a_message", test_cancel_closes_without_a_message },
        { "shutdown_closes_held_opens_without_a_message",
          test_shutdown_closes_held_opens_without_a_message },
        { "the_root_itself_is_einval", test_the_root_itself_is_einval },
        { "send_open_after_the_deadline_is_refused",
          test_send_open_after_the_deadline_is_refused },
    };
    return sfd_run_tests(tests, N_ELEMS(tests));
}
