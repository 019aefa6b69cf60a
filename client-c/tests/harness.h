/*
 * harness.h - a small test harness for the libsendfiled C suite.
 *
 * Each test file defines `static const struct sfd_test tests[]` and calls
 * sfd_run_tests() from main(). A test is a void function; CHECK() records a
 * failure and returns from it. Every daemon a test starts with env_start() is
 * shut down after the test (a status other than a clean exit 0 is a failure),
 * and its temporary root is removed.
 *
 * Output: one line per test, "PASS name" or "FAIL name: where: what"; the
 * driver (ci/c-tests.sh) counts them. Exit status 0 iff all passed.
 *
 * Synchronisation is by poll(2) with timeouts, never by sleeping.
 */
#ifndef SFD_TEST_HARNESS_H
#define SFD_TEST_HARNESS_H

#include <sendfiled.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* Timeout for anything the daemon should do promptly. */
#define T_MS 10000

struct sfd_test {
    const char* name;
    void (*fn)(void);
};

int sfd_run_tests(const struct sfd_test* tests, size_t n);

/* Records a failure of the running test (and prints it). */
void test_fail(const char* file, int line, const char* what, int err);
bool test_failed(void);

#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            test_fail(__FILE__, __LINE__, #c, errno);                       \
            return;                                                         \
        }                                                                   \
    } while (0)

/* CHECK with an errno expectation: the call returned the error value. */
#define CHECK_ERRNO(call, bad, e)                                           \
    do {                                                                    \
        errno = 0;                                                          \
        if ((call) != (bad) || errno != (e)) {                              \
            test_fail(__FILE__, __LINE__, #call " fails with " #e, errno);  \
            return;                                                         \
        }                                                                   \
    } while (0)

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A daemon serving a fresh temporary root. */
struct env {
    char root[128];    /* mkdtemp'd directory */
    char sockdir[160]; /* root/run: where the socket lives */
    char name[64];     /* unique server name */
    pid_t pid;
    int srv;           /* sfd_connect()ed socket */
};

/* Makes a root and starts a daemon on it; NULL (with a recorded failure)
 * if it could not. maxfiles/timeout_ms as for sfd_spawn(). The env belongs
 * to the harness and lives until the end of the test. */
struct env* env_start(int maxfiles, int timeout_ms);
/* Closes srv, shuts the daemon down (records a failure unless it exits 0),
 * removes the root. Also done automatically after each test. */
void env_stop(struct env* e);
/* Makes a temporary directory (removed after the test). */
bool temp_dir(char* out, size_t cap);

/* Deterministic test data: byte i of pattern `seed`. */
unsigned char pattern(size_t i, unsigned seed);
/* Writes a file of n pattern bytes (or n bytes of `data` if not NULL) at
 * root/rel. */
bool put_file(const struct env* e, const char* rel, const void* data, size_t n,
              unsigned seed);
/* Checks buf against pattern bytes [off, off+n). */
bool is_pattern(const unsigned char* buf, size_t n, size_t off, unsigned seed);

/* Waits for fd to become readable (or hung up); false on timeout. */
bool wait_readable(int fd, int timeout_ms);
/* Reads one message of at most `want` bytes: poll, then one read(2).
 * Returns the bytes read, 0 at EOF, -1 on timeout or error. */
ssize_t read_msg(int fd, void* buf, size_t want, int timeout_ms);
/* Reads until EOF into buf (cap bytes at most; more is an error).
 * Returns the bytes read, or -1 on timeout/error/overflow. */
ssize_t read_all(int fd, unsigned char* buf, size_t cap, int timeout_ms);
/* True if fd reaches EOF (no data) within timeout_ms. */
bool wait_eof(int fd, int timeout_ms);

/* What a status (or data) channel said. */
struct outcome {
    bool got_info;
    struct sfd_file_info info;
    int info_err;     /* errno of a refusal (cmd SFD_FILE_INFO), or 0 */
    size_t progress;  /* sum of progress sizes */
    size_t nprogress; /* number of progress messages */
    bool complete;
    int xfer_err;     /* errno of a failure (cmd SFD_XFER_STAT), or 0 */
    bool eof;         /* the channel closed */
    bool garbage;     /* a message of unexpected size/kind, or one after
                         the final message */
};

/* The progress rule: progress reports only what moved before the transfer
 * had to wait, never what the completion says anyway, so a transfer of
 * `total` bytes (header and trailer included) that completed reported less
 * than `total` in all (nothing if it was empty). */
bool progress_ok(const struct outcome* o, size_t total);

/* Returns once ms milliseconds have passed since *start (CLOCK_MONOTONIC),
 * waiting on a descriptor that never becomes ready. */
void wait_since(const struct timespec* start, int ms);

/* Reads the file info (first message) of a status channel. */
bool read_info(int fd, struct outcome* o, int timeout_ms);
/* Reads status messages until EOF (after read_info, or from the start if
 * o->got_info and o->info_err are both unset). While waiting, drains `dest`
 * (if >= 0) into out (cap bytes, *out_len counts; -1 dest to skip) until
 * dest's EOF. Returns false on timeout. */
bool run_status(int status_fd, struct outcome* o, int dest, unsigned char* out,
                size_t cap, size_t* out_len, int timeout_ms);

/* A connected AF_UNIX SOCK_STREAM pair: [0] is given to the daemon as the
 * destination, [1] is read by the test. */
bool stream_pair(int sv[2]);

/* Sets/clears an environment variable, restored after the test. */
void test_setenv(const char* name, const char* value);

#endif
