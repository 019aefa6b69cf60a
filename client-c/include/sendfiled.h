/*
 * sendfiled.h - the C client library of sendfiled.
 *
 * sendfiled is a local daemon that moves file data on behalf of client
 * programs, so that an event-driven program never blocks on disk I/O. A
 * client sends a small request over a UNIX datagram socket; the daemon opens
 * the file, answers on a pipe (the status channel) and moves the data with
 * sendfile(2)/splice(2) where the system has them.
 *
 *     #include <sendfiled.h>
 *     cc app.c $(pkg-config --cflags --libs sendfiled)
 *
 * OPERATIONS
 *
 *   function             data goes to                 messages arrive on
 *   sfd_read             the returned pipe            the same pipe: one file
 *                                                     info, then the data
 *   sfd_send[_hdtr]      dest_fd                      the returned status pipe
 *   sfd_open             (nothing yet)                the returned status pipe:
 *                                                     one file info with txnid
 *   sfd_send_open[_hdtr] dest_fd                      the pipe sfd_open returned
 *   sfd_cancel           (stops the transfer)         the transfer's channel
 *                                                     closes, with no message
 *
 * A status channel carries, in order: one struct sfd_file_info; zero or more
 * struct sfd_xfer_stat progress messages; one completion message
 * (sfd_xfer_complete() true) or one error header; then end of file. A request
 * the daemon refuses gets an error header with cmd SFD_FILE_INFO instead of
 * the file info, then end of file. A cancelled transfer's channel (and every
 * channel when the daemon shuts down) just ends: read(2) returns 0 before
 * any completion. See <responses.h> for the messages and how to read them.
 *
 * PROGRESS
 *
 * As in the original sendfiled, progress is written only when a transfer had
 * to stop and wait (the destination full, data being read from disk), in
 * steps of at least 1 MiB, and never says what the completion says anyway:
 * bytes moved after the last report are covered by the completion. So a
 * transfer that runs through without waiting (any small file) writes
 * exactly the file info and then the completion, and the sum of the
 * progress sizes is always less than the transfer's size.
 *
 * ERRORS
 *
 * Reported by the daemon in a message's stat byte:
 *   ENOENT     no such file
 *   EINVAL     not a regular file, or a malformed request; a destination
 *              the daemon cannot write without waiting (a terminal, a
 *              datagram or seqpacket socket: in place of the file info; a
 *              character device with no non-blocking write: in place of
 *              the completion, before any byte reaches it)
 *   EMFILE     too many concurrent transfers (the daemon's maxfiles)
 *   EACCES     permission denied
 *   ENAMETOOLONG, EPROTO  path too long / protocol version mismatch
 *   EIO        read error
 *   EPIPE      the destination was closed
 *   ETIMEDOUT  an opened file was not sent within the open-file timeout
 * "/" (or only slashes) names the root directory: EINVAL; "" is ENOENT.
 * A cancelled transfer gets no error: its channel closes.
 *
 * Reported by the library (return -1 or false, errno set), before anything
 * is sent:
 *   EINVAL       a NULL string argument (an empty name for sfd_spawn() and
 *                sfd_connect(); an empty path is sent, and gets ENOENT), a
 *                negative offset, a NULL
 *                buffer with a non-zero length
 *   EBADF        a negative descriptor
 *   ENAMETOOLONG a path longer than SFD_MAX_PATH_LEN
 *   EMSGSIZE     header plus trailer longer than SFD_MAX_HDTR_LEN
 *   EAGAIN       the daemon's request queue stayed full for 1 second (a
 *                stalled daemon or a server that does not read): no call
 *                waits longer, whatever the socket's O_NONBLOCK; nothing
 *                was sent
 *   EINTR        a signal the caller handles arrived while the call waited
 *                for room; the wait is not resumed
 * and the errors of socket(2), connect(2), pipe(2) and sendmsg(2) (for
 * example ECONNREFUSED when the daemon is gone, EMFILE when this process is
 * out of descriptors).
 *
 * WHERE A TRANSFER RUNS
 *
 * sfd_send(), sfd_send_hdtr(), sfd_read(), sfd_open() and sfd_send_open()
 * on a socket sfd_connect() made are first attempted in the calling process, with calls that never block:
 * the open from the kernel's caches beneath the library's own handle of the
 * served root (named by the daemon in a handshake, once per connection, and
 * checked to be the same directory), the data from the page cache, the
 * destination only as far as it takes now. Whatever is left goes to the
 * daemon, which continues where the attempt stopped. The channels carry the
 * same bytes either way. The attempt uses the caller's own permissions: a
 * file only the daemon may read goes to the daemon; a file only the caller
 * may read can be sent in-process. SENDFILED_INLINE=0 in the environment
 * turns the attempt off for the process, the daemon's --no-inline for all
 * its clients. An open file made in the process is held by the daemon under
 * the id in its file info (deadline, ETIMEDOUT, cancel as below). Sockets
 * the application connected itself always go to the daemon. See
 * sendfiled(3).
 *
 * DESCRIPTORS
 *
 * Every descriptor returned is new, owned by the caller (close(2) it) and
 * has FD_CLOEXEC set. Descriptors passed in (srv, dest_fd) are only
 * borrowed: the library never closes them. The daemon receives its own
 * duplicate of dest_fd and sets O_NONBLOCK on its open file description
 * (which the caller's descriptor shares).
 *
 * THREADS AND SIGNALS
 *
 * All functions are thread-safe; requests from several threads may share one
 * srv socket. The library installs no signal handlers and writes nothing to
 * stdout or stderr. sfd_spawn() starts a child process; reap it with
 * sfd_shutdown().
 */
#ifndef SENDFILED_H
#define SENDFILED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "responses.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The longest path a request may carry, in bytes, not counting the
 * terminating NUL. Longer paths fail with ENAMETOOLONG before anything is
 * sent.
 */
#define SFD_MAX_PATH_LEN 4095

/**
 * The most header plus trailer bytes one sfd_send_hdtr() or
 * sfd_send_open_hdtr() request may carry (together). More fails with
 * EMSGSIZE before anything is sent. The same on every platform.
 */
#define SFD_MAX_HDTR_LEN 8192

/* ------------------------------------------------------------------------
 * Server interaction
 * ------------------------------------------------------------------------ */

/**
 * Starts a sendfiled daemon and waits until it accepts requests.
 *
 * The executable is $SENDFILED_BIN if that is set, else "sendfiled" found on
 * PATH, else the daemon installed with this library (PREFIX/sbin/sendfiled,
 * as `make install` or ci/install.sh put it; sbin/ is rarely on a user's
 * PATH). It inherits the environment; its log goes to syslog (or where
 * $SENDFILED_LOG says: "stderr", "syslog", "none"). With
 * SENDFILED_LOG=stderr the daemon's own message for a failed start (which
 * names the cause) appears on the caller's standard error.
 *
 * server_name: the daemon's name; its socket is root_dir/sockdir/server_name.
 * root_dir:    the directory it serves; request paths are relative to it
 *              and confined beneath it. It must exist.
 * sockdir:     the socket directory, relative to root_dir (a leading '/'
 *              too). Created, with missing parents (mode 0755 less the
 *              umask), if root_dir exists and it does not.
 * maxfiles:    the most concurrent transfers (open files included); 0 for
 *              the daemon's default. More are refused with EMFILE.
 * open_fd_timeout_ms: how long a file opened with sfd_open() waits for
 *              sfd_send_open() before the daemon closes it (ETIMEDOUT);
 *              0 for the daemon's default.
 *
 * Returns the daemon's pid once it is ready; 0 if a daemon of that name
 * already serves that socket directory (nothing was started); -1 with errno
 * set if it failed to start:
 *   ENOENT     the executable was not found ($SENDFILED_BIN, PATH,
 *              PREFIX/sbin), or root_dir does not exist
 *   EPERM      the caller is root: the daemon refuses to run as root unless
 *              SENDFILED_ALLOW_ROOT=1 is in the environment (or it is given
 *              -u/-g, which sfd_spawn() does not pass)
 *   ENOTDIR    root_dir, the socket directory or a directory on the way to
 *              it is not a directory
 *   EACCES     the executable may not be run, or the socket directory may
 *              not be created or written
 *   EADDRINUSE never: a socket of that name in use means 0 is returned
 *   ETIMEDOUT  it did not become ready within 30 seconds
 *   EINVAL     a NULL or empty string, or a negative number
 * and otherwise the daemon's own errno (its exit status). Set
 * SENDFILED_LOG=stderr to see the daemon's message saying which cause it
 * was.
 */
pid_t sfd_spawn(const char* server_name, const char* root_dir,
                const char* sockdir, int maxfiles, int open_fd_timeout_ms);

/**
 * Connects to a running daemon.
 *
 * server_sockdir: the directory holding the daemon's socket (for a daemon
 *                 started with sfd_spawn(): root_dir/sockdir).
 * server_name:    the daemon's name.
 *
 * Returns a new datagram socket connected to the daemon (the srv argument of
 * the transfer functions; close(2) it when done), or -1 with errno: EINVAL
 * for a NULL or empty argument, ENAMETOOLONG if the socket path is too long
 * for a UNIX socket address, ENOENT if no such socket, ECONNREFUSED if no
 * daemon is listening on it, or another error of socket(2)/connect(2).
 */
int sfd_connect(const char* server_sockdir, const char* server_name);

/**
 * Stops a daemon started by sfd_spawn(): sends it SIGTERM and waits for it
 * like waitpid(2).
 *
 * Returns the wait status (a clean shutdown gives WIFEXITED(s) &&
 * WEXITSTATUS(s) == 0), or -1 with errno: EINVAL for pid <= 0, ESRCH if no
 * such process, ECHILD if it is not a child of this process.
 */
int sfd_shutdown(pid_t pid);

/* ------------------------------------------------------------------------
 * Transfers
 *
 * Common arguments:
 *   srv      a socket returned by sfd_connect().
 *   path     the file, relative to the daemon's root; at most
 *            SFD_MAX_PATH_LEN bytes. Only regular files are served
 *            (symbolic links are followed within the root).
 *   offset   the first byte to transfer (0: from the start); must be >= 0.
 *   len      the number of bytes (0: to the end of the file); a range past
 *            the end of the file is clipped to it.
 *   nonblock set O_NONBLOCK on the returned descriptor.
 * ------------------------------------------------------------------------ */

/**
 * Read File: the daemon writes the file into a new pipe.
 *
 * Returns the read end of that pipe (the data channel), or -1 with errno.
 * On it arrive: one struct sfd_file_info (its size is the number of data
 * bytes that follow), then exactly that many bytes of file data, then end of
 * file. There are no progress messages. If the request is refused, an error
 * header (cmd SFD_FILE_INFO, stat = ENOENT, EINVAL, EMFILE, ...) comes
 * instead of the file info, then end of file. If reading fails midway the
 * pipe closes early (fewer bytes than announced).
 */
int sfd_read(int srv, const char* path, off_t offset, size_t len,
             bool nonblock);

/**
 * Send File: the daemon writes the file to dest_fd.
 *
 * dest_fd: any writable descriptor (socket, pipe, regular file; not a
 *          terminal: EINVAL); borrowed, not closed. The daemon makes its
 *          open file description non-blocking, and relies on that flag
 *          for nothing: clearing it costs no one a wait.
 *
 * Returns the read end of a new status pipe, or -1 with errno. On it arrive:
 * one struct sfd_file_info; zero or more struct sfd_xfer_stat progress
 * messages (bytes written since the previous one, only when the transfer had
 * to wait: see PROGRESS above); one completion message (sfd_xfer_complete()
 * true) or an error header (cmd SFD_XFER_STAT: EIO, EPIPE); then end of
 * file. A small file's channel carries exactly the file info and the
 * completion. A refused request gets an error header with cmd SFD_FILE_INFO
 * instead of the file info. After sfd_cancel() the channel ends with no
 * message.
 */
int sfd_send(int srv, const char* path, int dest_fd, off_t offset, size_t len,
             bool nonblock);

/**
 * Open File: the daemon opens the file, reports it and waits for
 * sfd_send_open() (or sfd_send_open_hdtr()).
 *
 * Returns the read end of a new status pipe, or -1 with errno. On it arrive:
 * one struct sfd_file_info whose txnid names the open file; after
 * sfd_send_open(), the progress and completion messages as for sfd_send().
 * If no sfd_send_open() arrives within the daemon's open-file timeout, an
 * error header (cmd SFD_XFER_STAT, ETIMEDOUT) arrives and the channel
 * closes. The timeout is a deadline: a sfd_send_open() that reaches the
 * daemon after it gets this ETIMEDOUT even if the daemon was busy when the
 * deadline passed, and nothing is sent. A refused request gets an error header with cmd SFD_FILE_INFO.
 * An open file counts against the daemon's maxfiles.
 */
int sfd_open(int srv, const char* path, off_t offset, size_t len,
             bool nonblock);

/**
 * Send Open File: starts sending a file opened with sfd_open() to dest_fd.
 *
 * txnid:   the txnid of the file info sfd_open()'s channel delivered.
 * dest_fd: as for sfd_send().
 *
 * Returns true once the request is sent; progress and completion arrive on
 * the status pipe sfd_open() returned, by the rule of sfd_send(): for a
 * small file, one 16-byte completion message. Returns false with errno EBADF for a
 * negative descriptor, or the error of sendmsg(2). An unknown or expired
 * txnid gets no answer (the daemon closes dest_fd's duplicate).
 */
bool sfd_send_open(int srv, size_t txnid, int dest_fd);

/**
 * Cancel: ends the transfer txnid (an open file, or one being sent).
 *
 * Its channel (a Read's data pipe too) closes without a message, as the
 * original's does: the reader's next read(2) after what was already written
 * returns 0. The destination gets no more data; the daemon's slot is free
 * for a new transfer at once. Returns
 * true once the request is sent, false with errno EBADF for a negative srv
 * or the error of sendmsg(2). An unknown txnid is ignored.
 */
bool sfd_cancel(int srv, size_t txnid);

/**
 * Send File with header and trailer: the daemon writes hdr, then the file
 * range, then trl to dest_fd, in that order and with nothing interleaved,
 * using the system's native header/trailer support where it has one.
 *
 * hdr, hdr_len: bytes written before the file (hdr may be NULL if hdr_len
 *               is 0).
 * trl, trl_len: bytes written after the file (likewise).
 * Other arguments and the return value as for sfd_send(). Progress sizes
 * count header and trailer bytes too; completion comes after the last
 * trailer byte. The file info's size counts the file range only.
 *
 * Errors as for sfd_send(), and EMSGSIZE if hdr_len + trl_len >
 * SFD_MAX_HDTR_LEN, EINVAL for a NULL buffer with a non-zero length.
 */
int sfd_send_hdtr(int srv, const char* path, int dest_fd, off_t offset,
                  size_t len, const void* hdr, size_t hdr_len,
                  const void* trl, size_t trl_len, bool nonblock);

/**
 * Send Open File with header and trailer: as sfd_send_open(), writing hdr
 * before and trl after the file range, as sfd_send_hdtr() does. With
 * sfd_open() this sends a response whose headers depend on the file's
 * metadata (Content-Length, Last-Modified) in one request.
 *
 * Returns true once the request is sent; false with errno EBADF, EINVAL,
 * EMSGSIZE (as for sfd_send_hdtr()) or the error of sendmsg(2).
 */
bool sfd_send_open_hdtr(int srv, size_t txnid, int dest_fd,
                        const void* hdr, size_t hdr_len,
                        const void* trl, size_t trl_len);

/**
 * Send File, told at once when it finished in the calling process: as
 * sfd_send_hdtr(), for a caller that would read the completion right away.
 * Not in the original API.
 *
 * When the library carried out the whole transfer in this process (WHERE A
 * TRANSFER RUNS above), no status pipe is made: *info receives the file
 * info the pipe would have carried first, *status_fd is set to -1 and 1 is
 * returned. The transfer is complete (every byte, header and trailer
 * included, was written to dest_fd): no completion message follows, and
 * there is nothing to read or close. Otherwise *status_fd receives the
 * status pipe exactly as sfd_send_hdtr() returns it (nonblock applies to
 * it), carrying the file info, progress and completion or an error, and 0
 * is returned. A refused request (ENOENT, EINVAL, ...) is answered on that
 * pipe, as by sfd_send_hdtr(), never in place of it.
 *
 * A finished transfer saves the pipe's four system calls (pipe2, its write,
 * the caller's read and close) and the reads of the messages.
 *
 * info, status_fd: where to store the results; neither may be NULL.
 * Other arguments as for sfd_send_hdtr() (hdr and trl may be NULL with a
 * zero length).
 *
 * Returns 1 or 0 as above, or -1 with errno as for sfd_send_hdtr(), and
 * EINVAL for a NULL info or status_fd; *info and *status_fd are then left
 * as they were.
 */
int sfd_send_here(int srv, const char* path, int dest_fd, off_t offset,
                  size_t len, const void* hdr, size_t hdr_len,
                  const void* trl, size_t trl_len, bool nonblock,
                  struct sfd_file_info* info, int* status_fd);

#ifdef __cplusplus
}
#endif

#endif /* SENDFILED_H */
