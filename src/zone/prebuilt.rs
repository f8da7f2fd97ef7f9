//! Answers built once: the sections of a response, encoded when a zone version is made, so
//! that answering a query only copies bytes.
//!
//! A [`Prebuilt`] holds the answer, authority and additional sections exactly as hickory's
//! encoder writes them after a question of some length (the general path's encoder: the
//! fast path's bytes must be its bytes). hickory never compresses a name against the
//! question (its compression entry for the question covers the type and class too), so the
//! sections depend on the question only through where they start; a compression pointer in
//! them always points into the sections themselves. Written after a question of another
//! length, the pointers move by the difference: the offsets of the pointers are kept, and
//! [`Prebuilt::write`] relocates them.
//!
//! The same bytes are the store's copy of the records: [`Prebuilt::decode`] gives them
//! back as hickory records for the general path, transfers and the write path.
//!
//! Layout, one allocation: ANCOUNT, NSCOUNT, ARCOUNT, the base (offset of the sections in
//! the message they were encoded in), the number of pointers, the pointers' offsets in the
//! sections (all u16, big-endian), then the sections.

use hickory_proto::op::{MessageType, Metadata, OpCode};
use hickory_proto::rr::Record as WireRecord;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use thiserror::Error;

use super::rdata::{TYPE_NS, TYPE_SOA};

/// Compression pointers reach offsets below this; hickory also stops recording names to
/// point at from here on. Sections relocated past it would be encoded differently.
const POINTER_LIMIT: usize = 0x3FFF;
const HEAD: usize = 10;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrebuiltError {
    #[error("cannot encode the answer for {owner}: {reason}")]
    Encode { owner: String, reason: String },
    #[error("the encoded answer is malformed at byte {0}")]
    Malformed(usize),
}

/// Encoded response sections; see the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct Prebuilt(Box<[u8]>);

impl std::fmt::Debug for Prebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prebuilt")
            .field("counts", &self.counts())
            .field("base", &self.base())
            .field("bytes", &self.sections().len())
            .finish()
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl Prebuilt {
    /// Encodes the sections of a response to a question for `owner` (lowercase wire
    /// form) and `qtype`, as the general path encodes them.
    pub fn encode(
        owner: &[u8],
        qtype: u16,
        answers: &[WireRecord],
        authority: &[WireRecord],
        additional: &[WireRecord],
    ) -> Result<Prebuilt, PrebuiltError> {
        let fail = |reason: String| PrebuiltError::Encode {
            owner: crate::name::Name::from_wire(owner)
                .map_or_else(|_| format!("{owner:?}"), |(n, _)| n.to_string()),
            reason,
        };
        let mut question = Vec::with_capacity(owner.len() + 4);
        question.extend_from_slice(owner);
        question.extend_from_slice(&qtype.to_be_bytes());
        question.extend_from_slice(&1u16.to_be_bytes());
        let queries =
            Queries::read(&mut BinDecoder::new(&question), 1).map_err(|e| fail(e.to_string()))?;
        let mut bytes = Vec::with_capacity(512);
        {
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(u16::MAX);
            MessageResponseBuilder::new(&queries, None)
                .build(
                    Metadata::new(0, MessageType::Response, OpCode::Query),
                    answers.iter(),
                    authority.iter(),
                    std::iter::empty(),
                    additional.iter(),
                )
                .destructive_emit(&mut encoder)
                .map_err(|e| fail(e.to_string()))?;
        }
        let base = 12 + question.len();
        let counts = [be16(&bytes, 6), be16(&bytes, 8), be16(&bytes, 10)];
        let records = counts.iter().map(|&c| usize::from(c)).sum();
        let pointers = pointers(&bytes, base, records)?;
        let sections = &bytes[base..];
        let mut out = Vec::with_capacity(HEAD + 2 * pointers.len() + sections.len());
        for v in counts {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&(pointers.len() as u16).to_be_bytes());
        for p in &pointers {
            out.extend_from_slice(&p.to_be_bytes());
        }
        out.extend_from_slice(sections);
        Ok(Prebuilt(out.into_boxed_slice()))
    }

    /// ANCOUNT, NSCOUNT and ARCOUNT.
    pub fn counts(&self) -> [u16; 3] {
        [be16(&self.0, 0), be16(&self.0, 2), be16(&self.0, 4)]
    }

    /// Where the sections start in the message they were encoded in.
    pub fn base(&self) -> usize {
        usize::from(be16(&self.0, 6))
    }

    fn pointer_count(&self) -> usize {
        usize::from(be16(&self.0, 8))
    }

    /// The encoded sections, as placed at `base()`.
    pub fn sections(&self) -> &[u8] {
        &self.0[HEAD + 2 * self.pointer_count()..]
    }

    /// Appends the sections to `out`, which holds the message up to them (so they start
    /// at `out.len()`). False, leaving `out` as it was, when relocated there they would
    /// not be what the encoder writes (pointers past the compression limit).
    pub fn write(&self, out: &mut Vec<u8>) -> bool {
        let at = out.len();
        let sections = self.sections();
        let base = self.base();
        if at == base {
            out.extend_from_slice(sections);
            return true;
        }
        if at.max(base) + sections.len() >= POINTER_LIMIT {
            return false;
        }
        out.extend_from_slice(sections);
        for i in 0..self.pointer_count() {
            let p = at + usize::from(be16(&self.0, HEAD + 2 * i));
            let target = usize::from(be16(out, p) & 0x3FFF) - base + at;
            out[p..p + 2].copy_from_slice(&(0xC000 | target as u16).to_be_bytes());
        }
        true
    }

    /// The records of the three sections.
    pub fn decode(&self) -> Result<[Vec<WireRecord>; 3], PrebuiltError> {
        // Pointers count from the start of the message: decode with the sections at base.
        let base = self.base();
        let mut msg = vec![0u8; base];
        msg.extend_from_slice(self.sections());
        let mut decoder = BinDecoder::new(&msg);
        decoder
            .read_slice(base)
            .map_err(|_| PrebuiltError::Malformed(0))?;
        let mut out: [Vec<WireRecord>; 3] = Default::default();
        for (section, count) in out.iter_mut().zip(self.counts()) {
            for _ in 0..count {
                let r = WireRecord::read(&mut decoder)
                    .map_err(|_| PrebuiltError::Malformed(decoder.index() - base))?;
                section.push(r);
            }
        }
        Ok(out)
    }

    /// The answer section's records. These bytes are hickory's encoding of records it
    /// read, walked record by record by `encode`, so a failure here is a bug: it is logged
    /// as an error (and trips debug builds) rather than passing silently for an empty set.
    pub fn answers(&self) -> Vec<WireRecord> {
        self.decoded().map(|[a, _, _]| a).unwrap_or_default()
    }

    /// `decode`, for bytes this type encoded itself: a failure is logged, never silent.
    pub fn decoded(&self) -> Option<[Vec<WireRecord>; 3]> {
        match self.decode() {
            Ok(sections) => Some(sections),
            Err(e) => {
                tracing::error!("prebuilt answer does not decode (a bug): {e}");
                debug_assert!(false, "prebuilt answer does not decode: {e}");
                None
            }
        }
    }
}

/// Offsets, relative to `start`, of the compression pointers in the `records` records
/// from `start` on: in owner names, and in the names hickory compresses inside RDATA (NS
/// and SOA here; the zone layer keeps every other type opaque).
fn pointers(msg: &[u8], start: usize, records: usize) -> Result<Vec<u16>, PrebuiltError> {
    let mut out = Vec::new();
    let mut pos = start;
    let bad = |at: usize| PrebuiltError::Malformed(at.saturating_sub(start));
    let name = |pos: &mut usize, out: &mut Vec<u16>| -> Result<(), PrebuiltError> {
        loop {
            let len = *msg.get(*pos).ok_or(bad(*pos))?;
            if len & 0xC0 == 0xC0 {
                out.push((*pos - start) as u16);
                *pos += 2;
                return Ok(());
            }
            *pos += 1 + usize::from(len);
            if len == 0 {
                return Ok(());
            }
        }
    };
    for _ in 0..records {
        name(&mut pos, &mut out)?;
        let fixed = msg.get(pos..pos + 10).ok_or(bad(pos))?;
        let rtype = be16(fixed, 0);
        let rdlen = usize::from(be16(fixed, 8));
        pos += 10;
        let end = pos + rdlen;
        match rtype {
            TYPE_NS => name(&mut pos, &mut out)?,
            TYPE_SOA => {
                name(&mut pos, &mut out)?;
                name(&mut pos, &mut out)?;
            }
            _ => {}
        }
        if end > msg.len() {
            return Err(bad(pos));
        }
        pos = end;
    }
    if pos != msg.len() {
        return Err(bad(pos));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{NS, SOA};
    use hickory_proto::rr::{Name as HName, RData};
    use std::str::FromStr;

    fn n(s: &str) -> HName {
        HName::from_str(s).unwrap()
    }

    fn wire(s: &str) -> Vec<u8> {
        crate::name::Name::from_str(s).unwrap().as_wire().to_vec()
    }

    /// The whole message the general path's encoder makes for `qname`.
    fn general(qname: &str, qtype: u16, answers: &[WireRecord], auth: &[WireRecord]) -> Vec<u8> {
        let p = Prebuilt::encode(&wire(qname), qtype, answers, auth, &[]).unwrap();
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&wire(qname));
        msg.extend_from_slice(&qtype.to_be_bytes());
        msg.extend_from_slice(&1u16.to_be_bytes());
        assert!(p.write(&mut msg));
        msg
    }

    #[test]
    fn relocated_sections_equal_a_fresh_encoding() {
        let soa = WireRecord::from_rdata(
            n("carrier.example."),
            300,
            RData::SOA(SOA::new(
                n("ns1.carrier.example."),
                n("hostmaster.carrier.example."),
                1,
                2,
                3,
                4,
                300,
            )),
        );
        let ns = [
            WireRecord::from_rdata(
                n("carrier.example."),
                60,
                RData::NS(NS(n("ns1.carrier.example."))),
            ),
            WireRecord::from_rdata(
                n("carrier.example."),
                60,
                RData::NS(NS(n("ns2.carrier.example."))),
            ),
        ];
        let template = Prebuilt::encode(
            &wire("carrier.example."),
            6,
            &[],
            std::slice::from_ref(&soa),
            &[],
        )
        .unwrap();
        assert!(template.pointer_count() >= 2, "{template:?}");
        for q in [
            "carrier.example.",
            "x.carrier.example.",
            "1.2.3.4.5.6.7.8.carrier.example.",
        ] {
            let mut msg = vec![0u8; 12];
            msg.extend_from_slice(&wire(q));
            msg.extend_from_slice(&[0, 6, 0, 1]);
            assert!(template.write(&mut msg));
            assert_eq!(msg, general(q, 6, &[], std::slice::from_ref(&soa)), "{q}");
        }
        let set = Prebuilt::encode(&wire("carrier.example."), 2, &ns, &[], &[]).unwrap();
        assert_eq!(set.decode().unwrap()[0], ns.to_vec());
        assert_eq!(set.counts(), [2, 0, 0]);
    }

    #[test]
    fn malformed_sections_are_an_error() {
        assert!(pointers(&[3, b'a', b'b'], 0, 1).is_err());
        assert!(pointers(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 9, 1], 0, 1).is_err());
    }
}
