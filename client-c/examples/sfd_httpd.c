/*
 * sfd_httpd - a tiny HTTP/1.1 file server on top of sendfiled.
 *
 * usage: sfd_httpd SOCKDIR NAME PORT
 *
 * Serves the root of the sendfiled daemon NAME (socket in SOCKDIR) on
 * 127.0.0.1:PORT (0 picks a free port). Prints "listening on 127.0.0.1:P"
 * on stdout once it accepts connections. Stops on SIGINT or SIGTERM.
 *
 * One thread, one non-blocking poll(2) loop. Per GET request:
 *
 *   1. sfd_open(path)                   -> a status pipe, polled for input
 *   2. the file info arrives            -> headers built from it
 *                                          (Content-Length, Last-Modified)
 *   3. sfd_send_open_hdtr(txnid, sock,  -> the daemon writes the headers and
 *                         headers)         the file to the socket, in order
 *   4. completion (or an error) arrives -> the connection is closed
 *
 * so the server never touches file data and never blocks on the disk.
 * Errors from the daemon map to status codes: ENOENT 404, EINVAL/EACCES 403
 * (not a regular file / not allowed), EMFILE 503, anything else 500.
 * Every response carries "Connection: close".
 */
#include <sendfiled.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define MAX_REQ 8192

enum state {
    FREE,
    READING,  /* reading the request head from the client */
    OPENING,  /* waiting for the file info on the status pipe */
    SENDING,  /* the daemon is sending; waiting for completion */
    REPLYING  /* writing an error response ourselves */
};

struct conn {
    enum state state;
    int sock;
    int status;
    char req[MAX_REQ];
    size_t reqlen;
    char path[MAX_REQ];
    char out[512];
    size_t outlen, outoff;
};

static struct conn conns[MAX_CONNS];
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void conn_close(struct conn* c)
{
    if (c->sock >= 0)
        close(c->sock);
    if (c->status >= 0)
        close(c->status);
    c->sock = c->status = -1;
    c->state = FREE;
}

/* Starts writing a short error response ourselves. */
static void reply_error(struct conn* c, int code, const char* reason)
{
    char body[128];
    int blen = snprintf(body, sizeof(body), "%d %s\n", code, reason);
    int n = snprintf(c->out, sizeof(c->out),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %d\r\n"
                     "Connection: close\r\n"
                     "\r\n%s",
                     code, reason, blen, body);
    c->outlen = n > 0 && (size_t)n < sizeof(c->out) ? (size_t)n : 0;
    c->outoff = 0;
    if (c->status >= 0)
        close(c->status);
    c->status = -1;
    c->state = REPLYING;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Turns the request target into a path relative to the served root:
 * percent-decoded, without the query, without the leading '/'. False for
 * anything that is not a plain absolute path or that climbs with "..". */
static bool target_to_path(const char* t, size_t tlen, char* out, size_t cap)
{
    size_t i, o = 0;
    if (tlen == 0 || t[0] != '/')
        return false;
    for (i = 1; i < tlen && t[i] != '?' && t[i] != '#'; i++) {
        char ch = t[i];
        if (ch == '%' && i + 2 < tlen && hexval(t[i + 1]) >= 0 && hexval(t[i + 2]) >= 0) {
            ch = (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]));
            i += 2;
        }
        if (ch == '\0' || o + 1 >= cap)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    if (o == 0 || out[o - 1] == '/') {
        const char* idx = "index.html";
        if (o + strlen(idx) + 1 > cap)
            return false;
        memcpy(out + o, idx, strlen(idx) + 1);
    }
    /* Reject ".." segments (the daemon confines paths to its root anyway). */
    for (i = 0; out[i]; i++) {
        if ((i == 0 || out[i - 1] == '/') && out[i] == '.' && out[i + 1] == '.' &&
            (out[i + 2] == '/' || out[i + 2] == '\0'))
            return false;
    }
    return true;
}

static const char* content_type(const char* path)
{
    const char* dot = strrchr(path, '.');
    if (!dot)
        return "application/octet-stream";
    if (strcmp(dot, ".html") == 0 || strcmp(dot, ".htm") == 0)
        return "text/html";
    if (strcmp(dot, ".txt") == 0)
        return "text/plain";
    if (strcmp(dot, ".css") == 0)
        return "text/css";
    if (strcmp(dot, ".js") == 0)
        return "text/javascript";
    return "application/octet-stream";
}

/* The request head is complete: parse it and ask the daemon to open. */
static void start_request(struct conn* c, int srv)
{
    const char* sp1 = memchr(c->req, ' ', c->reqlen);
    const char* sp2;
    if (!sp1) {
        reply_error(c, 400, "Bad Request");
        return;
    }
    sp2 = memchr(sp1 + 1, ' ', c->reqlen - (size_t)(sp1 + 1 - c->req));
    if (!sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        reply_error(c, 400, "Bad Request");
        return;
    }
    if ((size_t)(sp1 - c->req) != 3 || memcmp(c->req, "GET", 3) != 0) {
        reply_error(c, 405, "Method Not Allowed");
        return;
    }
    if (!target_to_path(sp1 + 1, (size_t)(sp2 - sp1 - 1), c->path, sizeof(c->path))) {
        reply_error(c, 400, "Bad Request");
        return;
    }

    c->status = sfd_open(srv, c->path, 0, 0, true);
    if (c->status < 0) {
        if (errno == ENAMETOOLONG)
            reply_error(c, 414, "URI Too Long");
        else
            reply_error(c, 500, "Internal Server Error");
        return;
    }
    c->state = OPENING;
}

static void on_readable_client(struct conn* c, int srv)
{
    for (;;) {
        ssize_t n;
        if (c->reqlen == sizeof(c->req)) {
            reply_error(c, 431, "Request Header Fields Too Large");
            return;
        }
        n = read(c->sock, c->req + c->reqlen, sizeof(c->req) - c->reqlen);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(c);
            return;
        }
        c->reqlen += (size_t)n;
        if (c->reqlen >= 4) {
            size_t i;
            for (i = 0; i + 3 < c->reqlen; i++)
                if (memcmp(c->req + i, "\r\n\r\n", 4) == 0) {
                    start_request(c, srv);
                    return;
                }
        }
    }
}

/* The file info (or a refusal) arrived: send headers + file in one request. */
static void on_file_info(struct conn* c, int srv)
{
    unsigned char msg[SFD_MAX_RESP_SIZE];
    struct sfd_file_info info;
    char hdr[512], date[64];
    struct tm tm;
    ssize_t n = read(c->status, msg, sizeof(struct sfd_file_info));
    int hlen;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < SFD_HDR_SIZE) {
        reply_error(c, 500, "Internal Server Error");
        return;
    }
    if (!sfd_unmarshal_file_info(&info, msg)) {
        switch (sfd_get_stat(msg)) {
        case ENOENT:
        case ENOTDIR:
            reply_error(c, 404, "Not Found");
            return;
        case EINVAL:
        case EACCES:
            reply_error(c, 403, "Forbidden");
            return;
        case EMFILE:
            reply_error(c, 503, "Service Unavailable");
            return;
        default:
            reply_error(c, 500, "Internal Server Error");
            return;
        }
    }
    if (!gmtime_r(&info.mtime, &tm) ||
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        date[0] = '\0';
    hlen = snprintf(hdr, sizeof(hdr),
                    "HTTP/1.1 200 OK\r\n"
                    "Content-Type: %s\r\n"
                    "Content-Length: %zu\r\n"
                    "Last-Modified: %s\r\n"
                    "Connection: close\r\n"
                    "\r\n",
                    content_type(c->path), info.size, date);
    if (hlen <= 0 || (size_t)hlen >= sizeof(hdr) ||
        !sfd_send_open_hdtr(srv, info.txnid, c->sock, hdr, (size_t)hlen, NULL, 0)) {
        sfd_cancel(srv, info.txnid);
        reply_error(c, 500, "Internal Server Error");
        return;
    }
    c->state = SENDING;
}

/* Progress, completion or failure of a transfer in flight. */
static void on_progress(struct conn* c)
{
    for (;;) {
        unsigned char msg[SFD_MAX_RESP_SIZE];
        struct sfd_xfer_stat xs;
        ssize_t n = read(c->status, msg, sizeof(struct sfd_xfer_stat));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF, an error (the client went away, ...) or completion: done.
         * The headers are out already, so all we can do is close. */
        if (n <= 0 || !sfd_unmarshal_xfer_stat(&xs, msg) || sfd_xfer_complete(&xs)) {
            conn_close(c);
            return;
        }
    }
}

static void on_writable_client(struct conn* c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = write(c->sock, c->out + c->outoff, c->outlen - c->outoff);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            break;
        c->outoff += (size_t)n;
    }
    conn_close(c);
}

static void on_accept(int lsock)
{
    for (;;) {
        size_t i;
        int s = accept(lsock, NULL, NULL);
        if (s < 0)
            return; /* EAGAIN, or a transient error: poll again */
        for (i = 0; i < MAX_CONNS && conns[i].state != FREE; i++)
            ;
        if (i == MAX_CONNS || set_nonblock(s) < 0) {
            close(s);
            continue;
        }
        memset(&conns[i], 0, sizeof(conns[i]));
        conns[i].sock = s;
        conns[i].status = -1;
        conns[i].state = READING;
    }
}

int main(int argc, char** argv)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    struct sigaction sa;
    int srv, lsock, one = 1;
    size_t i;

    if (argc != 4) {
        fprintf(stderr, "usage: sfd_httpd SOCKDIR NAME PORT\n");
        return 2;
    }
    srv = sfd_connect(argv[1], argv[2]);
    if (srv < 0) {
        fprintf(stderr, "sfd_httpd: connect to sendfiled: %s\n", strerror(errno));
        return 1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lsock = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)atoi(argv[3]));
    if (lsock < 0 || setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lsock, (struct sockaddr*)&addr, sizeof(addr)) < 0 ||
        listen(lsock, 64) < 0 || set_nonblock(lsock) < 0 ||
        getsockname(lsock, (struct sockaddr*)&addr, &alen) < 0) {
        fprintf(stderr, "sfd_httpd: listen: %s\n", strerror(errno));
        return 1;
    }
    for (i = 0; i < MAX_CONNS; i++) {
        conns[i].sock = conns[i].status = -1;
        conns[i].state = FREE;
    }
    printf("listening on 127.0.0.1:%u\n", (unsigned)ntohs(addr.sin_port));
    fflush(stdout);

    while (!stop) {
        struct pollfd pfd[MAX_CONNS + 1];
        size_t owner[MAX_CONNS + 1];
        nfds_t n = 0;
        int r;

        pfd[n].fd = lsock;
        pfd[n].events = POLLIN;
        owner[n++] = MAX_CONNS;
        for (i = 0; i < MAX_CONNS; i++) {
            struct conn* c = &conns[i];
            switch (c->state) {
            case READING:
                pfd[n].fd = c->sock;
                pfd[n].events = POLLIN;
                break;
            case OPENING:
            case SENDING:
                pfd[n].fd = c->status;
                pfd[n].events = POLLIN;
                break;
            case REPLYING:
                pfd[n].fd = c->sock;
                pfd[n].events = POLLOUT;
                break;
            case FREE:
                continue;
            }
            owner[n++] = i;
        }
        r = poll(pfd, n, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("sfd_httpd: poll");
            return 1;
        }
        for (i = 0; i < n; i++) {
            struct conn* c;
            if (!pfd[i].revents)
                continue;
            if (owner[i] == MAX_CONNS) {
                on_accept(lsock);
                continue;
            }
            c = &conns[owner[i]];
            switch (c->state) {
            case READING:
                on_readable_client(c, srv);
                break;
            case OPENING:
                on_file_info(c, srv);
                break;
            case SENDING:
                on_progress(c);
                break;
            case REPLYING:
                on_writable_client(c);
                break;
            case FREE:
                break;
            }
        }
    }
    for (i = 0; i < MAX_CONNS; i++)
        if (conns[i].state != FREE)
            conn_close(&conns[i]);
    close(lsock);
    close(srv);
    return 0;
}
