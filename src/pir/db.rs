//! Slots and the cuckoo table of one shard.
//!
//! A slot of `S` bytes is
//!
//! ```text
//! tag (16) || nonce (24) || XChaCha20-Poly1305(key, nonce, AD, payload) (S - 56) || Poly1305 tag (16)
//! ```
//!
//! The nonce is drawn at random (OS RNG) at every sealing and kept in the slot, so a slot
//! sealed again within an epoch (an incremental update) never reuses a (key, nonce) pair: with
//! 192-bit random nonces a repeat is a 2^-192 event per pair of sealings. The key and the tag
//! come from the OPRF output (HKDF, [`super::keyword`]). The payload (`S - 56` bytes) is
//!
//! ```text
//! u8   version      2
//! u8   total        number of slots (spill indexes 0..total) holding this identifier
//! u16  length       bytes of data in this slot
//! u32  stream       random, the same in every slot of one sealing of the identifier's records
//! [..] data         the next `length` bytes of the record stream
//! [..] zero padding to S - 56 bytes
//! ```
//!
//! The record stream of an identifier is `u16 length || SSI wire RDATA` for each of its
//! records; it is cut into chunks of `S - 64` bytes, chunk `i` going to spill index `i`. The
//! stream id lets a client that fetched the spill indexes of one identifier while the DP
//! replaced its records tell the two versions apart ([`assemble`] refuses the mix) instead of
//! splicing them. The AD is `"MIMI-PIR-v2 slot" || tag`. Empty slots are uniformly random
//! bytes, which a reader cannot tell from sealed slots without the keys.
//!
//! The table has `buckets` buckets of `bucket_slots` slots; a keyword may sit in any slot of
//! its two buckets (two-choice cuckoo hashing with buckets, which stays buildable at load 0.9
//! for bucket sizes of 4 and more). A bucket is one PIR element: the client fetches both of its
//! buckets and opens them with [`open`]. [`LiveTable`] is the DP's copy of a shard's table for
//! changes within an epoch.

use std::collections::BTreeSet;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand::rngs::{OsRng, StdRng};
use rand::{Rng, RngCore, SeedableRng};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::keyword::{SlotKeys, TAG_LEN};
use super::{PirError, Reader, PIR_VERSION};

/// XChaCha20-Poly1305 nonce length (random, stored in the slot).
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const AEAD_TAG_LEN: usize = 16;
/// Payload header: version, total, length, stream id.
pub const PAYLOAD_HEADER_LEN: usize = 8;
/// Bytes of a slot before the ciphertext: tag and nonce.
pub const SLOT_PREFIX_LEN: usize = TAG_LEN + NONCE_LEN;
/// Bytes of a slot that are not record data (64).
pub const SLOT_OVERHEAD: usize = SLOT_PREFIX_LEN + AEAD_TAG_LEN + PAYLOAD_HEADER_LEN;
/// Smallest and largest slot sizes accepted (the smallest leaves 64 bytes of data).
pub const MIN_SLOT_SIZE: usize = 128;
pub const MAX_SLOT_SIZE: usize = 16 * 1024;
/// Most slots one identifier may occupy (the `total` field is a u8).
pub const MAX_SPILL: usize = 255;

/// Shape of one shard's cuckoo table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLayout {
    pub slot_size: usize,
    pub bucket_slots: usize,
    pub buckets: u32,
}

impl TableLayout {
    pub fn validate(&self) -> Result<(), PirError> {
        if !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&self.slot_size) {
            return Err(PirError::Param(format!(
                "slot size {} outside {MIN_SLOT_SIZE}..={MAX_SLOT_SIZE}",
                self.slot_size
            )));
        }
        if !(1..=64).contains(&self.bucket_slots) {
            return Err(PirError::Param(format!(
                "bucket of {} slots (must be 1..=64)",
                self.bucket_slots
            )));
        }
        if self.buckets < 2 {
            return Err(PirError::Param(format!(
                "{} buckets (at least 2 are needed for two choices)",
                self.buckets
            )));
        }
        Ok(())
    }

    /// Bytes of one bucket (one PIR element).
    pub fn bucket_size(&self) -> usize {
        self.slot_size * self.bucket_slots
    }

    pub fn slots(&self) -> usize {
        self.buckets as usize * self.bucket_slots
    }

    /// Record-stream bytes one slot carries (`slot_size - 64`).
    pub fn data_capacity(&self) -> usize {
        self.slot_size.saturating_sub(SLOT_OVERHEAD)
    }

    /// Bytes of the sealed payload of one slot (`slot_size - 56`).
    pub fn payload_len(&self) -> usize {
        self.slot_size
            .saturating_sub(SLOT_PREFIX_LEN + AEAD_TAG_LEN)
    }
}

/// The part of an identifier's record stream found in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Slots holding this identifier (spill indexes `0..total`).
    pub total: u8,
    /// Which sealing of the identifier's records this chunk belongs to.
    pub stream: u32,
    pub data: Vec<u8>,
}

impl Chunk {
    /// Whether spill indexes after `index` hold more of the stream.
    pub fn more_after(&self, index: u32) -> bool {
        index + 1 < u32::from(self.total)
    }
}

/// Cuts an identifier's records into slot payloads (one per spill index), all with one fresh
/// random stream id.
pub fn encode_payloads(
    sii: &str,
    records: &[Vec<u8>],
    layout: &TableLayout,
    max_slots: usize,
) -> Result<Vec<Vec<u8>>, PirError> {
    let mut stream = Vec::new();
    for rdata in records {
        let len = u16::try_from(rdata.len())
            .map_err(|_| PirError::Param(format!("a record of {sii:?} exceeds 65535 bytes")))?;
        stream.extend_from_slice(&len.to_be_bytes());
        stream.extend_from_slice(rdata);
    }
    let cap = layout.data_capacity();
    if cap == 0 {
        return Err(PirError::Param(format!(
            "slot size {} leaves no room for data",
            layout.slot_size
        )));
    }
    let total = stream.len().div_ceil(cap).max(1);
    let max = max_slots.min(MAX_SPILL);
    if total > max {
        return Err(PirError::TooManyRecords {
            sii: sii.to_string(),
            needed: total,
            max,
        });
    }
    let stream_id = OsRng.next_u32().to_be_bytes();
    let payload_len = layout.payload_len();
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let data = &stream[(i * cap).min(stream.len())..((i + 1) * cap).min(stream.len())];
        let mut p = Vec::with_capacity(payload_len);
        p.push(PIR_VERSION);
        p.push(total as u8);
        p.extend_from_slice(&(data.len() as u16).to_be_bytes());
        p.extend_from_slice(&stream_id);
        p.extend_from_slice(data);
        p.resize(payload_len, 0);
        out.push(p);
    }
    Ok(out)
}

fn associated_data(tag: &[u8]) -> Vec<u8> {
    let mut ad = format!("MIMI-PIR-v{PIR_VERSION} slot").into_bytes();
    ad.extend_from_slice(tag);
    ad
}

/// Seals one payload (of `slot_size - 56` bytes) into a slot under a fresh random nonce.
pub fn seal(keys: &SlotKeys, payload: &[u8], slot_size: usize) -> Result<Vec<u8>, PirError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(keys, &nonce, payload, slot_size)
}

/// [`seal`] with a given nonce; the nonce must never repeat under one key.
fn seal_with_nonce(
    keys: &SlotKeys,
    nonce: &[u8; NONCE_LEN],
    payload: &[u8],
    slot_size: usize,
) -> Result<Vec<u8>, PirError> {
    if slot_size < SLOT_OVERHEAD || payload.len() + SLOT_PREFIX_LEN + AEAD_TAG_LEN != slot_size {
        return Err(PirError::Length {
            what: "slot payload",
            expected: slot_size.saturating_sub(SLOT_PREFIX_LEN + AEAD_TAG_LEN),
            got: payload.len(),
        });
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&keys.key));
    let mut slot = Vec::with_capacity(slot_size);
    slot.extend_from_slice(&keys.tag);
    slot.extend_from_slice(nonce);
    let mut body = payload.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &associated_data(&keys.tag),
            &mut body,
        )
        .map_err(|_| PirError::Internal("sealing a slot".into()))?;
    slot.extend_from_slice(&body);
    slot.extend_from_slice(&tag);
    Ok(slot)
}

/// Looks for the slot of `keys` in the fetched buckets and opens it.
///
/// Constant shape: every slot's tag is compared in constant time, the matching slot (or, when
/// none matches, the first one) is selected without branching, and exactly one AEAD
/// verification runs either way (with the nonce found in the selected slot). Returns
/// `Ok(None)` when no slot carries the tag (the identifier or this spill index is absent),
/// [`PirError::SlotAuth`] when the tag matches but the ciphertext does not verify.
pub fn open(
    keys: &SlotKeys,
    buckets: &[&[u8]],
    layout: &TableLayout,
) -> Result<Option<Chunk>, PirError> {
    let s = layout.slot_size;
    if s < SLOT_OVERHEAD {
        return Err(PirError::Param(format!("slot size {s}")));
    }
    let bucket_size = layout.bucket_size();
    for b in buckets {
        if b.len() != bucket_size {
            return Err(PirError::Length {
                what: "bucket",
                expected: bucket_size,
                got: b.len(),
            });
        }
    }
    let mut selected = vec![0u8; s];
    let mut found = Choice::from(0);
    for bucket in buckets {
        for slot in bucket.chunks_exact(s) {
            let eq = slot[..TAG_LEN].ct_eq(&keys.tag);
            let take = eq & !found;
            for (dst, src) in selected.iter_mut().zip(slot) {
                dst.conditional_assign(src, take);
            }
            found |= eq;
        }
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&keys.key));
    let (prefix, rest) = selected.split_at_mut(SLOT_PREFIX_LEN);
    let nonce = XNonce::clone_from_slice(&prefix[TAG_LEN..]);
    let (body, tag) = rest.split_at_mut(s - SLOT_PREFIX_LEN - AEAD_TAG_LEN);
    let ad = associated_data(&keys.tag);
    let verified = cipher
        .decrypt_in_place_detached(&nonce, &ad, body, Tag::from_slice(tag))
        .is_ok();
    match (bool::from(found), verified) {
        (false, _) => Ok(None),
        (true, false) => Err(PirError::SlotAuth),
        (true, true) => parse_payload(body).map(Some),
    }
}

fn parse_payload(body: &[u8]) -> Result<Chunk, PirError> {
    let mut r = Reader::new(body, "slot payload");
    let version = r.u8("version")?;
    if version != PIR_VERSION {
        return Err(PirError::Version {
            what: "slot payload",
            got: version,
            supported: PIR_VERSION,
        });
    }
    let total = r.u8("total")?;
    if total == 0 {
        return Err(PirError::malformed("slot payload", "total of 0 slots"));
    }
    let len = r.u16("length")? as usize;
    let stream = r.u32("stream")?;
    let data = r.take(len, "data")?.to_vec();
    if r.rest().iter().any(|&b| b != 0) {
        return Err(PirError::malformed("slot payload", "non-zero padding"));
    }
    Ok(Chunk {
        total,
        stream,
        data,
    })
}

/// Reassembles the records of an identifier from its chunks in spill-index order
/// (`chunks[i]` from index `i`, all of them: `chunks.len() == total`).
pub fn assemble(chunks: &[Chunk]) -> Result<Vec<Vec<u8>>, PirError> {
    let first = chunks
        .first()
        .ok_or_else(|| PirError::malformed("record stream", "no chunks"))?;
    if chunks.iter().any(|c| c.stream != first.stream) {
        // The DP replaced the records between the client's fetches of two spill indexes.
        return Err(PirError::malformed(
            "record stream",
            "slots of two versions of the records (they changed during the lookup): look up again",
        ));
    }
    if chunks.len() != first.total as usize || chunks.iter().any(|c| c.total != first.total) {
        return Err(PirError::malformed(
            "record stream",
            format!(
                "{} chunks for a stream announced as {} slots",
                chunks.len(),
                first.total
            ),
        ));
    }
    let stream: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
    let mut r = Reader::new(&stream, "record stream");
    let mut records = Vec::new();
    while r.remaining() > 0 {
        let len = r.u16("record length")? as usize;
        records.push(r.take(len, "record")?.to_vec());
    }
    Ok(records)
}

/// Places keywords into a two-choice cuckoo table (random-walk insertion, at most
/// `max_evictions` evictions per insertion). Returns, per table slot, the index of the item
/// in it, or `None` when the table cannot be built with these bucket choices (the caller
/// rebuilds with a new seed). `rng_seed` makes the build reproducible.
pub fn place(
    layout: &TableLayout,
    items: &[[u32; 2]],
    max_evictions: usize,
    rng_seed: u64,
) -> Option<Vec<Option<u32>>> {
    let b = layout.bucket_slots;
    let nb = layout.buckets as usize;
    if items.len() > nb * b {
        return None;
    }
    let mut table: Vec<Option<u32>> = vec![None; nb * b];
    let mut fill = vec![0usize; nb];
    let mut rng = StdRng::seed_from_u64(rng_seed);
    for (id, _) in items.iter().enumerate() {
        let mut cur = id as u32;
        let mut came_from: Option<u32> = None;
        let mut evictions = 0usize;
        loop {
            let [h1, h2] = items[cur as usize];
            let free = [h1, h2].into_iter().find(|&h| fill[h as usize] < b);
            if let Some(h) = free {
                table[h as usize * b + fill[h as usize]] = Some(cur);
                fill[h as usize] += 1;
                break;
            }
            if evictions == max_evictions {
                return None;
            }
            let h = match came_from {
                Some(f) if f == h1 => h2,
                Some(f) if f == h2 => h1,
                _ => {
                    if rng.gen::<bool>() {
                        h1
                    } else {
                        h2
                    }
                }
            };
            let s = h as usize * b + rng.gen_range(0..b);
            let victim = table[s].replace(cur)?;
            cur = victim;
            came_from = Some(h);
            evictions += 1;
        }
    }
    Some(table)
}

/// Lays out the table bytes: sealed slots where placed, uniformly random bytes elsewhere.
pub fn materialise(layout: &TableLayout, placement: &[Option<u32>], slots: &[u8]) -> Vec<u8> {
    let s = layout.slot_size;
    let mut out = vec![0u8; layout.slots() * s];
    for (dst, item) in out.chunks_exact_mut(s).zip(placement) {
        match item {
            Some(i) => dst.copy_from_slice(&slots[*i as usize * s..(*i as usize + 1) * s]),
            None => OsRng.fill_bytes(dst),
        }
    }
    out
}

/// The DP's copy of one shard's cuckoo table, kept for changes within an epoch: the slot
/// bytes (the PIR elements before encoding) and, per slot, the two buckets of the slot it
/// holds (`None`: empty, random bytes). Changes go through a [`TableTxn`], which undoes them
/// unless committed, so a change that does not fit leaves the table as it was.
#[derive(Debug)]
pub struct LiveTable {
    shard: u32,
    layout: TableLayout,
    bytes: Vec<u8>,
    occupant: Vec<Option<[u32; 2]>>,
    used: usize,
}

impl LiveTable {
    /// The table of [`place`]'s `placement` of items with bucket `choices` and sealed `slots`
    /// (item `i` at `slots[i * slot_size..]`), empty slots filled with random bytes.
    pub fn new(
        shard: u32,
        layout: TableLayout,
        placement: &[Option<u32>],
        choices: &[[u32; 2]],
        slots: &[u8],
    ) -> Result<LiveTable, PirError> {
        if placement.len() != layout.slots() || slots.len() != choices.len() * layout.slot_size {
            return Err(PirError::Internal(format!(
                "laying out shard {shard}: {} placements for {} slots, {} bytes for {} items",
                placement.len(),
                layout.slots(),
                slots.len(),
                choices.len()
            )));
        }
        let occupant = placement
            .iter()
            .map(|p| match p {
                Some(i) => choices
                    .get(*i as usize)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| PirError::Internal(format!("placing item {i}"))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, PirError>>()?;
        Ok(LiveTable {
            shard,
            layout,
            bytes: materialise(&layout, placement, slots),
            used: occupant.iter().filter(|o| o.is_some()).count(),
            occupant,
        })
    }

    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }

    /// The table as PIR elements (bucket `b` at `b * bucket_size`).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Occupied slots.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn memory_bytes(&self) -> usize {
        self.bytes.len() + self.occupant.len() * std::mem::size_of::<Option<[u32; 2]>>()
    }

    /// Positions (slot indexes) in `bucket` holding a sealed slot with this tag.
    pub fn find(&self, bucket: u32, tag: &[u8; TAG_LEN]) -> Vec<usize> {
        let b = self.layout.bucket_slots;
        let s = self.layout.slot_size;
        let first = bucket as usize * b;
        (first..first + b)
            .filter(|&pos| {
                self.occupant.get(pos).is_some_and(|o| o.is_some())
                    && self.bytes.get(pos * s..pos * s + TAG_LEN) == Some(&tag[..])
            })
            .collect()
    }

    /// The slot at `pos` (occupied or not).
    pub fn slot(&self, pos: usize) -> Option<&[u8]> {
        let s = self.layout.slot_size;
        self.bytes.get(pos * s..(pos + 1) * s)
    }

    /// Starts a change.
    pub fn begin(&mut self) -> TableTxn<'_> {
        TableTxn {
            table: self,
            undo: Vec::new(),
            touched: BTreeSet::new(),
            evictions: 0,
            committed: false,
        }
    }

    fn set(&mut self, pos: usize, occupant: Option<[u32; 2]>, bytes: &[u8]) {
        let s = self.layout.slot_size;
        match (self.occupant[pos].is_some(), occupant.is_some()) {
            (false, true) => self.used += 1,
            (true, false) => self.used -= 1,
            _ => {}
        }
        self.occupant[pos] = occupant;
        self.bytes[pos * s..(pos + 1) * s].copy_from_slice(bytes);
    }
}

/// A change to a [`LiveTable`] in progress: every write is logged and undone on drop unless
/// [`TableTxn::commit`] is called.
pub struct TableTxn<'a> {
    table: &'a mut LiveTable,
    undo: Vec<(usize, Option<[u32; 2]>, Vec<u8>)>,
    touched: BTreeSet<u32>,
    evictions: usize,
    committed: bool,
}

impl std::fmt::Debug for TableTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableTxn")
            .field("shard", &self.table.shard)
            .field("writes", &self.undo.len())
            .field("touched", &self.touched.len())
            .finish()
    }
}

impl TableTxn<'_> {
    /// The table with the changes made so far.
    pub fn table(&self) -> &LiveTable {
        self.table
    }

    /// Buckets written so far (each one PIR element to re-encode).
    pub fn touched(&self) -> &BTreeSet<u32> {
        &self.touched
    }

    /// Slots moved to their other bucket so far.
    pub fn evictions(&self) -> usize {
        self.evictions
    }

    fn write(&mut self, pos: usize, occupant: Option<[u32; 2]>, bytes: &[u8]) {
        let s = self.table.layout.slot_size;
        let old = self.table.bytes[pos * s..(pos + 1) * s].to_vec();
        self.undo.push((pos, self.table.occupant[pos], old));
        self.table.set(pos, occupant, bytes);
        self.touched
            .insert((pos / self.table.layout.bucket_slots) as u32);
    }

    /// Empties the slot at `pos`: fresh random bytes, like every empty slot.
    pub fn remove(&mut self, pos: usize) -> Result<(), PirError> {
        if pos >= self.table.occupant.len() {
            return Err(PirError::Internal(format!("removing slot {pos}")));
        }
        let mut noise = vec![0u8; self.table.layout.slot_size];
        OsRng.fill_bytes(&mut noise);
        self.write(pos, None, &noise);
        Ok(())
    }

    /// Inserts a sealed slot whose buckets are `buckets`: into a free slot of either bucket,
    /// else by a random walk that moves at most `max_evictions` slots to their other bucket
    /// (each moved slot keeps its bytes: its content did not change, only its place). Fails
    /// with [`RebuildReason::CuckooFailed`] when the walk runs out; the transaction should
    /// then be dropped, which undoes the partial walk with everything else.
    ///
    /// [`RebuildReason::CuckooFailed`]: super::RebuildReason::CuckooFailed
    pub fn insert(
        &mut self,
        buckets: [u32; 2],
        slot: &[u8],
        max_evictions: usize,
        rng: &mut StdRng,
    ) -> Result<(), PirError> {
        let layout = self.table.layout;
        if slot.len() != layout.slot_size || buckets.iter().any(|&h| h >= layout.buckets) {
            return Err(PirError::Internal(format!(
                "inserting a slot of {} bytes into buckets {buckets:?} of {}",
                slot.len(),
                layout.buckets
            )));
        }
        let b = layout.bucket_slots;
        let mut cur = (buckets, slot.to_vec());
        let mut came_from: Option<u32> = None;
        let mut evictions = 0usize;
        loop {
            let [h1, h2] = cur.0;
            let free = [h1, h2].into_iter().find_map(|h| {
                (h as usize * b..(h as usize + 1) * b).find(|&p| self.table.occupant[p].is_none())
            });
            if let Some(pos) = free {
                self.write(pos, Some(cur.0), &cur.1);
                return Ok(());
            }
            if evictions == max_evictions {
                return Err(PirError::NeedsRebuild(super::RebuildReason::CuckooFailed {
                    shard: self.table.shard,
                    evictions,
                }));
            }
            let h = match came_from {
                Some(f) if f == h1 => h2,
                Some(f) if f == h2 => h1,
                _ => {
                    if rng.gen::<bool>() {
                        h1
                    } else {
                        h2
                    }
                }
            };
            let pos = h as usize * b + rng.gen_range(0..b);
            let victim = (
                self.table.occupant[pos],
                self.table.slot(pos).map(<[u8]>::to_vec),
            );
            self.write(pos, Some(cur.0), &cur.1);
            match victim {
                (Some(v), Some(bytes)) => cur = (v, bytes),
                // The bucket was full, so this cannot happen; the slot is placed either way.
                _ => return Ok(()),
            }
            came_from = Some(h);
            evictions += 1;
            self.evictions += 1;
        }
    }

    /// Keeps the changes.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for TableTxn<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for (pos, occupant, bytes) in self.undo.drain(..).rev() {
                self.table.set(pos, occupant, &bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pir::keyword::KeywordSource;

    fn layout(buckets: u32) -> TableLayout {
        TableLayout {
            slot_size: 256,
            bucket_slots: 4,
            buckets,
        }
    }

    fn source(i: u32) -> KeywordSource {
        let mut y = [0u8; 64];
        y[..4].copy_from_slice(&i.to_be_bytes());
        KeywordSource::new(&y, 1)
    }

    #[test]
    fn seal_and_open_round_trip() {
        let l = layout(16);
        let k = source(1).slot_keys(0);
        let records = vec![vec![1u8; 100], vec![2u8; 50]];
        let payloads = encode_payloads("x", &records, &l, 8).unwrap();
        assert_eq!(payloads.len(), 1);
        let slot = seal(&k, &payloads[0], l.slot_size).unwrap();
        assert_eq!(slot.len(), 256);
        let mut bucket_a = vec![0u8; l.bucket_size()];
        OsRng.fill_bytes(&mut bucket_a);
        let mut bucket_b = bucket_a.clone();
        bucket_b[512..768].copy_from_slice(&slot);
        let chunk = open(&k, &[&bucket_a, &bucket_b], &l).unwrap().unwrap();
        assert_eq!(chunk.total, 1);
        assert_eq!(assemble(&[chunk]).unwrap(), records);
        // Absent: no tag matches.
        assert_eq!(open(&k, &[&bucket_a, &bucket_a], &l).unwrap(), None);
    }

    #[test]
    fn other_identifier_cannot_open_a_slot() {
        let l = layout(16);
        let mine = source(1).slot_keys(0);
        let theirs = source(2).slot_keys(0);
        let payloads = encode_payloads("x", &[vec![9u8; 40]], &l, 8).unwrap();
        let slot = seal(&mine, &payloads[0], 256).unwrap();
        let mut bucket = vec![0u8; l.bucket_size()];
        bucket[..256].copy_from_slice(&slot);
        // Wrong tag: not found.
        assert_eq!(open(&theirs, &[&bucket, &bucket], &l).unwrap(), None);
        // Right tag, wrong key (a client that copied the tag): authentication fails.
        let forged = SlotKeys {
            tag: mine.tag,
            key: theirs.key,
        };
        assert_eq!(
            open(&forged, &[&bucket, &bucket], &l),
            Err(PirError::SlotAuth)
        );
        // Same identifier, other spill index: different tag, not found.
        assert_eq!(open(&source(1).slot_keys(1), &[&bucket], &l).unwrap(), None);
    }

    #[test]
    fn tampered_slot_fails_authentication() {
        let l = layout(16);
        let k = source(3).slot_keys(0);
        let payloads = encode_payloads("x", &[vec![7u8; 60]], &l, 8).unwrap();
        let slot = seal(&k, &payloads[0], 256).unwrap();
        // The nonce, the ciphertext and the Poly1305 tag are all covered.
        for pos in [TAG_LEN, SLOT_PREFIX_LEN - 1, SLOT_PREFIX_LEN, 100, 255] {
            let mut bucket = vec![0u8; l.bucket_size()];
            bucket[256..512].copy_from_slice(&slot);
            bucket[256 + pos] ^= 0x01;
            assert_eq!(
                open(&k, &[&bucket], &l),
                Err(PirError::SlotAuth),
                "byte {pos}"
            );
        }
    }

    #[test]
    fn spill_for_many_records() {
        let l = layout(64);
        let source = source(4);
        let records: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 150 + i as usize]).collect();
        let payloads = encode_payloads("many", &records, &l, 16).unwrap();
        assert!(payloads.len() > 4, "{} slots", payloads.len());
        let mut chunks = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let k = source.slot_keys(i as u32);
            let slot = seal(&k, p, 256).unwrap();
            let mut bucket = vec![0u8; l.bucket_size()];
            OsRng.fill_bytes(&mut bucket);
            bucket[768..].copy_from_slice(&slot);
            let chunk = open(&k, &[&bucket], &l).unwrap().unwrap();
            assert_eq!(chunk.more_after(i as u32), i + 1 < payloads.len());
            chunks.push(chunk);
        }
        assert_eq!(assemble(&chunks).unwrap(), records);
        assert!(assemble(&chunks[..2]).is_err());
        // A record longer than one slot's capacity spans slots too.
        let long = vec![vec![5u8; 600]];
        let p = encode_payloads("long", &long, &l, 16).unwrap();
        assert_eq!(p.len(), 600usize.div_ceil(l.data_capacity()));
        assert!(matches!(
            encode_payloads("too many", &records, &l, 2),
            Err(PirError::TooManyRecords { .. })
        ));
    }

    #[test]
    fn slot_layout_and_capacity() {
        let l = layout(16);
        assert_eq!(SLOT_OVERHEAD, 64);
        assert_eq!(l.data_capacity(), 192);
        assert_eq!(l.payload_len(), 200);
        let k = source(5).slot_keys(0);
        let p = encode_payloads("x", &[vec![3u8; 190]], &l, 1).unwrap();
        assert_eq!(p.len(), 1, "190 + 2 bytes fill exactly one slot");
        assert_eq!(p[0].len(), l.payload_len());
        assert!(encode_payloads("x", &[vec![3u8; 191]], &l, 1).is_err());
        let slot = seal(&k, &p[0], 256).unwrap();
        assert_eq!(&slot[..TAG_LEN], &k.tag);
        // A payload of the wrong length is refused, not truncated.
        assert!(seal(&k, &p[0][1..], 256).is_err());
        // Too small a slot for the overhead is refused by the layout.
        let tiny = TableLayout {
            slot_size: 64,
            bucket_slots: 4,
            buckets: 4,
        };
        assert!(tiny.validate().is_err());
        assert!(encode_payloads("x", &[vec![1u8]], &tiny, 4).is_err());
    }

    #[test]
    fn a_slot_sealed_twice_has_fresh_nonces_and_different_ciphertexts() {
        let l = layout(16);
        let k = source(6).slot_keys(0);
        let p = encode_payloads("x", &[vec![8u8; 120]], &l, 4).unwrap();
        let a = seal(&k, &p[0], 256).unwrap();
        let b = seal(&k, &p[0], 256).unwrap();
        let nonce = |s: &[u8]| s[TAG_LEN..SLOT_PREFIX_LEN].to_vec();
        assert_eq!(
            a[..TAG_LEN],
            b[..TAG_LEN],
            "same tag: same identifier and index"
        );
        assert_ne!(nonce(&a), nonce(&b));
        assert_ne!(a[SLOT_PREFIX_LEN..], b[SLOT_PREFIX_LEN..]);
        // No byte position of the ciphertext is the same in both more often than chance.
        let same = a[SLOT_PREFIX_LEN..]
            .iter()
            .zip(&b[SLOT_PREFIX_LEN..])
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < 10, "{same} equal bytes");
        for slot in [&a, &b] {
            let mut bucket = vec![0u8; l.bucket_size()];
            bucket[..256].copy_from_slice(slot);
            let chunk = open(&k, &[&bucket], &l).unwrap().unwrap();
            assert_eq!(assemble(&[chunk]).unwrap(), vec![vec![8u8; 120]]);
        }
        // A slot with another slot's nonce does not open.
        let mut swapped = a.clone();
        swapped[TAG_LEN..SLOT_PREFIX_LEN].copy_from_slice(&b[TAG_LEN..SLOT_PREFIX_LEN]);
        let mut bucket = vec![0u8; l.bucket_size()];
        bucket[..256].copy_from_slice(&swapped);
        assert_eq!(open(&k, &[&bucket], &l), Err(PirError::SlotAuth));
    }

    #[test]
    fn chunks_of_two_versions_do_not_assemble() {
        let l = layout(16);
        let old: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 150]).collect();
        let new: Vec<Vec<u8>> = (5..8u8).map(|i| vec![i; 150]).collect();
        let open_all = |records: &[Vec<u8>]| -> Vec<Chunk> {
            let p = encode_payloads("x", records, &l, 8).unwrap();
            p.iter()
                .enumerate()
                .map(|(i, p)| {
                    let k = source(7).slot_keys(i as u32);
                    let mut bucket = vec![0u8; l.bucket_size()];
                    bucket[..256].copy_from_slice(&seal(&k, p, 256).unwrap());
                    open(&k, &[&bucket], &l).unwrap().unwrap()
                })
                .collect()
        };
        let (a, b) = (open_all(&old), open_all(&new));
        assert_eq!(a.len(), b.len());
        assert_eq!(assemble(&a).unwrap(), old);
        assert_eq!(assemble(&b).unwrap(), new);
        let mixed = vec![a[0].clone(), b[1].clone(), b[2].clone()];
        assert!(assemble(&mixed).is_err());
    }

    fn live(n: u32, buckets: u32) -> (LiveTable, Vec<[u32; 2]>) {
        let l = layout(buckets);
        let items: Vec<[u32; 2]> = (0..n).map(|i| source(i).buckets(0, 1, buckets)).collect();
        let placement = place(&l, &items, 500, 1).unwrap();
        let mut slots = Vec::new();
        for i in 0..n {
            let mut s = vec![0u8; 256];
            s[..4].copy_from_slice(&i.to_be_bytes());
            slots.extend_from_slice(&s);
        }
        (
            LiveTable::new(0, l, &placement, &items, &slots).unwrap(),
            items,
        )
    }

    #[test]
    fn live_table_changes_commit_or_undo_whole() {
        let (mut t, items) = live(100, 32);
        assert_eq!(t.used(), 100);
        let before = t.bytes().to_vec();
        let mut rng = StdRng::seed_from_u64(3);
        // Filling to the brim fails somewhere; dropping the transaction undoes all of it.
        {
            let mut txn = t.begin();
            let mut failed = false;
            for i in 100..200u32 {
                let s = vec![1u8; 256];
                if txn
                    .insert(source(i).buckets(0, 1, 32), &s, 50, &mut rng)
                    .is_err()
                {
                    failed = true;
                    break;
                }
            }
            assert!(failed);
            assert!(!txn.touched().is_empty());
        }
        assert_eq!(t.used(), 100);
        assert_eq!(t.bytes(), &before[..]);
        // A removal and an insertion that fit are kept; the moved slots keep their bytes.
        let tag0 = {
            let mut tag = [0u8; TAG_LEN];
            tag[..4].copy_from_slice(&0u32.to_be_bytes());
            tag
        };
        let at: Vec<usize> = items[0].iter().flat_map(|&b| t.find(b, &tag0)).collect();
        assert_eq!(at.len(), 1);
        let mut txn = t.begin();
        txn.remove(at[0]).unwrap();
        txn.insert([1, 2], &[9u8; 256], 500, &mut rng).unwrap();
        let touched = txn.touched().clone();
        txn.commit();
        assert_eq!(t.used(), 100);
        assert!(touched.contains(&((at[0] / 4) as u32)));
        assert!(t.find(items[0][0], &tag0).is_empty() && t.find(items[0][1], &tag0).is_empty());
        let mut seen = 0;
        for i in 1..100u32 {
            let mut tag = [0u8; TAG_LEN];
            tag[..4].copy_from_slice(&i.to_be_bytes());
            let found: Vec<usize> = items[i as usize]
                .iter()
                .flat_map(|&b| t.find(b, &tag))
                .collect();
            assert_eq!(found.len(), 1, "item {i}");
            seen += 1;
        }
        assert_eq!(seen, 99);
        assert_eq!(
            t.find(1, &[9u8; TAG_LEN]).len() + t.find(2, &[9u8; TAG_LEN]).len(),
            1
        );
    }

    #[test]
    fn cuckoo_at_load_0_9_places_every_keyword_in_one_of_its_buckets() {
        let n = 4000usize;
        let slots = (n as f64 / 0.9).ceil() as usize;
        let l = layout(slots.div_ceil(4) as u32);
        let seed = 11;
        let items: Vec<[u32; 2]> = (0..n as u32)
            .map(|i| source(i).buckets(0, seed, l.buckets))
            .collect();
        let table = place(&l, &items, 500, seed).expect("cuckoo build at load 0.9");
        let mut seen = vec![false; n];
        for (slot, item) in table.iter().enumerate() {
            if let Some(i) = item {
                let bucket = (slot / l.bucket_slots) as u32;
                assert!(items[*i as usize].contains(&bucket));
                assert!(!seen[*i as usize]);
                seen[*i as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        // Overfull tables fail cleanly.
        assert!(place(&layout(10), &items, 500, seed).is_none());
    }

    #[test]
    fn empty_slots_are_random() {
        let l = layout(32);
        let table = materialise(&l, &vec![None; l.slots()], &[]);
        // No structure: byte frequencies are flat, no repeated slots, no zero runs.
        let mut counts = [0usize; 256];
        for &b in &table {
            counts[b as usize] += 1;
        }
        let expected = table.len() / 256;
        assert!(counts.iter().all(|&c| c > expected / 2 && c < expected * 2));
        let slots: Vec<&[u8]> = table.chunks(256).collect();
        for i in 1..slots.len() {
            assert_ne!(slots[i], slots[i - 1]);
        }
        // A sealed slot and a random one have the same shape: nothing fixed in the bytes.
        let k = source(9).slot_keys(0);
        let p = encode_payloads("x", &[vec![0u8; 10]], &l, 4).unwrap();
        let sealed = seal(&k, &p[0], 256).unwrap();
        assert_eq!(sealed.len(), slots[0].len());
        assert_eq!(open(&k, &[&table[..l.bucket_size()]], &l).unwrap(), None);
    }
}
