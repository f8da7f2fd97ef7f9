//! A plain query read without hickory, for the servers' fast paths: one question of class
//! IN, no answer or authority records, at most an OPT record (so no TSIG), standard QUERY,
//! not truncated, and nothing after the records. Anything else is left to the general path
//! (hickory's parser), as is an EDNS option hickory parses into a type of its own (one of
//! them malformed is a FORMERR there). [`Plain::begin`] and [`Plain::finish`] write the
//! parts of a response every server writes the same way.

use crate::name::MAX_WIRE_LEN;

const TYPE_OPT: u16 = 41;
/// The DO bit of the EDNS flags.
pub const EDNS_DO: u16 = 0x8000;
/// EDNS options hickory parses into types of its own: NSID, DAU, DHU, N3U, client subnet.
const PARSED_OPTIONS: [u16; 5] = [3, 5, 6, 7, 8];

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A query the fast path can answer.
pub struct Plain<'a> {
    /// The question as sent (name in the sender's case, type, class).
    pub question: &'a [u8],
    /// Length of the lowercase name written to the caller's buffer.
    pub qname_len: usize,
    pub qtype: u16,
    /// The EDNS payload size offered, when the query has an OPT record.
    pub payload: Option<u16>,
    /// The EDNS DO bit (RFC 3225): the asker wants DNSSEC records. The only EDNS flag a
    /// plain query may carry (CO and the rest go to the general path).
    pub dnssec_ok: bool,
    /// The whole query.
    query: &'a [u8],
}

/// Reads a plain query; None for anything the general path must see.
pub fn read<'a>(q: &'a [u8], lower: &mut [u8; MAX_WIRE_LEN]) -> Option<Plain<'a>> {
    if q.len() < 17 {
        return None;
    }
    // QR, OPCODE and TC must be clear: a query, standard, whole.
    if q[2] & 0xFA != 0 {
        return None;
    }
    if be16(q, 4) != 1 || be16(q, 6) != 0 || be16(q, 8) != 0 || be16(q, 10) > 1 {
        return None;
    }
    let mut i = 12;
    let mut n = 0;
    loop {
        let len = usize::from(*q.get(i)?);
        // Longer labels are compression pointers or reserved: not in a plain question.
        if len > 63 || n + 1 + len > MAX_WIRE_LEN {
            return None;
        }
        let label = q.get(i + 1..i + 1 + len)?;
        lower[n] = len as u8;
        for (d, s) in lower[n + 1..n + 1 + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += 1 + len;
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    let fixed = q.get(i..i + 4)?;
    let (qtype, qclass) = (be16(fixed, 0), be16(fixed, 2));
    if qclass != 1 || qtype == TYPE_OPT {
        return None;
    }
    i += 4;
    let question = &q[12..i];
    let mut payload = None;
    let mut dnssec_ok = false;
    if be16(q, 10) == 1 {
        // The OPT record: root owner, type 41, version 0, no extended RCODE, no flag but DO.
        let opt = q.get(i..i + 11)?;
        if opt[0] != 0 || be16(opt, 1) != TYPE_OPT || opt[5] != 0 || opt[6] != 0 {
            return None;
        }
        let flags = be16(opt, 7);
        if flags & !EDNS_DO != 0 {
            return None;
        }
        dnssec_ok = flags & EDNS_DO != 0;
        payload = Some(be16(opt, 3));
        let rdlen = usize::from(be16(opt, 9));
        i += 11;
        let options = q.get(i..i + rdlen)?;
        let mut j = 0;
        while j < rdlen {
            let head = options.get(j..j + 4)?;
            if PARSED_OPTIONS.contains(&be16(head, 0)) {
                return None;
            }
            j += 4 + usize::from(be16(head, 2));
        }
        if j != rdlen {
            return None;
        }
        i += rdlen;
    }
    // Trailing bytes: let hickory's parser judge them.
    if i != q.len() {
        return None;
    }
    Some(Plain {
        question,
        qname_len: n,
        qtype,
        payload,
        dnssec_ok,
        query: q,
    })
}

impl Plain<'_> {
    /// Writes the response header and the question as sent: the query's ID, QR, AA and RA
    /// as given, RD and CD copied (as hickory's `Metadata::response_from_request`), the
    /// RCODE, one question, the section counts (plus the OPT record when the query had
    /// one).
    pub fn begin(&self, out: &mut Vec<u8>, aa: bool, ra: bool, rcode: u8, counts: [u16; 3]) {
        let q = self.query;
        out.clear();
        out.extend_from_slice(&q[..2]);
        out.push(0x80 | if aa { 0x04 } else { 0 } | (q[2] & 0x01));
        out.push(if ra { 0x80 } else { 0 } | (q[3] & 0x10) | (rcode & 0x0F));
        let [an, ns, ar] = counts;
        let ar = ar + u16::from(self.payload.is_some());
        for count in [1, an, ns, ar] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(self.question);
    }

    /// The response's EDNS payload size: the query's offer within 512..=`ours` (RFC 6891
    /// 6.2.5), None without EDNS.
    pub fn payload(&self, ours: u16) -> Option<u16> {
        self.payload.map(|p| p.clamp(512, ours.max(512)))
    }

    /// Appends the OPT record when the query had one (root owner, our payload size, no
    /// extended RCODE, version 0, the EDNS `flags` given, no options); false when the
    /// response then does not fit the UDP size the query allows (512 bytes without EDNS).
    pub fn finish(&self, out: &mut Vec<u8>, ours: u16, udp: bool, flags: u16) -> bool {
        let payload = self.payload(ours);
        if let Some(p) = payload {
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&p.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        !udp || out.len() <= usize::from(payload.unwrap_or(512))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut q = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        q.extend_from_slice(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(o) = opt {
            q.extend_from_slice(o);
        }
        q
    }

    #[test]
    fn plain_queries_are_read_and_lowercased() {
        let mut lower = [0u8; MAX_WIRE_LEN];
        let q = query(b"\x01A\x04Mimi\x00", 65280, None);
        let p = read(&q, &mut lower).unwrap();
        assert_eq!(&lower[..p.qname_len], b"\x01a\x04mimi\x00");
        assert_eq!(p.question, &q[12..]);
        assert_eq!((p.qtype, p.payload), (65280, None));
        let opt = [0, 0, 41, 4, 0, 0, 0, 0x80, 0, 0, 8, 0, 10, 0, 4, 1, 2, 3, 4];
        let q = query(b"\x01a\x00", 1, Some(&opt));
        assert_eq!(read(&q, &mut lower).unwrap().payload, Some(1024));
    }

    #[test]
    fn anything_else_is_declined() {
        let mut lower = [0u8; MAX_WIRE_LEN];
        let base = query(b"\x01a\x00", 1, None);
        let mut cases = Vec::new();
        for (at, byte) in [(2, 0x81), (2, 0x29), (2, 0x03), (5, 2), (7, 1), (9, 1)] {
            let mut q = base.clone();
            q[at] = byte;
            cases.push(q);
        }
        cases.push(query(b"\xc0\x0c", 1, None));
        cases.push(query(b"\x01a\x00", 41, None));
        let mut chaos = base.clone();
        chaos[18] = 3;
        cases.push(chaos);
        cases.push([base.clone(), vec![0]].concat());
        cases.push(base[..base.len() - 1].to_vec());
        // Version 1, a client subnet option, an option running past the record.
        cases.push(query(
            b"\x01a\x00",
            1,
            Some(&[0, 0, 41, 4, 0, 0, 1, 0, 0, 0, 0]),
        ));
        cases.push(query(
            b"\x01a\x00",
            1,
            Some(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 4, 0, 8, 0, 0]),
        ));
        cases.push(query(
            b"\x01a\x00",
            1,
            Some(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 9]),
        ));
        let long: Vec<u8> = std::iter::repeat_n([63u8; 64], 5)
            .flat_map(|mut l| {
                l[1..].fill(b'a');
                l
            })
            .chain([0])
            .collect();
        cases.push(query(&long, 1, None));
        for (i, q) in cases.iter().enumerate() {
            assert!(read(q, &mut lower).is_none(), "case {i}");
        }
    }
}
