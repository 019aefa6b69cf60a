//! Per-uid shares of the transfer table: how many slots each uid holds, and
//! the rule that decides, when the table is full, whether a request is
//! refused or a slot is taken back from a uid holding more than its share.
//!
//! The rule: a uid's share is `max(1, max_transfers * percent / 100)`
//! slots, and no more than an equal part of the table among the uids
//! holding slots and the one asking ([`fair_share`]): two uids filling half
//! each cannot lock a third out (100 percent is the whole table: nothing is
//! ever taken back). While the table has room anyone is admitted, so a
//! daemon serving one uid (the common deployment, and `sfd_spawn`'s private
//! daemon) keeps every `-n` slot. When the table is full, a request from a uid holding
//! less than its share takes a slot back from the uid holding the most, if
//! that uid holds more than its share; otherwise the request is refused
//! with `EMFILE` as before. So no uid keeps more than its share while
//! another uid below its share asks for a slot. Which transfer gives its
//! slot back is [`pick`]'s: the one losing the least.
//!
//! Many uids (one client with subordinate uids, say) can each hold a slot
//! or two, so that no uid is above its share while the table is full: the
//! rule above then takes nothing back and every other uid was refused
//! (issue 23). So a uid holding *no* slot is served too: it takes back the
//! slot of another uid's transfer that has been idle (no byte moved, no
//! open sent) for at least [`IDLE_TAKE_BACK`], the one losing the least
//! ([`pick_idle`]); only if there is none is it refused. Every uid can get
//! one slot while any slot is held idle; a transfer that moves data is
//! never taken on this ground (the stall timeout is its bound), nor one
//! younger than [`IDLE_TAKE_BACK`], so a victim's quick Open + Send Open
//! is not. `--uid-share 100` turns this off too.
//!
//! Where the OS reports no credentials (uid `None`), every request counts
//! as one uid's: nothing can be told apart, and nothing is taken back.
//!
//! Pure data and rules: no I/O, no clock reads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::table::Slot;

/// The slots one uid may keep while another below its share waits:
/// `max(1, max_transfers * percent / 100)`.
pub fn share_of(max_transfers: usize, percent: u32) -> usize {
    (max_transfers.saturating_mul(percent.min(100) as usize) / 100).max(1)
}

/// The share when `uids` uids (the requester included) want slots: the
/// configured share, and at most `max_transfers / uids` (at least one).
/// 100 percent is the whole table whatever the uids: nothing is taken back.
pub fn fair_share(max_transfers: usize, percent: u32, uids: usize) -> usize {
    let configured = share_of(max_transfers, percent);
    if percent >= 100 {
        return configured;
    }
    configured.min((max_transfers / uids.max(1)).max(1))
}

/// What admission does with a request for a new slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// There is room.
    Yes,
    /// The table is full; take a slot back from this uid first.
    TakeBackFrom(Option<u32>),
    /// The table is full and nothing may be taken back: `EMFILE`.
    Refuse,
}

/// The rule. `live` transfers of at most `max_transfers`; the requester
/// holds `mine`; `largest` is the other uid holding the most slots, with
/// its count.
pub fn admit(
    live: usize,
    max_transfers: usize,
    share: usize,
    mine: usize,
    largest: Option<(Option<u32>, usize)>,
) -> Admit {
    if live < max_transfers {
        return Admit::Yes;
    }
    match largest {
        Some((uid, held)) if mine < share && held > share => Admit::TakeBackFrom(uid),
        _ => Admit::Refuse,
    }
}

/// How long a transfer must have been idle before a uid holding no slot
/// may take its slot back when no uid is above its share.
pub const IDLE_TAKE_BACK: Duration = Duration::from_secs(1);

/// Whether a requester holding `mine` slots, refused by [`admit`], may
/// take back an idle slot of another uid ([`pick_idle`]): it holds none,
/// its uid is known, and the share is below the whole table.
pub fn may_take_back_idle(percent: u32, mine: usize, uid: Option<u32>) -> bool {
    percent < 100 && mine == 0 && uid.is_some()
}

/// The transfer to take back among `(slot, loss, last progress)` of other
/// uids for a uid holding no slot: only those idle since
/// [`IDLE_TAKE_BACK`] before `now`, then as [`pick`].
pub fn pick_idle(
    candidates: impl IntoIterator<Item = (Slot, Loss, Instant)>,
    now: Instant,
) -> Option<Slot> {
    pick(
        candidates
            .into_iter()
            .filter(|&(_, _, last)| now.saturating_duration_since(last) >= IDLE_TAKE_BACK),
    )
}

/// How much a transfer loses if its slot is taken back, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Loss {
    /// Its data part is over and its final message waits for room in a
    /// status pipe nobody reads: nothing but that message.
    FinalMessage,
    /// An opened file never sent yet, or a file still being opened: a
    /// fresh request.
    UnsentOpen,
    /// Data on its way: the rest of the transfer.
    InFlight,
}

/// The transfer to take back among `(slot, loss, last progress)`: the least
/// loss, then the longest without progress.
pub fn pick(candidates: impl IntoIterator<Item = (Slot, Loss, Instant)>) -> Option<Slot> {
    candidates
        .into_iter()
        .min_by_key(|&(slot, loss, last)| (loss, last, slot))
        .map(|(slot, _, _)| slot)
}

/// Slots held per uid; an entry lives only while its uid holds a slot, so
/// memory follows the live transfers.
#[derive(Debug, Default)]
pub struct UidCounts {
    held: HashMap<Option<u32>, usize>,
}

impl UidCounts {
    /// `uid` took a slot.
    pub fn take(&mut self, uid: Option<u32>) {
        *self.held.entry(uid).or_insert(0) += 1;
    }

    /// `uid` gave a slot back.
    pub fn give_back(&mut self, uid: Option<u32>) {
        if let Some(n) = self.held.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&uid);
            }
        }
    }

    /// Slots `uid` holds.
    pub fn held(&self, uid: Option<u32>) -> usize {
        self.held.get(&uid).copied().unwrap_or(0)
    }

    /// The uid other than `uid` holding the most slots, with its count.
    pub fn largest_other(&self, uid: Option<u32>) -> Option<(Option<u32>, usize)> {
        self.held
            .iter()
            .filter(|(u, _)| **u != uid)
            .max_by_key(|(u, n)| (**n, std::cmp::Reverse(**u)))
            .map(|(u, n)| (*u, *n))
    }

    /// Uids holding a slot.
    pub fn uids(&self) -> usize {
        self.held.len()
    }
}
