//! Whole status messages out of the bytes a status pipe gave. Rule: no
//! I/O here; a caller reads into [`Messages::space`], says how much came
//! ([`Messages::filled`]) and takes whole messages out ([`Messages::take`]).
//!
//! Why a buffer: the daemon (and a transfer finished in this process)
//! writes each message whole, and a short transfer's file info and
//! completion are usually both in the pipe when its reader wakes. Read one
//! message at a time, header then body, that is four reads; read into a
//! buffer, one. Only a status channel may be read this way: it carries
//! messages and nothing else, and nothing follows the completion or the
//! error. A Read's data pipe carries the file's bytes after the file info,
//! so its reader takes the file info alone ([`crate::client::read_message`]).

use std::io;

use crate::protocol::{Response, MAX_RESPONSE_LEN, SERVER_STAT_LEN, SFD_HDR_SIZE};

/// Room for several messages of the largest kind.
const ROOM: usize = 4 * (SERVER_STAT_LEN + MAX_RESPONSE_LEN);

/// Bytes read from a status pipe and not yet taken as messages.
#[derive(Debug)]
pub struct Messages {
    buf: [u8; ROOM],
    /// The first byte not taken.
    start: usize,
    /// One past the last byte read.
    end: usize,
}

impl Default for Messages {
    fn default() -> Messages {
        Messages::new()
    }
}

impl Messages {
    /// An empty buffer.
    pub const fn new() -> Messages {
        Messages {
            buf: [0; ROOM],
            start: 0,
            end: 0,
        }
    }

    /// The next whole message held, `Ok(None)` when the bytes held are not
    /// one yet; `EPROTO` for a header no message has or a body that does
    /// not decode.
    pub fn take(&mut self) -> io::Result<Option<Response>> {
        let held = &self.buf[self.start..self.end];
        if held.len() < SFD_HDR_SIZE {
            return Ok(None);
        }
        let len = Response::len_from_header(held[0], held[1]).ok_or_else(eproto)?;
        if held.len() < len {
            return Ok(None);
        }
        let msg = Response::decode(&held[..len]).ok_or_else(eproto)?;
        self.start += len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(msg))
    }

    /// Where the next read goes: the room after the bytes held (moved to
    /// the front first). Never empty: a message is shorter than the room.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`Messages::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(ROOM);
    }

    /// What a read into [`Messages::space`] that returned `n` means: more
    /// bytes held (true), or end of file (false; `EPROTO` when it cut a
    /// message short).
    pub fn read_gave(&mut self, n: usize) -> io::Result<bool> {
        if n > 0 {
            self.filled(n);
            return Ok(true);
        }
        if self.partial() {
            return Err(eproto());
        }
        Ok(false)
    }

    /// Whether bytes are held that are not yet a whole message (at end of
    /// file: a message cut short).
    pub fn partial(&self) -> bool {
        self.start != self.end
    }
}

fn eproto() -> io::Error {
    io::Error::from_raw_os_error(libc::EPROTO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FileInfo, XferStat};

    fn completion() -> Vec<u8> {
        XferStat::complete().encode().to_vec()
    }

    fn feed(m: &mut Messages, bytes: &[u8]) {
        let space = m.space();
        space[..bytes.len()].copy_from_slice(bytes);
        m.filled(bytes.len());
    }

    #[test]
    fn one_read_of_several_messages_gives_each_in_order() {
        let info = FileInfo::ok(4096, 1, 2, 3, 7);
        let mut bytes = info.encode().to_vec();
        bytes.extend(completion());
        let mut m = Messages::new();
        feed(&mut m, &bytes);
        assert_eq!(m.take().unwrap(), Some(Response::FileInfo(info)));
        assert_eq!(m.take().unwrap(), Some(Response::Complete));
        assert_eq!(m.take().unwrap(), None);
        assert!(!m.partial());
    }

    #[test]
    fn a_message_split_across_reads_waits_for_its_rest() {
        let info = FileInfo::ok(10, 1, 2, 3, 9);
        let bytes = info.encode();
        let mut m = Messages::new();
        feed(&mut m, &bytes[..1]);
        assert_eq!(m.take().unwrap(), None);
        feed(&mut m, &bytes[1..5]);
        assert_eq!(m.take().unwrap(), None);
        assert!(m.partial(), "a cut message is told at end of file");
        feed(&mut m, &bytes[5..]);
        assert_eq!(m.take().unwrap(), Some(Response::FileInfo(info)));
        assert!(!m.partial());
    }

    #[test]
    fn the_room_is_reused_as_messages_are_taken() {
        let done = completion();
        let mut m = Messages::new();
        for _ in 0..10 * ROOM / done.len() {
            feed(&mut m, &done);
            assert_eq!(m.take().unwrap(), Some(Response::Complete));
        }
        // A partial message is moved to the front, not lost.
        feed(&mut m, &done[..3]);
        feed(&mut m, &done[3..]);
        assert_eq!(m.take().unwrap(), Some(Response::Complete));
    }

    #[test]
    fn end_of_file_inside_a_message_is_eproto() {
        let mut m = Messages::new();
        assert!(!m.read_gave(0).unwrap(), "end of file between messages");
        let done = completion();
        m.space()[..3].copy_from_slice(&done[..3]);
        assert!(m.read_gave(3).unwrap());
        assert_eq!(
            m.read_gave(0).unwrap_err().raw_os_error(),
            Some(libc::EPROTO)
        );
    }

    #[test]
    fn an_unknown_header_is_eproto() {
        let mut m = Messages::new();
        feed(&mut m, &[0x7f, 0]);
        assert_eq!(m.take().unwrap_err().raw_os_error(), Some(libc::EPROTO));
    }
}
