//! The engine tokens that name what the loop waits on: its own three
//! descriptors (request socket, shutdown, disk waker), then two per
//! transfer slot (status channel, destination).
//!
//! Rule: numbers only; no state, no system calls.

use super::table::Slot;

/// The request socket.
pub(super) const LISTENER: usize = 0;
/// The shutdown descriptor.
pub(super) const SHUTDOWN: usize = 1;
/// The disk threads' waker.
pub(super) const WAKER: usize = 2;

/// The first engine token of a transfer: the ones below are the loop's own
/// (request socket, shutdown, disk waker). Each slot has two from here on.
pub(super) const FIRST_TRANSFER_TOKEN: usize = 3;

/// The token of the status channel of the transfer in `slot`.
pub(super) fn status_token(slot: Slot) -> usize {
    FIRST_TRANSFER_TOKEN + slot * 2
}

/// The token of the destination of the transfer in `slot`.
pub(super) fn dest_token(slot: Slot) -> usize {
    FIRST_TRANSFER_TOKEN + slot * 2 + 1
}

/// The slot a transfer's token (at least [`FIRST_TRANSFER_TOKEN`]) names,
/// and whether it is the destination's.
pub(super) fn slot_of_token(token: usize) -> (Slot, bool) {
    let n = token - FIRST_TRANSFER_TOKEN;
    (n / 2, n % 2 == 1)
}

const _: () = assert!(WAKER < FIRST_TRANSFER_TOKEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_names_one_slot_and_side() {
        for slot in 0..1024 {
            assert_eq!(slot_of_token(status_token(slot)), (slot, false));
            assert_eq!(slot_of_token(dest_token(slot)), (slot, true));
        }
        assert!(status_token(0) > WAKER);
    }
}
