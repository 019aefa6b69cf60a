/*
 * sfd_cat - copy a file to standard output through sendfiled (sfd_read).
 *
 * usage: sfd_cat SOCKDIR NAME PATH [OFFSET [LEN]]
 *
 * Connects to the daemon NAME whose socket is in SOCKDIR, asks it to read
 * PATH (relative to the daemon's root) into a pipe, and copies what arrives
 * to stdout: first the file info (which says how many bytes follow), then
 * the data. Exits 0 if exactly that many bytes were copied.
 */
#include <sendfiled.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char* what, int err)
{
    fprintf(stderr, "sfd_cat: %s: %s\n", what, strerror(err));
    return 1;
}

int main(int argc, char** argv)
{
    unsigned char msg[SFD_MAX_RESP_SIZE];
    struct sfd_file_info info;
    char buf[65536];
    size_t copied = 0;
    off_t offset = 0;
    size_t len = 0;
    ssize_t n;
    int srv, fd;

    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: sfd_cat SOCKDIR NAME PATH [OFFSET [LEN]]\n");
        return 2;
    }
    if (argc > 4)
        offset = (off_t)strtoll(argv[4], NULL, 10);
    if (argc > 5)
        len = (size_t)strtoull(argv[5], NULL, 10);

    srv = sfd_connect(argv[1], argv[2]);
    if (srv < 0)
        return fail("connect", errno);
    fd = sfd_read(srv, argv[3], offset, len, false);
    if (fd < 0)
        return fail(argv[3], errno);
    close(srv);

    /* The first message: the file info, or an error header. */
    n = read(fd, msg, sizeof(struct sfd_file_info));
    if (n < SFD_HDR_SIZE)
        return fail("reading the file info", n < 0 ? errno : EPROTO);
    if (!sfd_unmarshal_file_info(&info, msg))
        return fail(argv[3], sfd_get_stat(msg));

    /* Then exactly info.size bytes of data, then EOF. */
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        size_t off = 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail("read", errno);
        }
        while (off < (size_t)n) {
            ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)n - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return fail("write", errno);
            }
            off += (size_t)w;
        }
        copied += (size_t)n;
    }
    close(fd);
    if (copied != info.size) {
        fprintf(stderr, "sfd_cat: got %zu of %zu bytes\n", copied, info.size);
        return 1;
    }
    return 0;
}
