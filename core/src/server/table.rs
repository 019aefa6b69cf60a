//! The transfer table: every live transfer, by slot (for readiness tokens)
//! and by transfer id (for Send Open and Cancel); and where fresh ids come
//! from ([`RandomIds`]).
//!
//! Slots freed while a batch of readiness events is being handled are only
//! reused after it ([`TransferTable::recycle`]), so an event that was
//! collected for a transfer that ended meanwhile finds an empty slot instead
//! of a newcomer.

use std::collections::HashMap;
use std::io;

use crate::sys;

/// A slot index in the table.
pub type Slot = usize;

/// Slots plus an id index.
#[derive(Debug)]
pub struct TransferTable<T> {
    slots: Vec<Option<(u64, T)>>,
    free: Vec<Slot>,
    freed: Vec<Slot>,
    by_id: HashMap<u64, Slot>,
    live: usize,
}

impl<T> Default for TransferTable<T> {
    fn default() -> Self {
        TransferTable {
            slots: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            by_id: HashMap::new(),
            live: 0,
        }
    }
}

impl<T> TransferTable<T> {
    /// How many transfers are in the table.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether `id` is taken.
    pub fn contains_id(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Inserts a transfer under a fresh id (the caller checked it is free).
    pub fn insert(&mut self, id: u64, t: T) -> Slot {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some((id, t));
        self.by_id.insert(id, slot);
        self.live += 1;
        slot
    }

    /// The transfer in `slot`.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.slots.get_mut(slot)?.as_mut().map(|(_, t)| t)
    }

    /// The transfer in `slot`, with its id.
    pub fn get(&self, slot: Slot) -> Option<(u64, &T)> {
        self.slots.get(slot)?.as_ref().map(|(id, t)| (*id, t))
    }

    /// The slot of transfer `id`.
    pub fn slot_of(&self, id: u64) -> Option<Slot> {
        self.by_id.get(&id).copied()
    }

    /// Removes the transfer in `slot`; the slot is reusable after
    /// [`recycle`](Self::recycle).
    pub fn remove(&mut self, slot: Slot) -> Option<(u64, T)> {
        let entry = self.slots.get_mut(slot)?.take()?;
        self.by_id.remove(&entry.0);
        self.freed.push(slot);
        self.live -= 1;
        Some(entry)
    }

    /// Makes the slots freed since the last call reusable.
    pub fn recycle(&mut self) {
        self.free.append(&mut self.freed);
    }

    /// All occupied slots.
    pub fn slots(&self) -> Vec<Slot> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|_| i))
            .collect()
    }
}

/// How many random ids one `getrandom(2)` fetches.
const IDS_PER_FETCH: usize = 32;

/// Unguessable transfer ids from the kernel's CSPRNG, fetched
/// [`IDS_PER_FETCH`] at a time instead of one system call per request. Ids
/// not yet handed out stay in this process only.
#[derive(Debug, Default)]
pub struct RandomIds {
    buf: Vec<u64>,
}

impl RandomIds {
    /// The next random 64-bit value.
    pub fn take(&mut self) -> io::Result<u64> {
        if let Some(v) = self.buf.pop() {
            return Ok(v);
        }
        let mut bytes = [0u8; IDS_PER_FETCH * 8];
        sys::random_bytes(&mut bytes)?;
        self.buf.extend(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        );
        self.buf
            .pop()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_across_fetches() {
        let mut ids = RandomIds::default();
        let v: Vec<u64> = (0..3 * IDS_PER_FETCH)
            .map(|_| ids.take().unwrap())
            .collect();
        let mut s = v.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), v.len());
    }

    #[test]
    fn freed_slots_wait_for_recycle() {
        let mut t = TransferTable::default();
        let a = t.insert(10, "a");
        assert_eq!(t.remove(a), Some((10, "a")));
        let b = t.insert(11, "b");
        assert_ne!(a, b, "a slot freed in this batch is not reused yet");
        t.recycle();
        let c = t.insert(12, "c");
        assert_eq!(a, c);
        assert_eq!(t.len(), 2);
        assert_eq!(t.slot_of(12), Some(c));
        assert_eq!(t.slot_of(10), None);
        assert!(t.get_mut(a).is_some());
        assert_eq!(t.slots(), vec![a, b]);
    }
}
