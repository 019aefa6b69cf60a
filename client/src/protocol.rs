//! The wire format between clients and the daemon. Rule: pure encoding and
//! decoding of bytes, shared by the clients and the daemon; no system calls.
//!
//! Requests travel as one datagram each over the daemon's UNIX `SOCK_DGRAM`
//! socket, with their descriptors attached as `SCM_RIGHTS`. Responses travel on
//! the status (or data) pipe the client passed, and have exactly the size and
//! layout of the C structs in `responses.h`, because C clients `read(2)` them
//! straight into those structs.
//!
//! # Request layout
//!
//! Every integer is little-endian; the fixed part is [`REQUEST_FIXED_LEN`]
//! bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | protocol version ([`PROTOCOL_VERSION`]) |
//! | 1 | 1 | command ([`Command`]) |
//! | 2 | 2 | flags (must be 0) |
//! | 4 | 4 | path length in bytes, including its terminating NUL (0 if none) |
//! | 8 | 8 | file offset |
//! | 16 | 8 | length (0 = to the end of the file) |
//! | 24 | 8 | transfer id |
//! | 32 | 4 | header length |
//! | 36 | 4 | trailer length |
//!
//! followed by the path, the header bytes and the trailer bytes, in that order
//! and with nothing after them. The datagram's length must match exactly.

use std::ffi::{CStr, CString};
use std::fmt;
use std::mem::{offset_of, size_of};

/// Version byte carried by every request; a mismatch is answered with
/// `EPROTO`.
pub const PROTOCOL_VERSION: u8 = 1;

/// Where a request datagram names its command (after the version byte).
pub const REQUEST_CMD_AT: usize = 1;

/// Size of the fixed part of every request.
pub const REQUEST_FIXED_LEN: usize = 40;

/// The longest path a request may carry, in bytes, not counting the NUL.
/// Longer paths fail in the client with `ENAMETOOLONG`.
pub const MAX_PATH_LEN: usize = 4095;

/// The most header plus trailer bytes one request may carry. Larger fails in
/// the client with `EMSGSIZE` before anything is sent.
pub const MAX_HDTR_LEN: usize = 8192;

/// The largest request datagram: the daemon's receive buffer is one byte
/// larger, so that anything longer is seen as truncated and refused.
pub const MAX_REQUEST_LEN: usize = REQUEST_FIXED_LEN + MAX_PATH_LEN + 1 + MAX_HDTR_LEN;

/// The most descriptors any request carries.
pub const MAX_REQUEST_FDS: usize = 3;

/// `size` of a transfer-status message that marks completion.
pub const XFER_COMPLETE: usize = usize::MAX;

/// Request command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// Read a file into a new pipe: fds = `[data pipe]`.
    Read = 1,
    /// Send a file (with optional header/trailer) to a descriptor:
    /// fds = `[status pipe, destination]`.
    Send = 2,
    /// Open a file and report its info: fds = `[status pipe]`.
    Open = 3,
    /// Send a previously opened file (optional header/trailer):
    /// fds = `[destination]`.
    SendOpen = 4,
    /// Cancel a transfer by id: no fds.
    Cancel = 5,
    /// Ask for the daemon's counters: fds = `[reply pipe]`.
    Status = 6,
    /// Hand-off of a Send the client began in its own process ("inline
    /// first"): fds = `[status pipe, destination, file]`. The range is the
    /// request's as the application made it; the transfer-id field carries
    /// the file bytes already written to the destination, the header field
    /// the header bytes not yet written, the trailer field the trailer. The
    /// daemon writes the file info (with its own id) and continues from
    /// there.
    Continue = 7,
    /// The handshake: fds = `[reply pipe]`; answered with a [`Hello`].
    Hello = 8,
    /// Hand-off of a Read the client began in its own process: fds =
    /// `[data pipe, file]`. The client wrote the file info (with its own
    /// transfer id, which the daemon adopts, so that a Cancel by it works)
    /// and the first bytes into the data pipe; the range is what is left
    /// to write, the transfer-id field the client's id.
    ContinueRead = 9,
    /// An Open the client made in its own process, handed to the daemon to
    /// hold: fds = `[status pipe, file]`. The daemon holds the file under
    /// the client's id (the transfer-id field) with its open-file deadline
    /// and writes the file info with that id, exactly as for an Open of its
    /// own (or the refusal in its place).
    Adopt = 10,
    /// Send Open of a held file the client began in its own process: fds =
    /// `[destination]`. The transfer-id field names the open file, the
    /// offset field the file bytes already written, the header field the
    /// header bytes not yet written, the trailer field the trailer. The
    /// daemon writes the rest and the completion.
    ContinueOpen = 11,
}

impl Command {
    /// Parses a command byte.
    pub fn from_u8(b: u8) -> Option<Command> {
        Some(match b {
            1 => Command::Read,
            2 => Command::Send,
            3 => Command::Open,
            4 => Command::SendOpen,
            5 => Command::Cancel,
            6 => Command::Status,
            7 => Command::Continue,
            8 => Command::Hello,
            9 => Command::ContinueRead,
            10 => Command::Adopt,
            11 => Command::ContinueOpen,
            _ => return None,
        })
    }

    /// How many descriptors a request of this kind carries.
    pub fn fd_count(self) -> usize {
        match self {
            Command::Read
            | Command::Open
            | Command::SendOpen
            | Command::Status
            | Command::Hello
            | Command::ContinueOpen => 1,
            Command::Send | Command::ContinueRead | Command::Adopt => 2,
            Command::Continue => 3,
            Command::Cancel => 0,
        }
    }

    /// Whether the first descriptor of this request is a channel the daemon
    /// answers on (so a refusal can be reported there).
    pub fn has_reply_channel(self) -> bool {
        !matches!(
            self,
            Command::SendOpen | Command::Cancel | Command::ContinueOpen
        )
    }

    /// Whether requests of this kind name a path.
    pub fn has_path(self) -> bool {
        matches!(self, Command::Read | Command::Send | Command::Open)
    }

    /// Whether requests of this kind may carry header and trailer bytes.
    pub fn has_hdtr(self) -> bool {
        matches!(
            self,
            Command::Send | Command::SendOpen | Command::Continue | Command::ContinueOpen
        )
    }

    /// Whether requests of this kind carry a range.
    pub fn has_range(self) -> bool {
        self.has_path()
            || matches!(
                self,
                Command::Continue | Command::ContinueRead | Command::Adopt | Command::ContinueOpen
            )
    }
}

/// The byte range of a file a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    /// First byte.
    pub offset: u64,
    /// Number of bytes; 0 means "to the end of the file".
    pub len: u64,
}

impl Range {
    /// The whole file.
    pub const WHOLE: Range = Range { offset: 0, len: 0 };

    /// The number of bytes this range covers in a file of `file_size` bytes:
    /// the requested range clipped to the file.
    pub fn clip(&self, file_size: u64) -> u64 {
        let avail = file_size.saturating_sub(self.offset);
        if self.len == 0 {
            avail
        } else {
            self.len.min(avail)
        }
    }
}

/// Bytes written to the destination before and after the file range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderTrailer {
    /// Written before the first file byte.
    pub header: Vec<u8>,
    /// Written after the last file byte.
    pub trailer: Vec<u8>,
}

/// A decoded request (without its descriptors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// See [`Command::Read`].
    Read { path: CString, range: Range },
    /// See [`Command::Send`].
    Send {
        path: CString,
        range: Range,
        hdtr: HeaderTrailer,
    },
    /// See [`Command::Open`].
    Open { path: CString, range: Range },
    /// See [`Command::SendOpen`].
    SendOpen { txnid: u64, hdtr: HeaderTrailer },
    /// See [`Command::Cancel`].
    Cancel { txnid: u64 },
    /// See [`Command::Status`].
    Status,
    /// See [`Command::Continue`].
    Continue {
        /// The range the application asked for.
        range: Range,
        /// File bytes already written to the destination.
        done: u64,
        /// The header bytes not yet written, and the trailer.
        hdtr: HeaderTrailer,
    },
    /// See [`Command::Hello`].
    Hello,
    /// See [`Command::Adopt`].
    Adopt {
        /// The range the application asked for.
        range: Range,
        /// The id the client gave the open file ([`is_client_id`]).
        txnid: u64,
    },
    /// See [`Command::ContinueOpen`].
    ContinueOpen {
        /// The open file.
        txnid: u64,
        /// File bytes already written to the destination.
        done: u64,
        /// The header bytes not yet written, and the trailer.
        hdtr: HeaderTrailer,
    },
    /// See [`Command::ContinueRead`].
    ContinueRead {
        /// What is left of the range (never "to the end": a length).
        rest: Range,
        /// The id the client gave the transfer in its file info (top bit
        /// set: [`is_client_id`]).
        txnid: u64,
    },
}

/// The limits a Send's path and header/trailer must keep, checked before
/// anything is sent (the handshake included): what
/// [`Request::encode_into`] refuses for them.
pub fn check_send_limits(path: &CStr, hdtr: &HeaderTrailer) -> Result<(), EncodeError> {
    if path.to_bytes().len() > MAX_PATH_LEN {
        return Err(EncodeError::PathTooLong);
    }
    if hdtr.header.len() + hdtr.trailer.len() > MAX_HDTR_LEN {
        return Err(EncodeError::HdtrTooLong);
    }
    Ok(())
}

/// Whether `id` is one a client gives the transfers it begins in its own
/// process: the top bit of a `size_t` set, which the daemon's own ids never
/// have, so the two never collide.
pub fn is_client_id(id: u64) -> bool {
    id >> (usize::BITS - 1) & 1 == 1 && id <= usize::MAX as u64
}

/// Why a request could not be encoded (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The path is longer than [`MAX_PATH_LEN`] (`ENAMETOOLONG`).
    PathTooLong,
    /// Header plus trailer exceed [`MAX_HDTR_LEN`] (`EMSGSIZE`).
    HdtrTooLong,
}

impl EncodeError {
    /// The errno a client reports for this error.
    pub fn errno(self) -> i32 {
        match self {
            EncodeError::PathTooLong => libc::ENAMETOOLONG,
            EncodeError::HdtrTooLong => libc::EMSGSIZE,
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::PathTooLong => "path too long for a request",
            EncodeError::HdtrTooLong => "header and trailer too long for a request",
        })
    }
}

impl std::error::Error for EncodeError {}

impl From<EncodeError> for std::io::Error {
    fn from(e: EncodeError) -> Self {
        std::io::Error::from_raw_os_error(e.errno())
    }
}

/// Why a datagram is not a valid request (daemon side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed part (includes the zero-length datagram).
    TooShort(usize),
    /// Longer than [`MAX_REQUEST_LEN`].
    TooLong,
    /// Unknown protocol version.
    BadVersion(u8),
    /// Unknown command byte.
    BadCommand(u8),
    /// Non-zero flags.
    BadFlags(u16),
    /// The lengths in the fixed part do not add up to the datagram's length.
    LengthMismatch,
    /// A path where none belongs, or none where one must be.
    UnexpectedPath,
    /// The path is not NUL-terminated or holds a NUL inside.
    BadPath,
    /// The path is longer than [`MAX_PATH_LEN`].
    PathTooLong,
    /// Header/trailer bytes on a command that takes none, or too many.
    BadHdtr,
    /// Offset/length on a command that takes none, or a range that overflows.
    BadRange,
}

impl DecodeError {
    /// The errno the daemon answers with: `EPROTO` for a version mismatch,
    /// `ENAMETOOLONG` for an over-long path, `EINVAL` otherwise.
    pub fn errno(self) -> i32 {
        match self {
            DecodeError::BadVersion(_) => libc::EPROTO,
            DecodeError::PathTooLong => libc::ENAMETOOLONG,
            _ => libc::EINVAL,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort(n) => write!(f, "datagram of {n} bytes is too short"),
            DecodeError::TooLong => write!(f, "datagram is longer than {MAX_REQUEST_LEN} bytes"),
            DecodeError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::BadCommand(c) => write!(f, "unknown command {c}"),
            DecodeError::BadFlags(x) => write!(f, "unknown flags {x:#x}"),
            DecodeError::LengthMismatch => write!(f, "field lengths do not match the datagram"),
            DecodeError::UnexpectedPath => write!(f, "path present or missing against the command"),
            DecodeError::BadPath => write!(f, "path unterminated or with an inner NUL"),
            DecodeError::PathTooLong => write!(f, "path longer than {MAX_PATH_LEN} bytes"),
            DecodeError::BadHdtr => write!(f, "header/trailer not allowed or too long"),
            DecodeError::BadRange => write!(f, "range not allowed or overflowing"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Request {
    /// The command byte of this request.
    pub fn command(&self) -> Command {
        match self {
            Request::Read { .. } => Command::Read,
            Request::Send { .. } => Command::Send,
            Request::Open { .. } => Command::Open,
            Request::SendOpen { .. } => Command::SendOpen,
            Request::Cancel { .. } => Command::Cancel,
            Request::Status => Command::Status,
            Request::Continue { .. } => Command::Continue,
            Request::Hello => Command::Hello,
            Request::ContinueRead { .. } => Command::ContinueRead,
            Request::Adopt { .. } => Command::Adopt,
            Request::ContinueOpen { .. } => Command::ContinueOpen,
        }
    }

    /// Encodes into `out` (cleared first). Fails before anything is sent on
    /// an argument no daemon would accept.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (path, range, txnid, hdtr): (Option<&CStr>, Range, u64, Option<&HeaderTrailer>) =
            match self {
                Request::Read { path, range } | Request::Open { path, range } => {
                    (Some(path), *range, 0, None)
                }
                Request::Send { path, range, hdtr } => (Some(path), *range, 0, Some(hdtr)),
                Request::SendOpen { txnid, hdtr } => (None, Range::WHOLE, *txnid, Some(hdtr)),
                Request::Cancel { txnid } => (None, Range::WHOLE, *txnid, None),
                Request::Status | Request::Hello => (None, Range::WHOLE, 0, None),
                Request::Continue { range, done, hdtr } => (None, *range, *done, Some(hdtr)),
                Request::ContinueRead { rest, txnid } => (None, *rest, *txnid, None),
                Request::Adopt { range, txnid } => (None, *range, *txnid, None),
                Request::ContinueOpen { txnid, done, hdtr } => (
                    None,
                    Range {
                        offset: *done,
                        len: 0,
                    },
                    *txnid,
                    Some(hdtr),
                ),
            };
        let path = path.map(CStr::to_bytes_with_nul);
        // The empty path is sent as it is: the daemon answers ENOENT, as the
        // original does.
        if let Some(p) = path {
            if p.len() - 1 > MAX_PATH_LEN {
                return Err(EncodeError::PathTooLong);
            }
        }
        let (hdr, trl) = hdtr
            .map(|h| (&h.header[..], &h.trailer[..]))
            .unwrap_or((&[], &[]));
        if hdr.len() + trl.len() > MAX_HDTR_LEN {
            return Err(EncodeError::HdtrTooLong);
        }
        let path = path.unwrap_or(&[]);
        out.clear();
        out.reserve(REQUEST_FIXED_LEN + path.len() + hdr.len() + trl.len());
        out.push(PROTOCOL_VERSION);
        out.push(self.command() as u8);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(&range.offset.to_le_bytes());
        out.extend_from_slice(&range.len.to_le_bytes());
        out.extend_from_slice(&txnid.to_le_bytes());
        out.extend_from_slice(&(hdr.len() as u32).to_le_bytes());
        out.extend_from_slice(&(trl.len() as u32).to_le_bytes());
        debug_assert_eq!(out.len(), REQUEST_FIXED_LEN);
        out.extend_from_slice(path);
        out.extend_from_slice(hdr);
        out.extend_from_slice(trl);
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode_into(&mut v)?;
        Ok(v)
    }

    /// The command a datagram names, whether or not the rest of it
    /// decodes: what a refusal needs to know to answer on the right
    /// channel (a Status request's reply pipe, a transfer's status pipe).
    /// `None` for a datagram too short to name one, or a byte that names
    /// none.
    pub fn command_of(buf: &[u8]) -> Option<Command> {
        buf.get(REQUEST_CMD_AT).copied().and_then(Command::from_u8)
    }

    /// Decodes one datagram. Never panics; every malformed input gets a
    /// [`DecodeError`].
    pub fn decode(buf: &[u8]) -> Result<Request, DecodeError> {
        if buf.len() < REQUEST_FIXED_LEN {
            return Err(DecodeError::TooShort(buf.len()));
        }
        if buf.len() > MAX_REQUEST_LEN {
            return Err(DecodeError::TooLong);
        }
        let (fixed, rest) = buf.split_at(REQUEST_FIXED_LEN);
        if fixed[0] != PROTOCOL_VERSION {
            return Err(DecodeError::BadVersion(fixed[0]));
        }
        let cmd = Command::from_u8(fixed[REQUEST_CMD_AT])
            .ok_or(DecodeError::BadCommand(fixed[REQUEST_CMD_AT]))?;
        let flags = u16::from_le_bytes([fixed[2], fixed[3]]);
        if flags != 0 {
            return Err(DecodeError::BadFlags(flags));
        }
        let le32 = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&fixed[at..at + 4]);
            u32::from_le_bytes(b) as usize
        };
        let le64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let path_len = le32(4);
        let range = Range {
            offset: le64(8),
            len: le64(16),
        };
        let txnid = le64(24);
        let hdr_len = le32(32);
        let trl_len = le32(36);

        if path_len > MAX_PATH_LEN + 1 {
            return Err(DecodeError::PathTooLong);
        }
        if hdr_len > MAX_HDTR_LEN || trl_len > MAX_HDTR_LEN || hdr_len + trl_len > MAX_HDTR_LEN {
            return Err(DecodeError::BadHdtr);
        }
        if path_len + hdr_len + trl_len != rest.len() {
            return Err(DecodeError::LengthMismatch);
        }
        if cmd.has_path() != (path_len != 0) {
            return Err(DecodeError::UnexpectedPath);
        }
        if !cmd.has_hdtr() && hdr_len + trl_len != 0 {
            return Err(DecodeError::BadHdtr);
        }
        if !cmd.has_range() && range != Range::WHOLE {
            return Err(DecodeError::BadRange);
        }
        if range.offset > i64::MAX as u64 || range.offset.checked_add(range.len).is_none() {
            return Err(DecodeError::BadRange);
        }
        let (path_bytes, rest) = rest.split_at(path_len);
        let (hdr, trl) = rest.split_at(hdr_len);
        let path = if cmd.has_path() {
            let c = CStr::from_bytes_with_nul(path_bytes).map_err(|_| DecodeError::BadPath)?;
            Some(c.to_owned())
        } else {
            None
        };
        let hdtr = HeaderTrailer {
            header: hdr.to_vec(),
            trailer: trl.to_vec(),
        };
        // `path` is Some exactly when `cmd.has_path()`, checked above.
        Ok(match (cmd, path) {
            (Command::Read, Some(path)) => Request::Read { path, range },
            (Command::Send, Some(path)) => Request::Send { path, range, hdtr },
            (Command::Open, Some(path)) => Request::Open { path, range },
            (Command::SendOpen, None) => Request::SendOpen { txnid, hdtr },
            (Command::Cancel, None) => Request::Cancel { txnid },
            (Command::Status, None) => Request::Status,
            (Command::Continue, None) => Request::Continue {
                range,
                done: txnid,
                hdtr,
            },
            (Command::Hello, None) => Request::Hello,
            (Command::ContinueRead, None) => Request::ContinueRead { rest: range, txnid },
            (Command::Adopt, None) => Request::Adopt { range, txnid },
            (Command::ContinueOpen, None) if range.len == 0 => Request::ContinueOpen {
                txnid,
                done: range.offset,
                hdtr,
            },
            (Command::ContinueOpen, None) => return Err(DecodeError::BadRange),
            _ => return Err(DecodeError::UnexpectedPath),
        })
    }
}

/// Response command id of a file-info message (`SFD_FILE_INFO`).
pub const SFD_FILE_INFO: u8 = 0x81;
/// Response command id of a transfer-status message (`SFD_XFER_STAT`).
pub const SFD_XFER_STAT: u8 = 0x82;
/// Response command id of a daemon-status message (an addition; not in the
/// original API).
pub const SFD_SERVER_STAT: u8 = 0x83;
/// Response command id of the handshake's answer (an addition).
pub const SFD_HELLO: u8 = 0x84;
/// Status byte of a successful message (`SFD_STAT_OK`).
pub const SFD_STAT_OK: u8 = 0;
/// Size of the message header: command id and status (`SFD_HDR_SIZE`).
pub const SFD_HDR_SIZE: usize = 2;

/// `struct sfd_file_info` exactly as C lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileInfo {
    /// [`SFD_FILE_INFO`].
    pub cmd: u8,
    /// [`SFD_STAT_OK`] or an errno.
    pub stat: u8,
    /// Bytes the transfer will move (the range clipped to the file).
    pub size: usize,
    /// Last access, seconds since the epoch.
    pub atime: libc::time_t,
    /// Last modification.
    pub mtime: libc::time_t,
    /// Last status change.
    pub ctime: libc::time_t,
    /// Transfer id, for `send_open` and `cancel`.
    pub txnid: usize,
}

/// `struct sfd_xfer_stat` exactly as C lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XferStat {
    /// [`SFD_XFER_STAT`].
    pub cmd: u8,
    /// [`SFD_STAT_OK`] or an errno.
    pub stat: u8,
    /// Bytes moved since the previous message, or [`XFER_COMPLETE`].
    pub size: usize,
}

/// Daemon counters, answered to [`Request::Status`]. Its layout is ours
/// (there is no C struct in the original API).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStat {
    /// [`SFD_SERVER_STAT`].
    pub cmd: u8,
    /// [`SFD_STAT_OK`].
    pub stat: u8,
    /// Protocol version the daemon speaks.
    pub version: u8,
    /// Transfers in the table now (open files included).
    pub live: u64,
    /// Transfers completed since start.
    pub completed: u64,
    /// Transfers that ended in an error since start.
    pub failed: u64,
    /// Bytes moved to destinations since start.
    pub bytes: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Sends clients began in their own process and handed on (Continue).
    pub handoffs: u64,
}

/// Size of an encoded [`FileInfo`].
pub const FILE_INFO_LEN: usize = size_of::<FileInfo>();
/// Size of an encoded [`XferStat`].
pub const XFER_STAT_LEN: usize = size_of::<XferStat>();
/// Size of an encoded [`ServerStat`].
pub const SERVER_STAT_LEN: usize = size_of::<ServerStat>();
/// The largest response message (`SFD_MAX_RESP_SIZE`).
pub const MAX_RESPONSE_LEN: usize = FILE_INFO_LEN;

/// The daemon's answer to [`Request::Hello`], for a client's in-process
/// attempt: what it needs to open files beneath the same root itself.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | [`SFD_HELLO`] |
/// | 1 | 1 | [`SFD_STAT_OK`] |
/// | 2 | 1 | protocol version |
/// | 3 | 1 | flags: bit 0, in-process attempts allowed for this caller |
/// | 4 | 4 | root path length in bytes, no NUL |
/// | 8 | 8 | the root's `st_dev` |
/// | 16 | 8 | the root's `st_ino` |
/// | 24 | 4 | the open-file timeout, ms |
/// | 28 | 4 | 0 |
/// | 32 | n | the root's path, as the daemon was given it |
///
/// Little-endian; one pipe write (below `PIPE_BUF`, so the path is at
/// most [`HELLO_MAX_PATH`] bytes: a longer root answers "not allowed").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the daemon speaks.
    pub version: u8,
    /// Whether this caller may attempt transfers in its own process.
    pub inline_allowed: bool,
    /// The root's device.
    pub root_dev: u64,
    /// The root's inode.
    pub root_ino: u64,
    /// The root's path (bytes, no NUL).
    pub root_path: Vec<u8>,
    /// How long an open file waits for Send Open (`-t`), in ms.
    pub open_timeout_ms: u32,
}

/// Fixed part of an encoded [`Hello`].
pub const HELLO_FIXED_LEN: usize = 32;
/// The longest root path a [`Hello`] carries: what fits one atomic pipe
/// write (`PIPE_BUF` is 4096 bytes on Linux, 512 on FreeBSD and macOS).
pub const HELLO_MAX_PATH: usize = libc::PIPE_BUF - HELLO_FIXED_LEN - 8;
const _: () = assert!(HELLO_FIXED_LEN + HELLO_MAX_PATH < libc::PIPE_BUF);

impl Hello {
    /// Encodes; a root path longer than [`HELLO_MAX_PATH`] is sent empty,
    /// with attempts not allowed.
    pub fn encode(&self) -> Vec<u8> {
        let (path, allowed) = if self.root_path.len() > HELLO_MAX_PATH {
            (&[][..], false)
        } else {
            (&self.root_path[..], self.inline_allowed)
        };
        let mut out = Vec::with_capacity(HELLO_FIXED_LEN + path.len());
        out.extend_from_slice(&[SFD_HELLO, SFD_STAT_OK, self.version, u8::from(allowed)]);
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.root_dev.to_le_bytes());
        out.extend_from_slice(&self.root_ino.to_le_bytes());
        out.extend_from_slice(&self.open_timeout_ms.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(path);
        out
    }

    /// Decodes one whole answer; `None` for anything else.
    pub fn decode(buf: &[u8]) -> Option<Hello> {
        let fixed = buf.get(..HELLO_FIXED_LEN)?;
        if fixed[0] != SFD_HELLO
            || fixed[1] != SFD_STAT_OK
            || fixed[3] & !1 != 0
            || fixed[28..32] != [0; 4]
        {
            return None;
        }
        let le = |at: usize, n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&fixed[at..at + n]);
            u64::from_le_bytes(b)
        };
        let path_len = le(4, 4) as usize;
        if path_len > HELLO_MAX_PATH || buf.len() != HELLO_FIXED_LEN + path_len {
            return None;
        }
        Some(Hello {
            version: fixed[2],
            inline_allowed: fixed[3] & 1 != 0,
            root_dev: le(8, 8),
            root_ino: le(16, 8),
            open_timeout_ms: le(24, 4) as u32,
            root_path: buf[HELLO_FIXED_LEN..].to_vec(),
        })
    }
}

// Responses must be written atomically to a pipe.
const _: () = assert!(MAX_RESPONSE_LEN < libc::PIPE_BUF);
const _: () = assert!(SERVER_STAT_LEN < libc::PIPE_BUF);

fn put_usize(buf: &mut [u8], at: usize, v: usize) {
    buf[at..at + size_of::<usize>()].copy_from_slice(&v.to_ne_bytes());
}

fn get_usize(buf: &[u8], at: usize) -> usize {
    let mut b = [0u8; size_of::<usize>()];
    b.copy_from_slice(&buf[at..at + size_of::<usize>()]);
    usize::from_ne_bytes(b)
}

fn put_time(buf: &mut [u8], at: usize, v: libc::time_t) {
    buf[at..at + size_of::<libc::time_t>()].copy_from_slice(&v.to_ne_bytes());
}

fn get_time(buf: &[u8], at: usize) -> libc::time_t {
    let mut b = [0u8; size_of::<libc::time_t>()];
    b.copy_from_slice(&buf[at..at + size_of::<libc::time_t>()]);
    libc::time_t::from_ne_bytes(b)
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(b)
}

impl FileInfo {
    /// A successful file info.
    pub fn ok(
        size: u64,
        atime: libc::time_t,
        mtime: libc::time_t,
        ctime: libc::time_t,
        txnid: u64,
    ) -> FileInfo {
        FileInfo {
            cmd: SFD_FILE_INFO,
            stat: SFD_STAT_OK,
            size: size as usize,
            atime,
            mtime,
            ctime,
            txnid: txnid as usize,
        }
    }

    /// The C struct's bytes (padding zeroed).
    pub fn encode(&self) -> [u8; FILE_INFO_LEN] {
        let mut b = [0u8; FILE_INFO_LEN];
        b[offset_of!(FileInfo, cmd)] = self.cmd;
        b[offset_of!(FileInfo, stat)] = self.stat;
        put_usize(&mut b, offset_of!(FileInfo, size), self.size);
        put_time(&mut b, offset_of!(FileInfo, atime), self.atime);
        put_time(&mut b, offset_of!(FileInfo, mtime), self.mtime);
        put_time(&mut b, offset_of!(FileInfo, ctime), self.ctime);
        put_usize(&mut b, offset_of!(FileInfo, txnid), self.txnid);
        b
    }

    /// Reads the C struct's fields from `buf` (at least [`FILE_INFO_LEN`]
    /// bytes), whatever the command and status.
    pub fn decode(buf: &[u8]) -> Option<FileInfo> {
        if buf.len() < FILE_INFO_LEN {
            return None;
        }
        Some(FileInfo {
            cmd: buf[offset_of!(FileInfo, cmd)],
            stat: buf[offset_of!(FileInfo, stat)],
            size: get_usize(buf, offset_of!(FileInfo, size)),
            atime: get_time(buf, offset_of!(FileInfo, atime)),
            mtime: get_time(buf, offset_of!(FileInfo, mtime)),
            ctime: get_time(buf, offset_of!(FileInfo, ctime)),
            txnid: get_usize(buf, offset_of!(FileInfo, txnid)),
        })
    }
}

impl XferStat {
    /// A progress message for `n` bytes.
    pub fn progress(n: usize) -> XferStat {
        XferStat {
            cmd: SFD_XFER_STAT,
            stat: SFD_STAT_OK,
            size: n,
        }
    }

    /// The completion message.
    pub fn complete() -> XferStat {
        XferStat::progress(XFER_COMPLETE)
    }

    /// Whether this marks completion (`sfd_xfer_complete`).
    pub fn is_complete(&self) -> bool {
        self.cmd == SFD_XFER_STAT && self.stat == SFD_STAT_OK && self.size == XFER_COMPLETE
    }

    /// The C struct's bytes (padding zeroed).
    pub fn encode(&self) -> [u8; XFER_STAT_LEN] {
        let mut b = [0u8; XFER_STAT_LEN];
        b[offset_of!(XferStat, cmd)] = self.cmd;
        b[offset_of!(XferStat, stat)] = self.stat;
        put_usize(&mut b, offset_of!(XferStat, size), self.size);
        b
    }

    /// Reads the C struct's fields from `buf` (at least [`XFER_STAT_LEN`]).
    pub fn decode(buf: &[u8]) -> Option<XferStat> {
        if buf.len() < XFER_STAT_LEN {
            return None;
        }
        Some(XferStat {
            cmd: buf[offset_of!(XferStat, cmd)],
            stat: buf[offset_of!(XferStat, stat)],
            size: get_usize(buf, offset_of!(XferStat, size)),
        })
    }
}

impl ServerStat {
    /// The struct's bytes (padding zeroed).
    pub fn encode(&self) -> [u8; SERVER_STAT_LEN] {
        let mut b = [0u8; SERVER_STAT_LEN];
        b[offset_of!(ServerStat, cmd)] = self.cmd;
        b[offset_of!(ServerStat, stat)] = self.stat;
        b[offset_of!(ServerStat, version)] = self.version;
        put_u64(&mut b, offset_of!(ServerStat, live), self.live);
        put_u64(&mut b, offset_of!(ServerStat, completed), self.completed);
        put_u64(&mut b, offset_of!(ServerStat, failed), self.failed);
        put_u64(&mut b, offset_of!(ServerStat, bytes), self.bytes);
        put_u64(
            &mut b,
            offset_of!(ServerStat, uptime_secs),
            self.uptime_secs,
        );
        put_u64(&mut b, offset_of!(ServerStat, handoffs), self.handoffs);
        b
    }

    /// Reads the struct from `buf` (at least [`SERVER_STAT_LEN`] bytes).
    pub fn decode(buf: &[u8]) -> Option<ServerStat> {
        if buf.len() < SERVER_STAT_LEN {
            return None;
        }
        Some(ServerStat {
            cmd: buf[offset_of!(ServerStat, cmd)],
            stat: buf[offset_of!(ServerStat, stat)],
            version: buf[offset_of!(ServerStat, version)],
            live: get_u64(buf, offset_of!(ServerStat, live)),
            completed: get_u64(buf, offset_of!(ServerStat, completed)),
            failed: get_u64(buf, offset_of!(ServerStat, failed)),
            bytes: get_u64(buf, offset_of!(ServerStat, bytes)),
            uptime_secs: get_u64(buf, offset_of!(ServerStat, uptime_secs)),
            handoffs: get_u64(buf, offset_of!(ServerStat, handoffs)),
        })
    }
}

/// An error message: the two-byte header alone. `cmd` is [`SFD_FILE_INFO`]
/// when it replaces the file info, [`SFD_XFER_STAT`] when a started transfer
/// failed.
pub fn error_header(cmd: u8, errno: i32) -> [u8; SFD_HDR_SIZE] {
    [cmd, errno_byte(errno)]
}

/// Squeezes an errno into the one status byte. Every errno the daemon sends
/// is below 256 on the supported systems; anything else becomes `EIO`.
pub fn errno_byte(errno: i32) -> u8 {
    match u8::try_from(errno) {
        Ok(0) | Err(_) => libc::EIO as u8,
        Ok(b) => b,
    }
}

/// One message read from a status or data channel, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The file info (first message of every transfer).
    FileInfo(FileInfo),
    /// Bytes moved since the previous message.
    Progress(usize),
    /// The transfer is complete.
    Complete,
    /// The request was refused (`cmd` was [`SFD_FILE_INFO`]) or the transfer
    /// failed (`cmd` was [`SFD_XFER_STAT`]), with this errno.
    Error { cmd: u8, errno: i32 },
    /// The daemon's counters.
    ServerStat(ServerStat),
}

impl Response {
    /// How many bytes a message starting with this header occupies, given its
    /// command and status bytes; `None` for an unknown command.
    pub fn len_from_header(cmd: u8, stat: u8) -> Option<usize> {
        if stat != SFD_STAT_OK {
            return Some(SFD_HDR_SIZE);
        }
        match cmd {
            SFD_FILE_INFO => Some(FILE_INFO_LEN),
            SFD_XFER_STAT => Some(XFER_STAT_LEN),
            SFD_SERVER_STAT => Some(SERVER_STAT_LEN),
            _ => None,
        }
    }

    /// Decodes a complete message (exactly as long as
    /// [`Response::len_from_header`] says).
    pub fn decode(buf: &[u8]) -> Option<Response> {
        if buf.len() < SFD_HDR_SIZE {
            return None;
        }
        let (cmd, stat) = (buf[0], buf[1]);
        if stat != SFD_STAT_OK {
            return Some(Response::Error {
                cmd,
                errno: i32::from(stat),
            });
        }
        match cmd {
            SFD_FILE_INFO => FileInfo::decode(buf).map(Response::FileInfo),
            SFD_XFER_STAT => XferStat::decode(buf).map(|x| {
                if x.size == XFER_COMPLETE {
                    Response::Complete
                } else {
                    Response::Progress(x.size)
                }
            }),
            SFD_SERVER_STAT => ServerStat::decode(buf).map(Response::ServerStat),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn the_command_is_named_even_when_the_rest_does_not_decode() {
        let bytes = Request::Cancel { txnid: 7 }.encode().unwrap();
        assert_eq!(Request::command_of(&bytes), Some(Command::Cancel));
        assert_eq!(
            Request::command_of(&bytes[..2]),
            Some(Command::Cancel),
            "cut short"
        );
        assert_eq!(Request::command_of(&bytes[..1]), None);
        assert_eq!(
            Request::command_of(&[PROTOCOL_VERSION, 200]),
            None,
            "no such command"
        );
    }

    #[test]
    fn c_struct_sizes_match_the_spec_on_lp64() {
        if size_of::<usize>() == 8 && size_of::<libc::time_t>() == 8 {
            assert_eq!(FILE_INFO_LEN, 48);
            assert_eq!(XFER_STAT_LEN, 16);
        }
        assert_eq!(SFD_HDR_SIZE, 2);
        assert_eq!(MAX_RESPONSE_LEN, FILE_INFO_LEN);
    }

    #[test]
    fn every_request_kind_round_trips() {
        let hdtr = HeaderTrailer {
            header: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            trailer: b"--end".to_vec(),
        };
        let reqs = [
            Request::Read {
                path: c("a/b.txt"),
                range: Range { offset: 3, len: 9 },
            },
            Request::Send {
                path: c("x"),
                range: Range::WHOLE,
                hdtr: hdtr.clone(),
            },
            Request::Open {
                path: c("dir/file"),
                range: Range { offset: 1, len: 0 },
            },
            Request::SendOpen {
                txnid: 0xdead_beef_cafe,
                hdtr,
            },
            Request::Cancel { txnid: 42 },
            Request::Status,
        ];
        for r in reqs {
            let bytes = r.encode().unwrap();
            assert_eq!(Request::decode(&bytes), Ok(r));
        }
    }

    #[test]
    fn encode_refuses_what_no_daemon_accepts() {
        let long = CString::new(vec![b'a'; MAX_PATH_LEN + 1]).unwrap();
        let r = Request::Read {
            path: long,
            range: Range::WHOLE,
        };
        assert_eq!(r.encode(), Err(EncodeError::PathTooLong));
        assert_eq!(EncodeError::PathTooLong.errno(), libc::ENAMETOOLONG);
        let max = CString::new(vec![b'a'; MAX_PATH_LEN]).unwrap();
        let r = Request::Read {
            path: max,
            range: Range::WHOLE,
        };
        let bytes = r.encode().unwrap();
        assert!(bytes.len() <= MAX_REQUEST_LEN);
        assert_eq!(Request::decode(&bytes), Ok(r));

        let big = HeaderTrailer {
            header: vec![0; MAX_HDTR_LEN],
            trailer: vec![0; 1],
        };
        let r = Request::SendOpen {
            txnid: 1,
            hdtr: big,
        };
        assert_eq!(r.encode(), Err(EncodeError::HdtrTooLong));
        assert_eq!(EncodeError::HdtrTooLong.errno(), libc::EMSGSIZE);
        // The empty path is the daemon's to answer (ENOENT): it round-trips.
        let r = Request::Read {
            path: c(""),
            range: Range::WHOLE,
        };
        assert_eq!(Request::decode(&r.encode().unwrap()), Ok(r));
        for r in [
            Request::Adopt {
                range: Range { offset: 1, len: 2 },
                txnid: 1 << 63 | 3,
            },
            Request::ContinueOpen {
                txnid: 1 << 63 | 3,
                done: 10,
                hdtr: HeaderTrailer {
                    header: b"h".to_vec(),
                    trailer: Vec::new(),
                },
            },
        ] {
            assert_eq!(Request::decode(&r.encode().unwrap()), Ok(r));
        }
    }

    #[test]
    fn largest_request_fits_the_limit() {
        let r = Request::Send {
            path: CString::new(vec![b'p'; MAX_PATH_LEN]).unwrap(),
            range: Range::WHOLE,
            hdtr: HeaderTrailer {
                header: vec![1; MAX_HDTR_LEN / 2],
                trailer: vec![2; MAX_HDTR_LEN / 2],
            },
        };
        let bytes = r.encode().unwrap();
        assert_eq!(bytes.len(), MAX_REQUEST_LEN);
        assert_eq!(Request::decode(&bytes), Ok(r));
    }

    fn valid_read() -> Vec<u8> {
        Request::Read {
            path: c("f"),
            range: Range::WHOLE,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn malformed_datagrams_get_typed_errors() {
        assert_eq!(Request::decode(&[]), Err(DecodeError::TooShort(0)));
        assert_eq!(Request::decode(&[1; 39]), Err(DecodeError::TooShort(39)));
        assert_eq!(
            Request::decode(&vec![0; MAX_REQUEST_LEN + 1]),
            Err(DecodeError::TooLong)
        );

        let mut b = valid_read();
        b[0] = 9;
        assert_eq!(Request::decode(&b), Err(DecodeError::BadVersion(9)));
        assert_eq!(DecodeError::BadVersion(9).errno(), libc::EPROTO);

        let mut b = valid_read();
        b[1] = 77;
        assert_eq!(Request::decode(&b), Err(DecodeError::BadCommand(77)));

        let mut b = valid_read();
        b[2] = 1;
        assert_eq!(Request::decode(&b), Err(DecodeError::BadFlags(1)));

        let mut b = valid_read();
        b.push(0);
        assert_eq!(Request::decode(&b), Err(DecodeError::LengthMismatch));

        // Path not NUL-terminated.
        let mut b = valid_read();
        let last = b.len() - 1;
        b[last] = b'x';
        assert_eq!(Request::decode(&b), Err(DecodeError::BadPath));

        // Inner NUL.
        let mut b = Request::Read {
            path: c("ab"),
            range: Range::WHOLE,
        }
        .encode()
        .unwrap();
        b[REQUEST_FIXED_LEN] = 0;
        assert_eq!(Request::decode(&b), Err(DecodeError::BadPath));

        // Path length over the limit.
        let mut b = valid_read();
        b[4..8].copy_from_slice(&((MAX_PATH_LEN as u32) + 2).to_le_bytes());
        assert_eq!(Request::decode(&b), Err(DecodeError::PathTooLong));
        assert_eq!(DecodeError::PathTooLong.errno(), libc::ENAMETOOLONG);

        // Cancel with a path.
        let mut b = valid_read();
        b[1] = Command::Cancel as u8;
        assert_eq!(Request::decode(&b), Err(DecodeError::UnexpectedPath));

        // Read with a header.
        let mut b = valid_read();
        b[32] = 1;
        b.push(b'h');
        assert_eq!(Request::decode(&b), Err(DecodeError::BadHdtr));

        // Cancel with a range.
        let mut b = Request::Cancel { txnid: 1 }.encode().unwrap();
        b[8] = 1;
        assert_eq!(Request::decode(&b), Err(DecodeError::BadRange));

        // Overflowing range.
        let mut b = valid_read();
        b[8..16].copy_from_slice(&(i64::MAX as u64).to_le_bytes());
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Request::decode(&b), Err(DecodeError::BadRange));
    }

    #[test]
    fn responses_round_trip_and_classify() {
        let fi = FileInfo::ok(123, 1, 2, 3, 99);
        let b = fi.encode();
        assert_eq!(b.len(), FILE_INFO_LEN);
        assert_eq!(Response::len_from_header(b[0], b[1]), Some(FILE_INFO_LEN));
        assert_eq!(Response::decode(&b), Some(Response::FileInfo(fi)));

        let p = XferStat::progress(4096).encode();
        assert_eq!(Response::decode(&p), Some(Response::Progress(4096)));
        let done = XferStat::complete();
        assert!(done.is_complete());
        assert_eq!(Response::decode(&done.encode()), Some(Response::Complete));

        let e = error_header(SFD_XFER_STAT, libc::ECANCELED);
        assert_eq!(Response::len_from_header(e[0], e[1]), Some(SFD_HDR_SIZE));
        assert_eq!(
            Response::decode(&e),
            Some(Response::Error {
                cmd: SFD_XFER_STAT,
                errno: libc::ECANCELED
            })
        );
        assert_eq!(errno_byte(0), libc::EIO as u8);
        assert_eq!(errno_byte(100_000), libc::EIO as u8);

        let s = ServerStat {
            cmd: SFD_SERVER_STAT,
            stat: 0,
            version: PROTOCOL_VERSION,
            live: 1,
            completed: 2,
            failed: 3,
            bytes: 4,
            uptime_secs: 5,
            handoffs: 6,
        };
        assert_eq!(Response::decode(&s.encode()), Some(Response::ServerStat(s)));
    }

    #[test]
    fn range_clips_to_the_file() {
        assert_eq!(Range::WHOLE.clip(10), 10);
        assert_eq!(Range { offset: 4, len: 0 }.clip(10), 6);
        assert_eq!(Range { offset: 4, len: 3 }.clip(10), 3);
        assert_eq!(Range { offset: 4, len: 30 }.clip(10), 6);
        assert_eq!(Range { offset: 40, len: 3 }.clip(10), 0);
        assert_eq!(Range::WHOLE.clip(0), 0);
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let path = proptest::collection::vec(1u8..=255, 1..64)
            .prop_map(|v| CString::new(v).expect("no NUL"));
        let range =
            (0u64..(1 << 40), 0u64..(1 << 40)).prop_map(|(offset, len)| Range { offset, len });
        let bytes = proptest::collection::vec(any::<u8>(), 0..64);
        let hdtr =
            (bytes.clone(), bytes).prop_map(|(header, trailer)| HeaderTrailer { header, trailer });
        prop_oneof![
            (path.clone(), range.clone()).prop_map(|(path, range)| Request::Read { path, range }),
            (path.clone(), range.clone(), hdtr.clone())
                .prop_map(|(path, range, hdtr)| Request::Send { path, range, hdtr }),
            (path, range).prop_map(|(path, range)| Request::Open { path, range }),
            (any::<u64>(), hdtr).prop_map(|(txnid, hdtr)| Request::SendOpen { txnid, hdtr }),
            any::<u64>().prop_map(|txnid| Request::Cancel { txnid }),
            Just(Request::Status),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(r in arb_request()) {
            let bytes = r.encode().unwrap();
            prop_assert_eq!(Request::decode(&bytes), Ok(r));
        }

        #[test]
        fn prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Request::decode(&bytes);
        }

        #[test]
        fn prop_mutated_requests_never_panic(r in arb_request(), at in any::<usize>(), val in any::<u8>()) {
            let mut bytes = r.encode().unwrap();
            let i = at % bytes.len();
            bytes[i] = val;
            let _ = Request::decode(&bytes);
            bytes.truncate(i);
            let _ = Request::decode(&bytes);
        }

        #[test]
        fn prop_responses_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Response::decode(&bytes);
        }
    }

    #[test]
    fn continue_and_hello_round_trip() {
        let c = Request::Continue {
            range: Range {
                offset: 10,
                len: 100,
            },
            done: 42,
            hdtr: HeaderTrailer {
                header: b"ad".to_vec(),
                trailer: b"end".to_vec(),
            },
        };
        assert_eq!(Request::decode(&c.encode().unwrap()), Ok(c));
        assert_eq!(Command::Continue.fd_count(), 3);
        let r = Request::ContinueRead {
            rest: Range { offset: 5, len: 9 },
            txnid: 1 << 63 | 7,
        };
        assert_eq!(Request::decode(&r.encode().unwrap()), Ok(r));
        assert_eq!(
            Request::decode(&Request::Hello.encode().unwrap()),
            Ok(Request::Hello)
        );
        // A Hello with a range is malformed, as for any command without one.
        let mut bad = Request::Hello.encode().unwrap();
        bad[8] = 1;
        assert_eq!(Request::decode(&bad), Err(DecodeError::BadRange));

        let h = Hello {
            version: PROTOCOL_VERSION,
            inline_allowed: true,
            root_dev: 0x801,
            root_ino: 2,
            root_path: b"/srv/www".to_vec(),
            open_timeout_ms: 10_000,
        };
        assert_eq!(Hello::decode(&h.encode()), Some(h.clone()));
        // Truncated, padded, or a refusal in its place: not a Hello.
        let e = h.encode();
        assert_eq!(Hello::decode(&e[..e.len() - 1]), None);
        assert_eq!(Hello::decode(&[&e[..], b"x"].concat()), None);
        assert_eq!(
            Hello::decode(&error_header(SFD_SERVER_STAT, libc::EACCES)),
            None
        );
        // A root too long for one pipe write is sent empty, not allowed.
        let long = Hello {
            root_path: vec![b'a'; HELLO_MAX_PATH + 1],
            ..h
        };
        let d = Hello::decode(&long.encode()).unwrap();
        assert!(!d.inline_allowed && d.root_path.is_empty());
    }
}
