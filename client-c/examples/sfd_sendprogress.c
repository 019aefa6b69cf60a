/*
 * sfd_sendprogress - send a file to a TCP peer through sendfiled
 * (sfd_send), reporting progress on stderr.
 *
 * usage: sfd_sendprogress SOCKDIR NAME PATH HOST PORT
 *
 * Connects to HOST:PORT, hands the connected socket to the daemon with
 * sfd_send(), and follows the status channel: the file info, then progress
 * messages, then completion or an error. Exits 0 on completion.
 */
#include <sendfiled.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char* what, int err)
{
    fprintf(stderr, "sfd_sendprogress: %s: %s\n", what, strerror(err));
    return 1;
}

static int tcp_connect(const char* host, const char* port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, r;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "sfd_sendprogress: %s: %s\n", host, gai_strerror(r));
        errno = EHOSTUNREACH;
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int main(int argc, char** argv)
{
    unsigned char msg[SFD_MAX_RESP_SIZE];
    struct sfd_file_info info;
    struct sfd_xfer_stat xs;
    size_t sent = 0;
    ssize_t n;
    int srv, sock, st;

    if (argc != 6) {
        fprintf(stderr, "usage: sfd_sendprogress SOCKDIR NAME PATH HOST PORT\n");
        return 2;
    }
    srv = sfd_connect(argv[1], argv[2]);
    if (srv < 0)
        return fail("connect to sendfiled", errno);
    sock = tcp_connect(argv[4], argv[5]);
    if (sock < 0)
        return fail(argv[4], errno);

    st = sfd_send(srv, argv[3], sock, 0, 0, false);
    if (st < 0)
        return fail(argv[3], errno);
    /* The daemon holds its own copy of the socket now. */
    close(sock);
    close(srv);

    n = read(st, msg, sizeof(struct sfd_file_info));
    if (n < SFD_HDR_SIZE)
        return fail("status channel", n < 0 ? errno : EPROTO);
    if (!sfd_unmarshal_file_info(&info, msg))
        return fail(argv[3], sfd_get_stat(msg));
    fprintf(stderr, "sending %s: %zu bytes\n", argv[3], info.size);

    for (;;) {
        n = read(st, msg, sizeof(struct sfd_xfer_stat));
        if (n == 0)
            return fail("status channel", EPIPE); /* closed early */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail("status channel", errno);
        }
        if (!sfd_unmarshal_xfer_stat(&xs, msg))
            return fail("transfer", sfd_get_stat(msg));
        if (sfd_xfer_complete(&xs))
            break;
        sent += xs.size;
        fprintf(stderr, "\r%zu/%zu bytes (%3.0f%%)", sent, info.size,
                info.size ? 100.0 * (double)sent / (double)info.size : 100.0);
    }
    fprintf(stderr, "\rdone: %zu bytes\n", sent);
    close(st);
    return 0;
}
