/* harness.c - see harness.h. */
#include "harness.h"

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENVS 8
#define MAX_DIRS 8
#define MAX_VARS 8

static struct env g_env_pool[MAX_ENVS];
static bool g_env_live[MAX_ENVS];
static char g_dirs[MAX_DIRS][128];
static size_t g_ndirs;
static struct {
    char* name;
    char* old; /* NULL if it was unset */
} g_vars[MAX_VARS];
static size_t g_nvars;
static bool g_failed;
static const char* g_test;
static unsigned g_seq;

void test_fail(const char* file, int line, const char* what, int err)
{
    if (!g_failed)
        printf("FAIL %s: ", g_test);
    else
        printf("     also: ");
    printf("%s:%d: %s (errno %d: %s)\n", file, line, what, err, strerror(err));
    fflush(stdout);
    g_failed = true;
}

bool test_failed(void) { return g_failed; }

static int rm_one(const char* path, const struct stat* st, int flag,
                  struct FTW* ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char* dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

bool temp_dir(char* out, size_t cap)
{
    const char* base = getenv("TMPDIR");
    if (!base || !*base || strlen(base) > 40)
        base = "/tmp";
    if ((size_t)snprintf(out, cap, "%s/sfdc.XXXXXX", base) >= cap)
        return false;
    if (!mkdtemp(out))
        return false;
    if (g_ndirs < MAX_DIRS) {
        snprintf(g_dirs[g_ndirs], sizeof(g_dirs[0]), "%s", out);
        g_ndirs++;
    }
    return true;
}

struct env* env_start(int maxfiles, int timeout_ms)
{
    struct env* e;
    size_t slot;
    for (slot = 0; slot < MAX_ENVS && g_env_live[slot]; slot++)
        ;
    if (slot == MAX_ENVS) {
        test_fail(__FILE__, __LINE__, "too many envs", 0);
        return NULL;
    }
    e = &g_env_pool[slot];
    memset(e, 0, sizeof(*e));
    e->srv = -1;
    g_env_live[slot] = true;
    if (!temp_dir(e->root, sizeof(e->root))) {
        test_fail(__FILE__, __LINE__, "mkdtemp", errno);
        return NULL;
    }
    {
        size_t n = strlen(e->root); /* < sizeof(root) < sizeof(sockdir) - 4 */
        memcpy(e->sockdir, e->root, n);
        memcpy(e->sockdir + n, "/run", sizeof("/run"));
    }
    if (mkdir(e->sockdir, 0700) != 0) {
        test_fail(__FILE__, __LINE__, "mkdir sockdir", errno);
        return NULL;
    }
    snprintf(e->name, sizeof(e->name), "t%ld_%u", (long)getpid(), ++g_seq);
    e->pid = sfd_spawn(e->name, e->root, "run", maxfiles, timeout_ms);
    if (e->pid <= 0) {
        test_fail(__FILE__, __LINE__, "sfd_spawn", errno);
        e->pid = 0;
        return NULL;
    }
    e->srv = sfd_connect(e->sockdir, e->name);
    if (e->srv < 0) {
        test_fail(__FILE__, __LINE__, "sfd_connect", errno);
        return NULL;
    }
    return e;
}

void env_stop(struct env* e)
{
    if (e->srv >= 0)
        close(e->srv);
    e->srv = -1;
    if (e->pid > 0) {
        int st = sfd_shutdown(e->pid);
        if (st == -1)
            test_fail(__FILE__, __LINE__, "sfd_shutdown", errno);
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char what[96];
            snprintf(what, sizeof(what),
                     "daemon did not exit cleanly: status %#x", (unsigned)st);
            test_fail(__FILE__, __LINE__, what, 0);
        }
        e->pid = 0;
    }
}

void test_setenv(const char* name, const char* value)
{
    if (g_nvars < MAX_VARS) {
        const char* old = getenv(name);
        g_vars[g_nvars].name = strdup(name);
        g_vars[g_nvars].old = old ? strdup(old) : NULL;
        g_nvars++;
    }
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

static void restore_env(void)
{
    while (g_nvars > 0) {
        g_nvars--;
        if (g_vars[g_nvars].old)
            setenv(g_vars[g_nvars].name, g_vars[g_nvars].old, 1);
        else
            unsetenv(g_vars[g_nvars].name);
        free(g_vars[g_nvars].name);
        free(g_vars[g_nvars].old);
    }
}

int sfd_run_tests(const struct sfd_test* tests, size_t n)
{
    size_t i, j, failed = 0;
    const char* only = getenv("SFD_TEST");

    signal(SIGPIPE, SIG_IGN);
    setenv("SENDFILED_ALLOW_ROOT", "1", 1);
    if (!getenv("SENDFILED_LOG"))
        setenv("SENDFILED_LOG", "none", 1);

    for (i = 0; i < n; i++) {
        if (only && strcmp(only, tests[i].name) != 0)
            continue;
        g_test = tests[i].name;
        g_failed = false;
        tests[i].fn();
        for (j = 0; j < MAX_ENVS; j++) {
            if (g_env_live[j])
                env_stop(&g_env_pool[j]);
            g_env_live[j] = false;
        }
        restore_env();
        while (g_ndirs > 0)
            rm_tree(g_dirs[--g_ndirs]);
        if (g_failed)
            failed++;
        else
            printf("PASS %s\n", tests[i].name);
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

unsigned char pattern(size_t i, unsigned seed)
{
    uint32_t x = (uint32_t)i * 2654435761u + seed * 40503u;
    return (unsigned char)((x >> 13) ^ (x >> 24) ^ (uint32_t)(i / 4099));
}

bool put_file(const struct env* e, const char* rel, const void* data, size_t n,
              unsigned seed)
{
    char path[512];
    unsigned char chunk[8192];
    size_t done = 0;
    int fd;
    snprintf(path, sizeof(path), "%s/%s", e->root, rel);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return false;
    while (done < n) {
        size_t k = n - done < sizeof(chunk) ? n - done : sizeof(chunk), i;
        const unsigned char* src = chunk;
        ssize_t w;
        if (data)
            src = (const unsigned char*)data + done;
        else
            for (i = 0; i < k; i++)
                chunk[i] = pattern(done + i, seed);
        w = write(fd, src, k);
        if (w <= 0) {
            close(fd);
            return false;
        }
        done += (size_t)w;
    }
    return close(fd) == 0;
}

bool is_pattern(const unsigned char* buf, size_t n, size_t off, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (buf[i] != pattern(off + i, seed))
            return false;
    return true;
}

bool wait_readable(int fd, int timeout_ms)
{
    struct pollfd p;
    int r;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

ssize_t read_msg(int fd, void* buf, size_t want, int timeout_ms)
{
    for (;;) {
        ssize_t r;
        if (!wait_readable(fd, timeout_ms)) {
            errno = ETIMEDOUT;
            return -1;
        }
        r = read(fd, buf, want);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return r;
    }
}

ssize_t read_all(int fd, unsigned char* buf, size_t cap, int timeout_ms)
{
    size_t got = 0;
    unsigned char spill[1];
    for (;;) {
        ssize_t r;
        if (got == cap) {
            r = read_msg(fd, spill, 1, timeout_ms);
            if (r == 0)
                return (ssize_t)got;
            errno = r > 0 ? EOVERFLOW : errno;
            return -1;
        }
        r = read_msg(fd, buf + got, cap - got, timeout_ms);
        if (r < 0)
            return -1;
        if (r == 0)
            return (ssize_t)got;
        got += (size_t)r;
    }
}

bool wait_eof(int fd, int timeout_ms)
{
    unsigned char b;
    return read_msg(fd, &b, 1, timeout_ms) == 0;
}

bool read_info(int fd, struct outcome* o, int timeout_ms)
{
    unsigned char buf[SFD_MAX_RESP_SIZE];
    ssize_t n;
    memset(o, 0, sizeof(*o));
    n = read_msg(fd, buf, sizeof(struct sfd_file_info), timeout_ms);
    if (n < 0)
        return false;
    if (n == 0) {
        o->eof = true;
        return true;
    }
    if (n == SFD_HDR_SIZE) {
        if (sfd_get_cmd(buf) != SFD_FILE_INFO || sfd_get_stat(buf) == SFD_STAT_OK)
            o->garbage = true;
        o->info_err = sfd_get_stat(buf);
        return true;
    }
    if ((size_t)n != sizeof(struct sfd_file_info) ||
        !sfd_unmarshal_file_info(&o->info, buf))
        o->garbage = true;
    else
        o->got_info = true;
    return true;
}

static void on_status_msg(struct outcome* o, const unsigned char* buf, ssize_t n)
{
    struct sfd_xfer_stat xs;
    if (o->complete || o->xfer_err || o->info_err) {
        o->garbage = true; /* nothing may follow the final message */
        return;
    }
    if (n == SFD_HDR_SIZE) {
        if (sfd_get_cmd(buf) != SFD_XFER_STAT || sfd_get_stat(buf) == SFD_STAT_OK)
            o->garbage = true;
        o->xfer_err = sfd_get_stat(buf);
        return;
    }
    if ((size_t)n != sizeof(struct sfd_xfer_stat) || !sfd_unmarshal_xfer_stat(&xs, buf)) {
        o->garbage = true;
        return;
    }
    if (sfd_xfer_complete(&xs)) {
        o->complete = true;
    } else {
        o->progress += xs.size;
        o->nprogress++;
    }
}

bool progress_ok(const struct outcome* o, size_t total)
{
    return total == 0 ? o->progress == 0 : o->progress < total;
}

void wait_since(const struct timespec* start, int ms)
{
    int p[2];
    if (pipe(p) != 0)
        return;
    for (;;) {
        struct timespec now;
        struct pollfd pfd;
        long long left;
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = (long long)ms - ((long long)(now.tv_sec - start->tv_sec) * 1000 +
                                (now.tv_nsec - start->tv_nsec) / 1000000);
        if (left <= 0)
            break;
        pfd.fd = p[0];
        pfd.events = POLLIN;
        pfd.revents = 0;
        (void)poll(&pfd, 1, (int)left + 1);
    }
    close(p[0]);
    close(p[1]);
}

bool run_status(int status_fd, struct outcome* o, int dest, unsigned char* out,
                size_t cap, size_t* out_len, int timeout_ms)
{
    bool dest_open = dest >= 0;
    if (out_len)
        *out_len = 0;
    if (!o->got_info && !o->info_err && !o->eof) {
        if (!read_info(status_fd, o, timeout_ms))
            return false;
    }
    while (!o->eof || dest_open) {
        struct pollfd p[2];
        int np = 0, r, si = -1, di = -1;
        if (!o->eof) {
            p[np].fd = status_fd;
            p[np].events = POLLIN;
            p[np].revents = 0;
            si = np++;
        }
        if (dest_open) {
            p[np].fd = dest;
            p[np].events = POLLIN;
            p[np].revents = 0;
            di = np++;
        }
        do
            r = poll(p, (nfds_t)np, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r <= 0) {
            errno = r == 0 ? ETIMEDOUT : errno;
            return false;
        }
        if (si >= 0 && p[si].revents) {
            unsigned char buf[SFD_MAX_RESP_SIZE];
            ssize_t n = read(status_fd, buf, sizeof(struct sfd_xfer_stat));
            if (n == 0)
                o->eof = true;
            else if (n > 0)
                on_status_msg(o, buf, n);
            else if (errno != EINTR && errno != EAGAIN)
                return false;
        }
        if (di >= 0 && p[di].revents) {
            unsigned char scratch[65536];
            unsigned char* to = scratch;
            size_t room = sizeof(scratch);
            ssize_t n;
            if (out && *out_len < cap) {
                to = out + *out_len;
                room = cap - *out_len;
            } else if (out) {
                room = 1; /* anything more is an overflow */
            }
            n = read(dest, to, room);
            if (n == 0)
                dest_open = false;
            else if (n > 0) {
                if (out && *out_len + (size_t)n > cap) {
                    o->garbage = true;
                } else if (out_len) {
                    *out_len += (size_t)n;
                }
            } else if (errno != EINTR && errno != EAGAIN) {
                dest_open = false;
            }
        }
    }
    return true;
}

bool stream_pair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0;
}
