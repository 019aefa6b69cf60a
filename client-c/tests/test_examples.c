/*
 * test_examples.c - runs the example programs against a real daemon:
 * sfd_cat (and, when the driver built them, the copies linked against the
 * installed library through pkg-config: $SFD_CAT_INSTALLED,
 * $SFD_CAT_STATIC), sfd_sendprogress to a TCP listener, and sfd_httpd
 * answering GET over loopback (Content-Length, Last-Modified, body, 404).
 *
 * The example binaries are found in $SFD_EXAMPLES_DIR.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool example(const char* name, char* out, size_t cap)
{
    const char* dir = getenv("SFD_EXAMPLES_DIR");
    if (!dir)
        return false;
    return (size_t)snprintf(out, cap, "%s/%s", dir, name) < cap;
}

/* Starts argv[0] with stdout on a pipe (returned in *out). */
static pid_t start(char* const argv[], int* out)
{
    int p[2];
    pid_t pid;
    if (pipe(p) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        if (!getenv("SFD_TEST_VERBOSE")) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0)
                dup2(null, STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    *out = p[0];
    return pid;
}

static bool exited_zero(pid_t pid)
{
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Runs one sfd_cat binary on a file and checks its output. */
static bool cat_ok(struct env* e, const char* bin, const char* rel, size_t sz,
                   const char* off, const char* len, size_t want_off,
                   size_t want_len, unsigned seed)
{
    char* argv[7];
    unsigned char* buf;
    ssize_t n;
    bool ok;
    int out;
    pid_t pid;
    argv[0] = (char*)bin;
    argv[1] = e->sockdir;
    argv[2] = e->name;
    argv[3] = (char*)rel;
    argv[4] = (char*)off;
    argv[5] = off ? (char*)len : NULL;
    argv[6] = NULL;
    pid = start(argv, &out);
    if (pid < 0)
        return false;
    buf = malloc(sz + 1);
    n = read_all(out, buf, sz, T_MS);
    close(out);
    ok = exited_zero(pid) && n == (ssize_t)want_len &&
         is_pattern(buf, want_len, want_off, seed);
    free(buf);
    return ok;
}

static void test_sfd_cat(void)
{
    struct env* e;
    char bin[512];
    const size_t sz = 400000;
    CHECK(example("sfd_cat", bin, sizeof(bin)));
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sz, 31));
    CHECK(cat_ok(e, bin, "f", sz, NULL, NULL, 0, sz, 31));
    CHECK(cat_ok(e, bin, "f", sz, "1000", "2345", 1000, 2345, 31));
    CHECK(put_file(e, "empty", NULL, 0, 0));
    CHECK(cat_ok(e, bin, "empty", 0, NULL, NULL, 0, 0, 0));
}

static void test_sfd_cat_installed(void)
{
    const char* vars[] = { "SFD_CAT_INSTALLED", "SFD_CAT_STATIC" };
    struct env* e;
    size_t i;
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, 100000, 32));
    for (i = 0; i < N_ELEMS(vars); i++) {
        const char* bin = getenv(vars[i]);
        if (!bin) {
            printf("     (%s not set: skipped)\n", vars[i]);
            continue;
        }
        CHECK(cat_ok(e, bin, "f", 100000, NULL, NULL, 0, 100000, 32));
    }
}

static int listen_loopback(unsigned short* port)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr*)&a, sizeof(a)) != 0 || listen(s, 4) != 0 ||
        getsockname(s, (struct sockaddr*)&a, &alen) != 0) {
        close(s);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return s;
}

static void test_sfd_sendprogress(void)
{
    struct env* e;
    char bin[512], portstr[16];
    char* argv[7];
    const size_t sz = 2 * 1024 * 1024 + 7;
    unsigned char* buf;
    unsigned short port;
    ssize_t n;
    int ls, conn, out;
    pid_t pid;
    CHECK(example("sfd_sendprogress", bin, sizeof(bin)));
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "f", NULL, sz, 33));
    ls = listen_loopback(&port);
    CHECK(ls >= 0);
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    argv[0] = bin;
    argv[1] = e->sockdir;
    argv[2] = e->name;
    argv[3] = "f";
    argv[4] = "127.0.0.1";
    argv[5] = portstr;
    argv[6] = NULL;
    pid = start(argv, &out);
    CHECK(pid > 0);
    CHECK(wait_readable(ls, T_MS));
    conn = accept(ls, NULL, NULL);
    close(ls);
    CHECK(conn >= 0);
    buf = malloc(sz);
    n = read_all(conn, buf, sz, T_MS);
    close(conn);
    close(out);
    if (n != (ssize_t)sz || !is_pattern(buf, sz, 0, 33)) {
        free(buf);
        exited_zero(pid);
        CHECK(!"data received from sfd_sendprogress");
    }
    free(buf);
    CHECK(exited_zero(pid));
}

/* One GET over loopback; returns the whole response (malloc'd) or NULL. */
static char* http_get(unsigned short port, const char* target, size_t* len)
{
    struct sockaddr_in a;
    char req[512];
    size_t cap = 1 << 22;
    char* buf;
    ssize_t n;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return NULL;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", target);
    if (connect(s, (struct sockaddr*)&a, sizeof(a)) != 0 ||
        write(s, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(s);
        return NULL;
    }
    buf = malloc(cap + 1);
    n = read_all(s, (unsigned char*)buf, cap, T_MS);
    close(s);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* The value of header `name` in a response head, or NULL. */
static const char* header(const char* resp, const char* name, char* out, size_t cap)
{
    const char* end = strstr(resp, "\r\n\r\n");
    const char* p = strstr(resp, "\r\n");
    size_t nl = strlen(name);
    while (p && end && p < end) {
        p += 2;
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            const char* v = p + nl + 1;
            const char* e = strstr(v, "\r\n");
            size_t k;
            while (*v == ' ')
                v++;
            k = (size_t)(e - v);
            if (k >= cap)
                return NULL;
            memcpy(out, v, k);
            out[k] = '\0';
            return out;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static void test_sfd_httpd(void)
{
    struct env* e;
    char bin[512], line[128], val[128], date[64], path[512];
    char* argv[5];
    const size_t sz = 1234567;
    struct stat st;
    struct tm tm;
    unsigned port = 0;
    size_t len = 0;
    char* resp;
    const char* body;
    ssize_t n;
    int out, ok;
    pid_t pid;

    CHECK(example("sfd_httpd", bin, sizeof(bin)));
    CHECK((e = env_start(0, 0)) != NULL);
    CHECK(put_file(e, "index.html", NULL, sz, 34));
    snprintf(path, sizeof(path), "%s/index.html", e->root);
    CHECK(stat(path, &st) == 0);
    argv[0] = bin;
    argv[1] = e->sockdir;
    argv[2] = e->name;
    argv[3] = "0";
    argv[4] = NULL;
    pid = start(argv, &out);
    CHECK(pid > 0);
    n = read_msg(out, line, sizeof(line) - 1, T_MS);
    if (n > 0) {
        line[n] = '\0';
        sscanf(line, "listening on 127.0.0.1:%u", &port);
    }
    if (port == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        close(out);
        CHECK(!"sfd_httpd did not start");
    }

    resp = http_get((unsigned short)port, "/index.html", &len);
    ok = resp != NULL;
    ok = ok && strncmp(resp, "HTTP/1.1 200 ", 13) == 0;
    ok = ok && header(resp, "Content-Length", val, sizeof(val)) &&
         strtoull(val, NULL, 10) == sz;
    gmtime_r(&st.st_mtime, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    ok = ok && header(resp, "Last-Modified", val, sizeof(val)) &&
         strcmp(val, date) == 0;
    body = resp ? strstr(resp, "\r\n\r\n") : NULL;
    ok = ok && body && (size_t)(resp + len - (body + 4)) == sz &&
         is_pattern((const unsigned char*)body + 4, sz, 0, 34);
    free(resp);
    if (ok) {
        /* "/" is index.html too. */
        resp = http_get((unsigned short)port, "/", &len);
        ok = resp && strncmp(resp, "HTTP/1.1 200 ", 13) == 0 && len > sz;
        free(resp);
    }
    if (ok) {
        resp = http_get((unsigned short)port, "/missing.html", &len);
        ok = resp && strncmp(resp, "HTTP/1.1 404 ", 13) == 0;
        free(resp);
    }
    kill(pid, SIGTERM);
    close(out);
    CHECK(exited_zero(pid));
    CHECK(ok);
}

int main(void)
{
    static const struct sfd_test tests[] = {
        { "sfd_cat", test_sfd_cat },
        { "sfd_cat_installed", test_sfd_cat_installed },
        { "sfd_sendprogress", test_sfd_sendprogress },
        { "sfd_httpd", test_sfd_httpd },
    };
    return sfd_run_tests(tests, N_ELEMS(tests));
}
