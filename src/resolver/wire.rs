//! Cached answers in wire form, for the DNS listener's fast path (`server.rs`).
//!
//! A [`WireAnswer`] is the answer and authority sections the general path's encoder
//! writes for one cached entry (as a [`Prebuilt`]), its RCODE, and where each record's TTL
//! sits with the most that record may show (the mapping's TTL, or the SOA's negative TTL).
//! The general path gives each record min(seconds left in the cache, that cap); so does
//! [`WireAnswer::write`], by patching the TTL fields of the copied sections. The records
//! come from the same function the general path uses (`server::response_records`), with
//! every cap written as the TTL, so the two paths cannot disagree on what is sent.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Record;
use thiserror::Error;

use crate::record::TYPE_SSI;
use crate::zone::{Prebuilt, PrebuiltError};

#[derive(Debug, Error)]
pub enum WireError {
    #[error(transparent)]
    Encode(#[from] PrebuiltError),
    /// The general path owns answers by the query's name as parsed, lowercase: anything
    /// else would not be its bytes.
    #[error("the answers are not owned by the name asked for")]
    Owner,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// One cached entry's response sections; see the module documentation.
#[derive(Debug)]
pub struct WireAnswer {
    rcode: u8,
    sections: Prebuilt,
    /// Each record's TTL field (offset in the sections) and the largest TTL it may show.
    ttls: Box<[(usize, u32)]>,
}

impl WireAnswer {
    /// Encodes the response to an SSI query for `owner` (lowercase wire form): `answers`
    /// and `authority` with each record's TTL at its cap.
    pub fn encode(
        owner: &[u8],
        rcode: ResponseCode,
        answers: &[Record],
        authority: &[Record],
    ) -> Result<WireAnswer, WireError> {
        let sections = Prebuilt::encode(owner, TYPE_SSI, answers, authority, &[])?;
        // The first answer's owner is written in full (hickory never points into the
        // question), the others point to it.
        if !answers.is_empty() && !sections.sections().starts_with(owner) {
            return Err(WireError::Owner);
        }
        let ttls = ttl_fields(&sections)?;
        Ok(WireAnswer {
            rcode: u16::from(rcode) as u8,
            sections,
            ttls,
        })
    }

    /// The RCODE (low four bits: the listener never sends an extended one).
    pub fn rcode(&self) -> u8 {
        self.rcode
    }

    /// ANCOUNT, NSCOUNT and ARCOUNT (without the OPT record).
    pub fn counts(&self) -> [u16; 3] {
        self.sections.counts()
    }

    /// Appends the sections to `out` (the message up to and including the question), each
    /// TTL min(`left`, the record's cap); false, leaving `out` unusable, when they could not
    /// be written as the encoder writes them.
    pub fn write(&self, out: &mut Vec<u8>, left: u32) -> bool {
        let start = out.len();
        if !self.sections.write(out) {
            return false;
        }
        for &(at, cap) in self.ttls.iter() {
            match out.get_mut(start + at..start + at + 4) {
                Some(field) => field.copy_from_slice(&cap.min(left).to_be_bytes()),
                None => return false,
            }
        }
        true
    }
}

/// Offsets (in the sections) and values of the records' TTL fields.
fn ttl_fields(p: &Prebuilt) -> Result<Box<[(usize, u32)]>, PrebuiltError> {
    let s = p.sections();
    let records: usize = p.counts().iter().map(|&c| usize::from(c)).sum();
    let mut out = Vec::with_capacity(records);
    let mut pos = 0;
    for _ in 0..records {
        // The owner: labels up to the root label, or up to a compression pointer.
        loop {
            let len = *s.get(pos).ok_or(PrebuiltError::Malformed(pos))?;
            if len & 0xC0 == 0xC0 {
                pos += 2;
                break;
            }
            pos += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        let fixed = s.get(pos..pos + 10).ok_or(PrebuiltError::Malformed(pos))?;
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        out.push((pos + 4, ttl));
        pos += 10 + usize::from(be16(fixed, 8));
    }
    if pos != s.len() {
        return Err(PrebuiltError::Malformed(pos));
    }
    Ok(out.into_boxed_slice())
}
