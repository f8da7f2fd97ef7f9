//! Compact denial of existence (RFC 9824): every negative answer carries one NSEC record
//! made for the name asked, owner = that name, next name = its immediate successor in
//! canonical order (`\000.<name>`), so the NSEC covers nothing but the name itself and no
//! chain of them reveals which other names exist (the enumeration bound of DESIGN.md
//! section 7).
//!
//! - A name that does not exist: NOERROR (NXDOMAIN only when the query set the CO flag)
//!   with types {RRSIG, NSEC, NXNAME}.
//! - An empty non-terminal: {RRSIG, NSEC}.
//! - A name without the asked type: its own types plus {RRSIG, NSEC}.

use super::{DnssecError, TYPE_NSEC, TYPE_RRSIG};
use crate::name::{Name, MAX_WIRE_LEN};

/// The EDNS header flag CO, "compact answers OK" (RFC 9824 section 5.1): bit 1 of the
/// flags word, beside DO (bit 0).
pub const EDNS_FLAG_CO: u16 = 0x4000;

/// The NSEC type bitmap of RFC 4034 section 4.1.2 for `types` (any order, repeats allowed).
pub fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let mut sorted = types.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let window = (sorted[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < sorted.len() && (sorted[i] >> 8) as u8 == window {
            let low = (sorted[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        out.push(window);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

/// The types a bitmap lists; an error for a malformed one.
pub fn bitmap_types(bitmap: &[u8]) -> Result<Vec<u16>, DnssecError> {
    let mut types = Vec::new();
    let mut rest = bitmap;
    let mut last_window: Option<u8> = None;
    while !rest.is_empty() {
        let (&window, &len) = match rest {
            [w, l, ..] => (w, l),
            _ => {
                return Err(DnssecError::malformed(
                    "NSEC bitmap",
                    "a window without a length",
                ))
            }
        };
        let len = usize::from(len);
        if len == 0 || len > 32 || rest.len() < 2 + len || last_window.is_some_and(|w| w >= window)
        {
            return Err(DnssecError::malformed(
                "NSEC bitmap",
                format!("window {window} of {len} octets"),
            ));
        }
        for (byte, &bits) in rest[2..2 + len].iter().enumerate() {
            for bit in 0..8 {
                if bits & (0x80 >> bit) != 0 {
                    types.push(u16::from(window) << 8 | (byte * 8 + bit) as u16);
                }
            }
        }
        last_window = Some(window);
        rest = &rest[2 + len..];
    }
    Ok(types)
}

/// `\000.<name>`: the name that follows `name` immediately in canonical order (RFC 4034
/// section 6.1), or None when `name` has no room for another label.
pub fn immediate_successor(name: &Name) -> Option<Name> {
    let wire = name.as_wire();
    if wire.len() + 2 > MAX_WIRE_LEN {
        return None;
    }
    let mut next = Vec::with_capacity(wire.len() + 2);
    next.extend_from_slice(&[1, 0]);
    next.extend_from_slice(wire);
    Some(Name::from_wire_trusted(&next))
}

/// The NSEC RDATA denying `owner`'s other types: next name `\000.<owner>` and the bitmap of
/// `types` plus RRSIG and NSEC. For a name too long to take another label, the next name is
/// the owner itself with its types listed, which RFC 4034 permits for the last name.
pub fn compact_nsec(owner: &Name, types: &[u16]) -> Vec<u8> {
    let next = immediate_successor(owner).unwrap_or_else(|| owner.clone());
    let mut all = types.to_vec();
    all.extend_from_slice(&[TYPE_RRSIG, TYPE_NSEC]);
    let mut out = next.as_wire().to_vec();
    out.extend_from_slice(&type_bitmap(&all));
    out
}

/// The next name and types of an NSEC RDATA.
pub fn parse_nsec(rdata: &[u8]) -> Result<(Name, Vec<u16>), DnssecError> {
    let (next, used) = Name::from_wire(rdata)
        .map_err(|e| DnssecError::malformed("NSEC", format!("next name: {e}")))?;
    Ok((next, bitmap_types(&rdata[used..])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::TYPE_NXNAME;

    /// RFC 4034 section 4.3's example: A MX RRSIG NSEC TYPE1234.
    #[test]
    fn the_rfc_4034_bitmap() {
        let bitmap = type_bitmap(&[1, 15, 46, 47, 1234]);
        assert_eq!(
            hex::encode(&bitmap),
            "0006400100000003041b000000000000000000000000000000000000000000000000000020"
        );
        assert_eq!(bitmap_types(&bitmap).unwrap(), vec![1, 15, 46, 47, 1234]);
    }

    #[test]
    fn a_compact_denial_names_only_the_name_asked() {
        let qname = Name::parse("2.2.2.2.1.5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let rdata = compact_nsec(&qname, &[TYPE_NXNAME]);
        let (next, types) = parse_nsec(&rdata).unwrap();
        assert_eq!(next.to_string(), "\\000.2.2.2.2.1.5.5.5.1.e164.mimi.arpa.");
        assert!(qname < next, "the next name follows the owner");
        assert_eq!(types, vec![TYPE_RRSIG, TYPE_NSEC, TYPE_NXNAME]);
    }

    #[test]
    fn malformed_bitmaps_are_errors() {
        for bad in [
            &[0u8][..],
            &[0, 0],
            &[0, 33],
            &[0, 2, 1],
            &[1, 1, 1, 0, 1, 1],
        ] {
            assert!(bitmap_types(bad).is_err(), "{bad:?}");
        }
    }
}
