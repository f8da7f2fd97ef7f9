//! Slots and the cuckoo table of one shard.
//!
//! A slot is `tag (16) || ChaCha20-Poly1305(key, nonce, AD, payload) || Poly1305 tag (16)`, so a
//! slot of `S` bytes carries a payload of `S - 32` bytes:
//!
//! ```text
//! u8   version      1
//! u8   total        number of slots (spill indexes 0..total) holding this identifier
//! u16  length       bytes of data in this slot
//! [..] data         the next `length` bytes of the record stream
//! [..] zero padding to S - 32 bytes
//! ```
//!
//! The record stream of an identifier is `u16 length || SSI wire RDATA` for each of its
//! records; it is cut into chunks of `S - 36` bytes, chunk `i` going to spill index `i`. The AD is
//! `"MIMI-PIR-v1 slot" || tag`. Empty slots are uniformly random bytes, which a reader cannot
//! tell from sealed slots without the keys.
//!
//! The table has `buckets` buckets of `bucket_slots` slots; a keyword may sit in any slot of
//! its two buckets (two-choice cuckoo hashing with buckets, which stays buildable at load 0.9
//! for bucket sizes of 4 and more). A bucket is one PIR element: the client fetches both of its
//! buckets and opens them with [`open`].

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use rand::rngs::{OsRng, StdRng};
use rand::{Rng, RngCore, SeedableRng};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::keyword::{SlotKeys, TAG_LEN};
use super::{PirError, Reader, PIR_VERSION};

/// Poly1305 tag length.
pub const AEAD_TAG_LEN: usize = 16;
/// Payload header: version, total, length.
pub const PAYLOAD_HEADER_LEN: usize = 4;
/// Bytes of a slot that are not record data.
pub const SLOT_OVERHEAD: usize = TAG_LEN + AEAD_TAG_LEN + PAYLOAD_HEADER_LEN;
/// Smallest and largest slot sizes accepted.
pub const MIN_SLOT_SIZE: usize = 64;
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

    /// Record-stream bytes one slot carries.
    pub fn data_capacity(&self) -> usize {
        self.slot_size - SLOT_OVERHEAD
    }
}

/// The part of an identifier's record stream found in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Slots holding this identifier (spill indexes `0..total`).
    pub total: u8,
    pub data: Vec<u8>,
}

impl Chunk {
    /// Whether spill indexes after `index` hold more of the stream.
    pub fn more_after(&self, index: u32) -> bool {
        index + 1 < u32::from(self.total)
    }
}

/// Cuts an identifier's records into slot payloads (one per spill index).
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
    let total = stream.len().div_ceil(cap).max(1);
    let max = max_slots.min(MAX_SPILL);
    if total > max {
        return Err(PirError::TooManyRecords {
            sii: sii.to_string(),
            needed: total,
            max,
        });
    }
    let payload_len = layout.slot_size - TAG_LEN - AEAD_TAG_LEN;
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let data = &stream[(i * cap).min(stream.len())..((i + 1) * cap).min(stream.len())];
        let mut p = Vec::with_capacity(payload_len);
        p.push(PIR_VERSION);
        p.push(total as u8);
        p.extend_from_slice(&(data.len() as u16).to_be_bytes());
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

/// Seals one payload (of `slot_size - 32` bytes) into a slot.
pub fn seal(keys: &SlotKeys, payload: &[u8], slot_size: usize) -> Result<Vec<u8>, PirError> {
    if payload.len() + TAG_LEN + AEAD_TAG_LEN != slot_size {
        return Err(PirError::Length {
            what: "slot payload",
            expected: slot_size - TAG_LEN - AEAD_TAG_LEN,
            got: payload.len(),
        });
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&keys.key));
    let mut slot = Vec::with_capacity(slot_size);
    slot.extend_from_slice(&keys.tag);
    let mut body = payload.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&keys.nonce),
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
/// verification runs either way. Returns `Ok(None)` when no slot carries the tag (the
/// identifier or this spill index is absent), [`PirError::SlotAuth`] when the tag matches but the
/// ciphertext does not verify.
pub fn open(
    keys: &SlotKeys,
    buckets: &[&[u8]],
    layout: &TableLayout,
) -> Result<Option<Chunk>, PirError> {
    let s = layout.slot_size;
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
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&keys.key));
    let (_, rest) = selected.split_at_mut(TAG_LEN);
    let (body, tag) = rest.split_at_mut(s - TAG_LEN - AEAD_TAG_LEN);
    let ad = associated_data(&keys.tag);
    let verified = cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&keys.nonce),
            &ad,
            body,
            Tag::from_slice(tag),
        )
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
    let data = r.take(len, "data")?.to_vec();
    if r.rest().iter().any(|&b| b != 0) {
        return Err(PirError::malformed("slot payload", "non-zero padding"));
    }
    Ok(Chunk { total, data })
}

/// Reassembles the records of an identifier from its chunks in spill-index order
/// (`chunks[i]` from index `i`, all of them: `chunks.len() == total`).
pub fn assemble(chunks: &[Chunk]) -> Result<Vec<Vec<u8>>, PirError> {
    let first = chunks
        .first()
        .ok_or_else(|| PirError::malformed("record stream", "no chunks"))?;
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
            nonce: theirs.nonce,
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
        for pos in [TAG_LEN, 100, 255] {
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
