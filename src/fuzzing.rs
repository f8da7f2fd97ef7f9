//! Entry points for the fuzz targets (`fuzz/`, `tools/fuzz.sh`): each takes arbitrary
//! bytes into one parser or decoder of untrusted input and must return, never panic (the
//! one assertion, in `records`, is an invariant: what decodes re-encodes). The
//! DP's whole request handling is fuzzed through a running server in `fuzz/`; these are
//! the parsers beneath it and beside it.

use crate::name::Name;

/// Zone files: the master-file parser with `$ORIGIN`, `$TTL`, parentheses, RFC 3597 and
/// the readable SSI/APKEY forms.
pub fn zone_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let origin = Name::parse("mimi.arpa.", None).ok();
        let _ = crate::zone::ZoneFile::from_str_named(text, "fuzz", origin.as_ref());
    }
}

/// The SSI and APKEY RDATA decoders, and re-encoding what they accept.
pub fn records(data: &[u8]) {
    if let Ok(s) = crate::record::Ssi::from_wire(data) {
        let again = crate::record::Ssi::from_wire(&s.to_wire());
        assert!(again.is_ok(), "an SSI record that decodes must re-encode");
    }
    let _ = crate::record::ApKey::from_wire(data);
}

/// The private-lookup carrier messages (requests, responses, PIRCFG), extended errors, and
/// the SLOTS records of encrypted replicas (every bucket of a run read).
pub fn pir_carrier(data: &[u8]) {
    if let Ok(crate::pir::replica::SlotsRecord::Buckets(run)) =
        crate::pir::replica::SlotsRecord::decode(data)
    {
        let n = run.iter().count();
        assert_eq!(
            n,
            run.len(),
            "a bucket run yields as many buckets as it says"
        );
    }
    let _ = crate::pir::carrier::Request::decode(data);
    let _ = crate::pir::carrier::Response::decode(data);
    let _ = crate::pir::carrier::PirCfgRecord::decode(data);
    let _ = crate::pir::carrier::parse_ede(data);
}

/// CHANGES RDATA, TSIG records in a message, key files and release markers.
pub fn control(data: &[u8]) {
    let _ = crate::changes::Changes::from_wire(data);
    let _ = crate::tsig::find_tsig(data);
    let _ = crate::tsig::unsigned_message(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::tsig::TsigKey::parse_file_text(text, "fuzz");
        let _ = crate::zone::release::Releases::parse(text, "fuzz");
    }
}

/// A reply as the resolver classifies it on a walk, for an SSI question in the carrier
/// block and for the zone's SOA.
pub fn resolver_reply(data: &[u8]) {
    let (Ok(zone), Ok(qname)) = (
        Name::parse("5.5.5.1.e164.mimi.arpa.", None),
        Name::parse("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.", None),
    ) else {
        return;
    };
    let _ = crate::resolver::classify_reply_bytes(data, &zone, &qname, crate::record::TYPE_SSI);
    let _ = crate::resolver::classify_reply_bytes(data, &zone, &zone, 6);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::zone_file(&data);
            super::records(&data);
            super::pir_carrier(&data);
            super::control(&data);
            super::resolver_reply(&data);
        }
    }
}
