/*
 * layout.c - the header must agree with the Rust definitions.
 *
 * Compiled by tests/layout.rs, which passes every value the Rust side has as
 * -DRUST_<NAME>=<value>. A difference fails the build (_Static_assert); the
 * program also prints what C sees, which layout.rs compares line by line.
 * Also compiled as C++ by layout.rs, to check the header there.
 */
#include <sendfiled.h>

#include <stdio.h>

#ifndef RUST_FILE_INFO_SIZE
#error "compile through tests/layout.rs: the RUST_* values are missing"
#endif

#ifdef __cplusplus
#define STATIC_ASSERT(c, m) static_assert(c, m)
#define ALIGNOF(t) alignof(t)
#else
#define STATIC_ASSERT(c, m) _Static_assert(c, m)
#define ALIGNOF(t) _Alignof(t)
#endif

#define CHECK(expr, rust) STATIC_ASSERT((expr) == (rust), #expr " differs from Rust")

CHECK(sizeof(struct sfd_file_info), RUST_FILE_INFO_SIZE);
CHECK(ALIGNOF(struct sfd_file_info), RUST_FILE_INFO_ALIGN);
CHECK(offsetof(struct sfd_file_info, cmd), RUST_FILE_INFO_CMD);
CHECK(offsetof(struct sfd_file_info, stat), RUST_FILE_INFO_STAT);
CHECK(offsetof(struct sfd_file_info, size), RUST_FILE_INFO_SIZE_OFF);
CHECK(offsetof(struct sfd_file_info, atime), RUST_FILE_INFO_ATIME);
CHECK(offsetof(struct sfd_file_info, mtime), RUST_FILE_INFO_MTIME);
CHECK(offsetof(struct sfd_file_info, ctime), RUST_FILE_INFO_CTIME);
CHECK(offsetof(struct sfd_file_info, txnid), RUST_FILE_INFO_TXNID);
CHECK(sizeof(struct sfd_xfer_stat), RUST_XFER_STAT_SIZE);
CHECK(ALIGNOF(struct sfd_xfer_stat), RUST_XFER_STAT_ALIGN);
CHECK(offsetof(struct sfd_xfer_stat, cmd), RUST_XFER_STAT_CMD);
CHECK(offsetof(struct sfd_xfer_stat, stat), RUST_XFER_STAT_STAT);
CHECK(offsetof(struct sfd_xfer_stat, size), RUST_XFER_STAT_SIZE_OFF);
CHECK(SFD_FILE_INFO, RUST_SFD_FILE_INFO);
CHECK(SFD_XFER_STAT, RUST_SFD_XFER_STAT);
CHECK(SFD_STAT_OK, RUST_SFD_STAT_OK);
CHECK(SFD_HDR_SIZE, RUST_SFD_HDR_SIZE);
CHECK(SFD_MAX_RESP_SIZE, RUST_SFD_MAX_RESP_SIZE);
CHECK(SFD_MAX_PATH_LEN, RUST_SFD_MAX_PATH_LEN);
CHECK(SFD_MAX_HDTR_LEN, RUST_SFD_MAX_HDTR_LEN);
CHECK(sizeof(((struct sfd_file_info*)0)->size), sizeof(size_t));
CHECK(sizeof(((struct sfd_file_info*)0)->mtime), RUST_TIME_T_SIZE);
CHECK(sizeof(off_t), RUST_OFF_T_SIZE);
CHECK(sizeof(pid_t), RUST_PID_T_SIZE);
CHECK(sizeof(bool), 1);

/* Every function of the API, with the exact prototype: a missing export
 * fails the link, a changed prototype fails the compile. */
static const struct {
    pid_t (*spawn)(const char*, const char*, const char*, int, int);
    int (*connect)(const char*, const char*);
    int (*shutdown)(pid_t);
    int (*read)(int, const char*, off_t, size_t, bool);
    int (*send)(int, const char*, int, off_t, size_t, bool);
    int (*open)(int, const char*, off_t, size_t, bool);
    bool (*send_open)(int, size_t, int);
    bool (*cancel)(int, size_t);
    int (*send_hdtr)(int, const char*, int, off_t, size_t, const void*, size_t,
                     const void*, size_t, bool);
    bool (*send_open_hdtr)(int, size_t, int, const void*, size_t, const void*,
                           size_t);
    int (*get_cmd)(const void*);
    int (*get_stat)(const void*);
    bool (*unmarshal_file_info)(struct sfd_file_info*, const void*);
    bool (*unmarshal_xfer_stat)(struct sfd_xfer_stat*, const void*);
    bool (*xfer_complete)(const struct sfd_xfer_stat*);
    int (*send_here)(int, const char*, int, off_t, size_t, const void*, size_t,
                     const void*, size_t, bool, struct sfd_file_info*, int*);
} api = {
    sfd_spawn, sfd_connect, sfd_shutdown, sfd_read, sfd_send, sfd_open,
    sfd_send_open, sfd_cancel, sfd_send_hdtr, sfd_send_open_hdtr, sfd_get_cmd,
    sfd_get_stat, sfd_unmarshal_file_info, sfd_unmarshal_xfer_stat,
    sfd_xfer_complete, sfd_send_here,
};

int main(void)
{
    /* Call the pure ones, so the link is real. */
    unsigned char hdr[SFD_HDR_SIZE] = { SFD_XFER_STAT, 5 };
    if (api.get_cmd(hdr) != SFD_XFER_STAT || api.get_stat(hdr) != 5)
        return 1;
#define P(name, v) printf("%s %lu\n", name, (unsigned long)(v))
    P("file_info.size", sizeof(struct sfd_file_info));
    P("file_info.align", ALIGNOF(struct sfd_file_info));
    P("file_info.cmd", offsetof(struct sfd_file_info, cmd));
    P("file_info.stat", offsetof(struct sfd_file_info, stat));
    P("file_info.size_off", offsetof(struct sfd_file_info, size));
    P("file_info.atime", offsetof(struct sfd_file_info, atime));
    P("file_info.mtime", offsetof(struct sfd_file_info, mtime));
    P("file_info.ctime", offsetof(struct sfd_file_info, ctime));
    P("file_info.txnid", offsetof(struct sfd_file_info, txnid));
    P("xfer_stat.size", sizeof(struct sfd_xfer_stat));
    P("xfer_stat.align", ALIGNOF(struct sfd_xfer_stat));
    P("xfer_stat.cmd", offsetof(struct sfd_xfer_stat, cmd));
    P("xfer_stat.stat", offsetof(struct sfd_xfer_stat, stat));
    P("xfer_stat.size_off", offsetof(struct sfd_xfer_stat, size));
    P("SFD_FILE_INFO", SFD_FILE_INFO);
    P("SFD_XFER_STAT", SFD_XFER_STAT);
    P("SFD_STAT_OK", SFD_STAT_OK);
    P("SFD_HDR_SIZE", SFD_HDR_SIZE);
    P("SFD_MAX_RESP_SIZE", SFD_MAX_RESP_SIZE);
    P("SFD_MAX_PATH_LEN", SFD_MAX_PATH_LEN);
    P("SFD_MAX_HDTR_LEN", SFD_MAX_HDTR_LEN);
    P("time_t", sizeof(time_t));
    P("off_t", sizeof(off_t));
    P("pid_t", sizeof(pid_t));
    return 0;
}
