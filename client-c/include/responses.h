/*
 * responses.h - the messages sendfiled writes on status and data channels.
 *
 * Part of libsendfiled, the C client library of sendfiled. Included by
 * <sendfiled.h>; it may also be included on its own.
 *
 * MESSAGES
 *
 * The daemon answers on a pipe: the status pipe returned by sfd_send(),
 * sfd_send_hdtr() and sfd_open(), or the data pipe returned by sfd_read().
 * Every message is written with one write(2) smaller than PIPE_BUF, so it
 * arrives whole. A message is exactly one of:
 *
 *   sizeof(struct sfd_file_info)  cmd == SFD_FILE_INFO, stat == SFD_STAT_OK
 *   sizeof(struct sfd_xfer_stat)  cmd == SFD_XFER_STAT, stat == SFD_STAT_OK
 *   SFD_HDR_SIZE                  an error: cmd and a non-zero stat (an errno
 *                                 value) and nothing else
 *
 * An error header carries SFD_FILE_INFO when it replaces the file info (the
 * request was refused: ENOENT, EINVAL, EMFILE, EACCES, ...) and
 * SFD_XFER_STAT when a transfer that had started failed (EIO, EPIPE,
 * ETIMEDOUT). After an error the daemon closes the channel. A cancelled
 * transfer gets no message: its channel just ends (read(2) returns 0).
 *
 * A pipe is a byte stream and may hold several messages, so read exactly the
 * size of the message you expect: sizeof(struct sfd_file_info) first, then
 * sizeof(struct sfd_xfer_stat) for each status message. An error is always
 * the last message on a channel, so such a read returns just SFD_HDR_SIZE
 * bytes when an error came instead; read(2) returning 0 is end of file (the
 * daemon closed the channel). On a non-blocking channel, read when poll(2)
 * says it is readable; a message is never split across reads of its size.
 *
 * The unmarshal functions copy a message out of a byte buffer (which need
 * not be aligned) into a struct, and return false for a wrong command id or
 * an error status.
 *
 * THREADS
 *
 * All functions here are pure and thread-safe.
 */
#ifndef SENDFILED_RESPONSES_H
#define SENDFILED_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Command id: the first byte of every message. */
enum sfd_cmd_id {
    /** A file info message (the first message of every transfer), or an
     *  error header that replaces it. */
    SFD_FILE_INFO = 0x81,
    /** A transfer status message (progress or completion), or an error
     *  header for a transfer that failed after it started. */
    SFD_XFER_STAT = 0x82
};

/** Status: the second byte of every message. Any other value is an errno
 *  value (ENOENT, EMFILE, EPIPE, ...) and the message is a header only. */
enum sfd_op_stat {
    SFD_STAT_OK = 0
};

/**
 * File metadata: the first message on every channel. Its size is the size of
 * the whole message.
 */
struct sfd_file_info {
    uint8_t cmd;   /**< SFD_FILE_INFO */
    uint8_t stat;  /**< SFD_STAT_OK (an error is a header only) */
    size_t  size;  /**< bytes of the file the transfer moves: the requested
                        range clipped to the file (headers/trailers not
                        included). A reader can tell completion by counting. */
    time_t  atime; /**< last access, seconds since the epoch */
    time_t  mtime; /**< last modification, seconds since the epoch */
    time_t  ctime; /**< last status change, seconds since the epoch */
    size_t  txnid; /**< transfer id: for sfd_send_open(),
                        sfd_send_open_hdtr() and sfd_cancel() */
};

/**
 * Transfer progress or completion, on a status channel (never on a data
 * channel).
 */
struct sfd_xfer_stat {
    uint8_t cmd;  /**< SFD_XFER_STAT */
    uint8_t stat; /**< SFD_STAT_OK (an error is a header only) */
    size_t  size; /**< bytes written to the destination since the previous
                       message (header and trailer bytes included), or
                       SIZE_MAX to mark completion: see sfd_xfer_complete() */
};

/** Size of the message header (cmd + stat), and of an error message. */
#define SFD_HDR_SIZE 2

/** The largest message: a buffer this big holds any of them. */
#define SFD_MAX_RESP_SIZE sizeof(struct sfd_file_info)

/**
 * The command id of the message at buf (SFD_FILE_INFO or SFD_XFER_STAT).
 *
 * buf: at least SFD_HDR_SIZE readable bytes.
 * Returns the command id, or -1 with errno EINVAL if buf is NULL.
 */
int sfd_get_cmd(const void* buf);

/**
 * The status of the message at buf: SFD_STAT_OK, or the errno value the
 * daemon reported.
 *
 * buf: at least SFD_HDR_SIZE readable bytes.
 * Returns the status, or -1 with errno EINVAL if buf is NULL.
 */
int sfd_get_stat(const void* buf);

/**
 * Copies a file info message out of buf.
 *
 * out: where to store it; left untouched unless true is returned.
 * buf: SFD_HDR_SIZE readable bytes, and sizeof(struct sfd_file_info) if the
 *      header says SFD_FILE_INFO/SFD_STAT_OK (only then is more read). Any
 *      alignment.
 * Returns true if buf holds a successful file info; false if its command id
 * is not SFD_FILE_INFO or its status is not SFD_STAT_OK (errno unchanged:
 * use sfd_get_stat() for the daemon's errno), or if out or buf is NULL
 * (errno EINVAL).
 */
bool sfd_unmarshal_file_info(struct sfd_file_info* out, const void* buf);

/**
 * Copies a transfer status message out of buf.
 *
 * out: where to store it; left untouched unless true is returned.
 * buf: SFD_HDR_SIZE readable bytes, and sizeof(struct sfd_xfer_stat) if the
 *      header says SFD_XFER_STAT/SFD_STAT_OK. Any alignment.
 * Returns true if buf holds a successful transfer status (progress or
 * completion); false if its command id is not SFD_XFER_STAT or its status
 * is not SFD_STAT_OK (errno unchanged), or if out or buf is NULL (errno
 * EINVAL).
 */
bool sfd_unmarshal_xfer_stat(struct sfd_xfer_stat* out, const void* buf);

/**
 * Whether a transfer status marks completion: cmd is SFD_XFER_STAT, stat is
 * SFD_STAT_OK and size is SIZE_MAX. After it the daemon closes the channel.
 *
 * Returns false otherwise, and false with errno EINVAL for NULL.
 */
bool sfd_xfer_complete(const struct sfd_xfer_stat* stat);

#ifdef __cplusplus
}
#endif

#endif /* SENDFILED_RESPONSES_H */
