/*
 * test_api.c - the library's own behaviour: message decoding, argument
 * checks and errno values, limits enforced before anything is sent, spawn and
 * connect failures. Mostly without a daemon (a socket pair stands in for the
 * request socket).
 */
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* A datagram pair: [0] plays the request socket, [1] the daemon. */
static bool dgram_pair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0;
}

static bool nothing_arrived(int fd) { return !wait_readable(fd, 0); }

static void test_get_cmd_and_stat(void)
{
    unsigned char err[SFD_HDR_SIZE] = { SFD_FILE_INFO, ENOENT };
    CHECK(sfd_get_cmd(err) == SFD_FILE_INFO);
    CHECK(sfd_get_stat(err) == ENOENT);
    err[0] = SFD_XFER_STAT;
    err[1] = SFD_STAT_OK;
    CHECK(sfd_get_cmd(err) == SFD_XFER_STAT);
    CHECK(sfd_get_stat(err) == SFD_STAT_OK);
    CHECK_ERRNO(sfd_get_cmd(NULL), -1, EINVAL);
    CHECK_ERRNO(sfd_get_stat(NULL), -1, EINVAL);
}

static void test_unmarshal_file_info(void)
{
    struct sfd_file_info in, out, untouched;
    unsigned char buf[SFD_MAX_RESP_SIZE + 1];
    unsigned char hdr[SFD_HDR_SIZE] = { SFD_FILE_INFO, EMFILE };

    memset(&in, 0, sizeof(in));
    in.cmd = SFD_FILE_INFO;
    in.stat = SFD_STAT_OK;
    in.size = 123456;
    in.atime = 1;
    in.mtime = 1700000000;
    in.ctime = 3;
    in.txnid = (size_t)0x1234567890abcdefULL;
    /* Deliberately misaligned: the library must not care. */
    memcpy(buf + 1, &in, sizeof(in));
    memset(&out, 0xee, sizeof(out));
    CHECK(sfd_unmarshal_file_info(&out, buf + 1));
    CHECK(out.cmd == SFD_FILE_INFO && out.stat == SFD_STAT_OK);
    CHECK(out.size == in.size && out.txnid == in.txnid);
    CHECK(out.atime == 1 && out.mtime == 1700000000 && out.ctime == 3);

    /* An error header: false, out untouched, errno unchanged; only the two
     * header bytes are read (valgrind would see anything else). */
    memset(&out, 0x5a, sizeof(out));
    memcpy(&untouched, &out, sizeof(out));
    errno = 0;
    CHECK(!sfd_unmarshal_file_info(&out, hdr));
    CHECK(errno == 0);
    CHECK(memcmp(&out, &untouched, sizeof(out)) == 0);

    /* A transfer status is not a file info. */
    in.cmd = SFD_XFER_STAT;
    CHECK(!sfd_unmarshal_file_info(&out, &in));
    CHECK(memcmp(&out, &untouched, sizeof(out)) == 0);

    CHECK_ERRNO(sfd_unmarshal_file_info(NULL, buf + 1), false, EINVAL);
    CHECK_ERRNO(sfd_unmarshal_file_info(&out, NULL), false, EINVAL);
}

static void test_unmarshal_xfer_stat_and_complete(void)
{
    struct sfd_xfer_stat in, out;
    unsigned char hdr[SFD_HDR_SIZE] = { SFD_XFER_STAT, ECANCELED };
    struct sfd_file_info fi;

    memset(&in, 0, sizeof(in));
    in.cmd = SFD_XFER_STAT;
    in.size = 4096;
    CHECK(sfd_unmarshal_xfer_stat(&out, &in));
    CHECK(out.size == 4096 && !sfd_xfer_complete(&out));

    in.size = SIZE_MAX;
    CHECK(sfd_unmarshal_xfer_stat(&out, &in));
    CHECK(sfd_xfer_complete(&out));

    /* Completion needs the right command and an OK status too. */
    in.stat = EIO;
    CHECK(!sfd_xfer_complete(&in));
    in.stat = SFD_STAT_OK;
    in.cmd = SFD_FILE_INFO;
    CHECK(!sfd_xfer_complete(&in));

    CHECK(!sfd_unmarshal_xfer_stat(&out, hdr));
    memset(&fi, 0, sizeof(fi));
    fi.cmd = SFD_FILE_INFO;
    CHECK(!sfd_unmarshal_xfer_stat(&out, &fi));

    CHECK_ERRNO(sfd_unmarshal_xfer_stat(NULL, &in), false, EINVAL);
    CHECK_ERRNO(sfd_unmarshal_xfer_stat(&out, NULL), false, EINVAL);
    CHECK_ERRNO(sfd_xfer_complete(NULL), false, EINVAL);
}

static void test_bad_arguments(void)
{
    struct sfd_file_info info;
    int sv[2], d[2], st = -7;
    char dummy = 'x';
    CHECK(dgram_pair(sv));
    CHECK(stream_pair(d));

    CHECK_ERRNO(sfd_read(sv[0], NULL, 0, 0, false), -1, EINVAL);
    CHECK_ERRNO(sfd_read(-1, "f", 0, 0, false), -1, EBADF);
    CHECK_ERRNO(sfd_read(sv[0], "f", -1, 0, false), -1, EINVAL);
    CHECK_ERRNO(sfd_open(sv[0], NULL, 0, 0, false), -1, EINVAL);
    CHECK_ERRNO(sfd_open(-3, "f", 0, 0, false), -1, EBADF);
    CHECK_ERRNO(sfd_open(sv[0], "f", -5, 0, false), -1, EINVAL);
    CHECK_ERRNO(sfd_send(sv[0], NULL, d[0], 0, 0, false), -1, EINVAL);
    CHECK_ERRNO(sfd_send(sv[0], "f", -1, 0, 0, false), -1, EBADF);
    CHECK_ERRNO(sfd_send(-1, "f", d[0], 0, 0, false), -1, EBADF);
    CHECK_ERRNO(sfd_send(sv[0], "f", d[0], -1, 0, false), -1, EINVAL);
    CHECK_ERRNO(sfd_send_hdtr(sv[0], "f", d[0], 0, 0, NULL, 1, NULL, 0, false),
                -1, EINVAL);
    CHECK_ERRNO(sfd_send_hdtr(sv[0], "f", d[0], 0, 0, &dummy, 1, NULL, 3, false),
                -1, EINVAL);
    CHECK_ERRNO(sfd_send_hdtr(sv[0], NULL, d[0], 0, 0, NULL, 0, NULL, 0, false),
                -1, EINVAL);
    CHECK_ERRNO(sfd_send_here(sv[0], "f", d[0], 0, 0, NULL, 0, NULL, 0, false,
                              NULL, &st), -1, EINVAL);
    CHECK_ERRNO(sfd_send_here(sv[0], "f", d[0], 0, 0, NULL, 0, NULL, 0, false,
                              &info, NULL), -1, EINVAL);
    CHECK_ERRNO(sfd_send_here(sv[0], "f", -1, 0, 0, NULL, 0, NULL, 0, false,
                              &info, &st), -1, EBADF);
    CHECK(st == -7);
    CHECK_ERRNO(sfd_send_open(sv[0], 1, -1), false, EBADF);
    CHECK_ERRNO(sfd_send_open(-1, 1, d[0]), false, EBADF);
    CHECK_ERRNO(sfd_send_open_hdtr(sv[0], 1, d[0], NULL, 2, NULL, 0), false, EINVAL);
    CHECK_ERRNO(sfd_send_open_hdtr(sv[0], 1, -1, NULL, 0, NULL, 0), false, EBADF);
    CHECK_ERRNO(sfd_cancel(-1, 1), false, EBADF);
    CHECK_ERRNO(sfd_connect(NULL, "x"), -1, EINVAL);
    CHECK_ERRNO(sfd_connect("/tmp", NULL), -1, EINVAL);
    CHECK_ERRNO(sfd_connect("/tmp", ""), -1, EINVAL);
    CHECK_ERRNO(sfd_spawn(NULL, "/tmp", "run", 0, 0), -1, EINVAL);
    CHECK_ERRNO(sfd_spawn("x", NULL, "run", 0, 0), -1, EINVAL);
    CHECK_ERRNO(sfd_spawn("x", "/tmp", NULL, 0, 0), -1, EINVAL);
    CHECK_ERRNO(sfd_spawn("x", "/tmp", "run", -1, 0), -1, EINVAL);
    CHECK_ERRNO(sfd_spawn("x", "/tmp", "run", 0, -1), -1, EINVAL);
    CHECK_ERRNO(sfd_shutdown(0), -1, EINVAL);
    CHECK_ERRNO(sfd_shutdown(-1), -1, EINVAL);

    /* None of that reached the "daemon". */
    CHECK(nothing_arrived(sv[1]));
    close(sv[0]);
    close(sv[1]);
    close(d[0]);
    close(d[1]);
}

static void test_limits_fail_before_sending(void)
{
    int sv[2], d[2];
    static char path[SFD_MAX_PATH_LEN + 2];
    static unsigned char hdtr[SFD_MAX_HDTR_LEN + 1];
    CHECK(dgram_pair(sv));
    CHECK(stream_pair(d));

    memset(path, 'a', SFD_MAX_PATH_LEN + 1);
    path[SFD_MAX_PATH_LEN + 1] = '\0';
    CHECK_ERRNO(sfd_read(sv[0], path, 0, 0, false), -1, ENAMETOOLONG);
    CHECK_ERRNO(sfd_open(sv[0], path, 0, 0, false), -1, ENAMETOOLONG);
    CHECK_ERRNO(sfd_send(sv[0], path, d[0], 0, 0, false), -1, ENAMETOOLONG);
    CHECK_ERRNO(sfd_send_hdtr(sv[0], path, d[0], 0, 0, NULL, 0, NULL, 0, false),
                -1, ENAMETOOLONG);

    CHECK_ERRNO(sfd_send_hdtr(sv[0], "f", d[0], 0, 0, hdtr, SFD_MAX_HDTR_LEN + 1,
                              NULL, 0, false), -1, EMSGSIZE);
    CHECK_ERRNO(sfd_send_hdtr(sv[0], "f", d[0], 0, 0, hdtr, SFD_MAX_HDTR_LEN,
                              hdtr, 1, false), -1, EMSGSIZE);
    CHECK_ERRNO(sfd_send_hdtr(sv[0], "f", d[0], 0, 0, NULL, 0, hdtr,
                              SFD_MAX_HDTR_LEN + 1, false), -1, EMSGSIZE);
    /* Lengths whose sum wraps around must not slip through. */
    CHECK_ERRNO(sfd_send_hdtr(sv[0], "f", d[0], 0, 0, hdtr, SIZE_MAX, hdtr, 2,
                              false), -1, EMSGSIZE);
    CHECK_ERRNO(sfd_send_open_hdtr(sv[0], 7, d[0], hdtr, 4096, hdtr, 4097), false,
                EMSGSIZE);
    CHECK(nothing_arrived(sv[1]));

    /* Exactly at the limits is fine. */
    {
        int fd;
        unsigned char got[16384];
        path[SFD_MAX_PATH_LEN] = '\0';
        fd = sfd_send_hdtr(sv[0], path, d[0], 0, 0, hdtr, SFD_MAX_HDTR_LEN / 2,
                           hdtr, SFD_MAX_HDTR_LEN / 2, false);
        CHECK(fd >= 0);
        CHECK(recv(sv[1], got, sizeof(got), 0) > SFD_MAX_PATH_LEN + SFD_MAX_HDTR_LEN);
        close(fd);
        CHECK(sfd_send_open_hdtr(sv[0], 7, d[0], hdtr, SFD_MAX_HDTR_LEN, NULL, 0));
        CHECK(recv(sv[1], got, sizeof(got), 0) > SFD_MAX_HDTR_LEN);
    }
    close(sv[0]);
    close(sv[1]);
    close(d[0]);
    close(d[1]);
}

static void test_returned_descriptors(void)
{
    int sv[2], fd;
    CHECK(dgram_pair(sv));
    fd = sfd_read(sv[0], "f", 0, 0, true);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    fd = sfd_open(sv[0], "f", 0, 0, false);
    CHECK(fd >= 0);
    CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    close(fd);
    close(sv[0]);
    close(sv[1]);
}

/* A server that never reads its queue (a stalled or fake daemon): once the
 * queue is full a call waits a bounded time (sendfiled.h, ERRORS) and fails
 * with EAGAIN, whatever the socket's O_NONBLOCK; it never hangs. */
static void test_a_full_request_queue_is_eagain(void)
{
    int sv[2], i, fl;
    bool failed = false;
    CHECK(dgram_pair(sv));
    fl = fcntl(sv[0], F_GETFL);
    CHECK(fl >= 0 && !(fl & O_NONBLOCK));
    for (i = 0; i < 4096 && !failed; i++) {
        errno = 0;
        failed = !sfd_cancel(sv[0], 7);
    }
    CHECK(failed);
    CHECK(errno == EAGAIN);
    /* Still bounded on the next call, and the queue is intact. */
    errno = 0;
    CHECK(!sfd_cancel(sv[0], 7) && errno == EAGAIN);
    CHECK(!nothing_arrived(sv[1]));
    close(sv[0]);
    close(sv[1]);
}

static void test_connect_errors(void)
{
    char dir[128], path[256], longdir[200];
    int fd;
    CHECK(temp_dir(dir, sizeof(dir)));
    CHECK_ERRNO(sfd_connect(dir, "nobody"), -1, ENOENT);
    /* A regular file where the socket should be. */
    snprintf(path, sizeof(path), "%s/plain", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERRNO(sfd_connect(dir, "plain"), -1, ECONNREFUSED);
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    CHECK_ERRNO(sfd_connect(longdir, "x"), -1, ENAMETOOLONG);
}

static void test_spawn_errors(void)
{
    char dir[128], missing[160], bin[512] = "";
    const char* b = getenv("SENDFILED_BIN");
    CHECK(temp_dir(dir, sizeof(dir)));
    if (b)
        snprintf(bin, sizeof(bin), "%s", b);
    /* No such executable. */
    test_setenv("SENDFILED_BIN", "/nonexistent/sendfiled");
    CHECK_ERRNO(sfd_spawn("x", dir, ".", 0, 0), -1, ENOENT);
    test_setenv("SENDFILED_BIN", b ? bin : NULL);
    /* The daemon's own errno: its root does not exist. */
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    errno = 0;
    CHECK(sfd_spawn("x", missing, "run", 0, 0) == -1);
    CHECK(errno == ENOENT);
}

/* A missing socket directory is created (with its parents); a file in its
 * way is ENOTDIR; as root without SENDFILED_ALLOW_ROOT=1 the daemon refuses
 * to start: EPERM. */
static void test_spawn_socket_dir_and_root(void)
{
    char dir[128], path[256], name[64], allow[16] = "";
    const char* a = getenv("SENDFILED_ALLOW_ROOT");
    struct stat st;
    pid_t pid;
    int fd;
    CHECK(temp_dir(dir, sizeof(dir)));
    snprintf(name, sizeof(name), "sd%ld", (long)getpid());
    pid = sfd_spawn(name, dir, "/new/sub", 0, 0);
    CHECK(pid > 0);
    snprintf(path, sizeof(path), "%s/new/sub", dir);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    if (pid > 0) {
        fd = sfd_connect(path, name);
        CHECK(fd >= 0);
        if (fd >= 0)
            close(fd);
        CHECK(sfd_shutdown(pid) == 0);
    }
    snprintf(path, sizeof(path), "%s/file", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK_ERRNO(sfd_spawn(name, dir, "file", 0, 0), -1, ENOTDIR);
    CHECK_ERRNO(sfd_spawn(name, dir, "file/sub", 0, 0), -1, ENOTDIR);
    if (geteuid() == 0) {
        if (a)
            snprintf(allow, sizeof(allow), "%s", a);
        test_setenv("SENDFILED_ALLOW_ROOT", NULL);
        CHECK_ERRNO(sfd_spawn(name, dir, "run", 0, 0), -1, EPERM);
        test_setenv("SENDFILED_ALLOW_ROOT", a ? allow : NULL);
    }
}

static void test_shutdown_errors(void)
{
    pid_t pid = fork();
    int st;
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    CHECK(waitpid(pid, &st, 0) == pid);
    /* Reaped: no such process any more (or, if the pid was reused already,
     * not our child). */
    errno = 0;
    CHECK(sfd_shutdown(pid) == -1);
    CHECK(errno == ESRCH || errno == ECHILD || errno == EPERM);
}

int main(void)
{
    static const struct sfd_test tests[] = {
        { "get_cmd_and_stat", test_get_cmd_and_stat },
        { "unmarshal_file_info", test_unmarshal_file_info },
        { "unmarshal_xfer_stat_and_complete", test_unmarshal_xfer_stat_and_complete },
        { "bad_arguments", test_bad_arguments },
        { "limits_fail_before_sending", test_limits_fail_before_sending },
        { "returned_descriptors", test_returned_descriptors },
        { "a_full_request_queue_is_eagain", test_a_full_request_queue_is_eagain },
        { "connect_errors", test_connect_errors },
        { "spawn_errors", test_spawn_errors },
        { "spawn_socket_dir_and_root", test_spawn_socket_dir_and_root },
        { "shutdown_errors", test_shutdown_errors },
    };
    return sfd_run_tests(tests, N_ELEMS(tests));
}
