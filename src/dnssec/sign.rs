//! RRSIG records (RFC 4034 section 3): making them over an RRset and checking them.
//!
//! What is signed (section 3.1.8.1): the RRSIG RDATA without its signature, then every RR of
//! the set in canonical form (section 6.2: owner lowercase and uncompressed, class IN, the
//! original TTL, RDATA with embedded names lowercase and uncompressed) in canonical order
//! (section 6.3: by RDATA as unsigned octets, duplicates dropped). Names in this crate are
//! kept lowercase and uncompressed, and `RData::to_wire` writes them so, which makes the
//! crate's RDATA bytes canonical as they are.

use ed25519_dalek::{Signature, VerifyingKey};

use super::key::DnssecKey;
use super::{DnssecError, ALG_ED25519};
use crate::name::Name;

const CLASS_IN: u16 = 1;

/// When a signature is valid, in seconds since the epoch (RFC 4034 section 3.1.5; serial
/// number arithmetic is not needed before 2106).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureWindow {
    pub inception: u32,
    pub expiration: u32,
}

impl SignatureWindow {
    /// From an hour before `now` (clock skew between signer and validators) to
    /// `now + lifetime`.
    pub fn starting(now: u64, lifetime: u32) -> SignatureWindow {
        let now = now.min(u64::from(u32::MAX)) as u32;
        SignatureWindow {
            inception: now.saturating_sub(3600),
            expiration: now.saturating_add(lifetime),
        }
    }

    pub fn contains(&self, now: u32) -> bool {
        self.inception <= now && now <= self.expiration
    }
}

/// The fields of an RRSIG RDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsigFields {
    pub type_covered: u16,
    pub algorithm: u8,
    pub labels: u8,
    pub original_ttl: u32,
    pub window: SignatureWindow,
    pub key_tag: u16,
    pub signer: Name,
    pub signature: Vec<u8>,
}

impl RrsigFields {
    fn write_unsigned(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.type_covered.to_be_bytes());
        out.push(self.algorithm);
        out.push(self.labels);
        out.extend_from_slice(&self.original_ttl.to_be_bytes());
        out.extend_from_slice(&self.window.expiration.to_be_bytes());
        out.extend_from_slice(&self.window.inception.to_be_bytes());
        out.extend_from_slice(&self.key_tag.to_be_bytes());
        out.extend_from_slice(self.signer.as_wire());
    }

    pub fn to_rdata(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.signer.as_wire().len() + 64);
        self.write_unsigned(&mut out);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses an RRSIG RDATA (any algorithm; the signature is opaque here).
    pub fn parse(rdata: &[u8]) -> Result<RrsigFields, DnssecError> {
        const WHAT: &str = "RRSIG";
        if rdata.len() < 19 {
            return Err(DnssecError::malformed(
                WHAT,
                format!("{} octets", rdata.len()),
            ));
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([rdata[i], rdata[i + 1], rdata[i + 2], rdata[i + 3]]);
        let (signer, used) = Name::from_wire(&rdata[18..])
            .map_err(|e| DnssecError::malformed(WHAT, format!("signer name: {e}")))?;
        Ok(RrsigFields {
            type_covered: u16::from_be_bytes([rdata[0], rdata[1]]),
            algorithm: rdata[2],
            labels: rdata[3],
            original_ttl: u32_at(4),
            window: SignatureWindow {
                expiration: u32_at(8),
                inception: u32_at(12),
            },
            key_tag: u16::from_be_bytes([rdata[16], rdata[17]]),
            signer,
            signature: rdata[18 + used..].to_vec(),
        })
    }
}

/// RFC 4034 section 3.1.3: the owner's labels, not counting the root or a leading `*`.
pub fn label_count(owner: &Name) -> u8 {
    let mut labels = owner.labels();
    let first_is_star = owner.labels().next() == Some(b"*".as_slice());
    if first_is_star {
        labels.next();
    }
    labels.count().min(255) as u8
}

/// The data an RRSIG signs: `fields` without the signature, then the RRset in canonical
/// form and order. `rdatas` are canonical RDATA (see the module comment).
pub fn signed_data(fields: &RrsigFields, owner: &Name, rdatas: &[&[u8]]) -> Vec<u8> {
    let mut sorted: Vec<&[u8]> = rdatas.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let per_rr = owner.as_wire().len() + 10;
    let mut out = Vec::with_capacity(64 + sorted.iter().map(|r| per_rr + r.len()).sum::<usize>());
    fields.write_unsigned(&mut out);
    for rdata in sorted {
        out.extend_from_slice(owner.as_wire());
        out.extend_from_slice(&fields.type_covered.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&fields.original_ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    out
}

/// The RRSIG RDATA over the RRset `owner`/`rtype` with TTL `ttl`, made by `key` (whose zone
/// is the signer name).
pub fn sign_rrset(
    key: &DnssecKey,
    owner: &Name,
    rtype: u16,
    ttl: u32,
    rdatas: &[&[u8]],
    window: SignatureWindow,
) -> Vec<u8> {
    let mut fields = RrsigFields {
        type_covered: rtype,
        algorithm: ALG_ED25519,
        labels: label_count(owner),
        original_ttl: ttl,
        window,
        key_tag: key.key_tag(),
        signer: key.zone.clone(),
        signature: Vec::new(),
    };
    fields.signature = key.sign(&signed_data(&fields, owner, rdatas)).to_vec();
    fields.to_rdata()
}

/// Checks `rrsig` over the RRset with the DNSKEY `public` (tag `key_tag`) at time `now`:
/// algorithm, key tag, covered type, the validity window, then the signature (strict
/// Ed25519 verification, which refuses small-order keys and non-canonical signatures).
pub fn verify_rrset(
    public: &VerifyingKey,
    key_tag: u16,
    owner: &Name,
    rtype: u16,
    rdatas: &[&[u8]],
    rrsig: &RrsigFields,
    now: u32,
) -> Result<(), DnssecError> {
    let bad = || DnssecError::BadSignature {
        owner: owner.to_string(),
        rtype,
        signer: rrsig.signer.to_string(),
        key_tag: rrsig.key_tag,
    };
    if rrsig.algorithm != ALG_ED25519 {
        return Err(DnssecError::Algorithm(rrsig.algorithm));
    }
    if rrsig.key_tag != key_tag || rrsig.type_covered != rtype {
        return Err(bad());
    }
    if !rrsig.window.contains(now) {
        return Err(DnssecError::OutsideWindow {
            owner: owner.to_string(),
            rtype,
            inception: rrsig.window.inception,
            expiration: rrsig.window.expiration,
            now,
        });
    }
    let signature: [u8; 64] = rrsig.signature.as_slice().try_into().map_err(|_| bad())?;
    public
        .verify_strict(
            &signed_data(rrsig, owner, rdatas),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::FLAGS_CSK;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    fn name(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn rfc_8080_key() -> DnssecKey {
        let secret: [u8; 32] = B64
            .decode("ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=")
            .unwrap()
            .try_into()
            .unwrap();
        DnssecKey::from_secret(name("example.com."), FLAGS_CSK, secret)
    }

    fn mx(preference: u16, exchange: &str) -> Vec<u8> {
        let mut r = preference.to_be_bytes().to_vec();
        r.extend_from_slice(name(exchange).as_wire());
        r
    }

    /// RFC 8080 section 6.1: the MX RRset of example.com signed with the example key gives
    /// the RFC's signature, byte for byte (Ed25519 signatures are deterministic).
    #[test]
    fn rfc_8080_example_signature() {
        let key = rfc_8080_key();
        let window = SignatureWindow {
            inception: 1438207200,
            expiration: 1440021600,
        };
        let rdata = mx(10, "mail.example.com.");
        let rrsig = sign_rrset(&key, &name("example.com."), 15, 3600, &[&rdata], window);
        let fields = RrsigFields::parse(&rrsig).unwrap();
        assert_eq!((fields.labels, fields.key_tag), (2, 3613));
        assert_eq!(
            B64.encode(&fields.signature),
            "oL9krJun7xfBOIWcGHi7mag5/hdZrKWw15jPGrHpjQeRAvTdszaPD+QLs3fx8A4M3e23mRZ9VrbpMngwcrqNAg=="
        );
        verify_rrset(
            &key.public_key(),
            3613,
            &name("example.com."),
            15,
            &[&rdata],
            &fields,
            1439000000,
        )
        .unwrap();
    }

    #[test]
    fn order_and_duplicates_do_not_change_the_signature_and_any_change_breaks_it() {
        let key = rfc_8080_key();
        let owner = name("www.example.com.");
        let window = SignatureWindow::starting(1_800_000_000, 86400);
        let (a, b) = (mx(10, "a.example.com."), mx(20, "b.example.com."));
        let one = sign_rrset(&key, &owner, 15, 300, &[&a, &b], window);
        let two = sign_rrset(&key, &owner, 15, 300, &[&b, &a, &b], window);
        assert_eq!(one, two);
        let fields = RrsigFields::parse(&one).unwrap();
        let check = |owner: &Name, rtype, rdatas: &[&[u8]], fields: &RrsigFields, now| {
            verify_rrset(
                &key.public_key(),
                key.key_tag(),
                owner,
                rtype,
                rdatas,
                fields,
                now,
            )
        };
        let now = 1_800_000_000;
        check(&owner, 15, &[&a, &b], &fields, now).unwrap();
        // A record changed, one stripped, another owner, another type, another TTL.
        let c = mx(30, "a.example.com.");
        assert!(matches!(
            check(&owner, 15, &[&a, &c], &fields, now),
            Err(DnssecError::BadSignature { .. })
        ));
        assert!(check(&owner, 15, &[&a], &fields, now).is_err());
        assert!(check(&name("ftp.example.com."), 15, &[&a, &b], &fields, now).is_err());
        assert!(check(&owner, 16, &[&a, &b], &fields, now).is_err());
        let mut ttl = fields.clone();
        ttl.original_ttl = 301;
        assert!(check(&owner, 15, &[&a, &b], &ttl, now).is_err());
        // Expired, and not yet valid.
        assert!(matches!(
            check(&owner, 15, &[&a, &b], &fields, now + 86401),
            Err(DnssecError::OutsideWindow { .. })
        ));
        assert!(check(&owner, 15, &[&a, &b], &fields, now - 3601).is_err());
        // A flipped signature bit.
        let mut flipped = fields.clone();
        flipped.signature[7] ^= 1;
        assert!(check(&owner, 15, &[&a, &b], &flipped, now).is_err());
    }

    #[test]
    fn labels_skip_the_root_and_a_wildcard() {
        assert_eq!(label_count(&name("a.b.example.")), 3);
        assert_eq!(label_count(&name("*.b.example.")), 2);
        assert_eq!(label_count(&Name::root()), 0);
    }

    #[test]
    fn hostile_rrsig_rdata_is_an_error() {
        for bad in [&[][..], &[0u8; 18][..]] {
            assert!(RrsigFields::parse(bad).is_err(), "{bad:?}");
        }
        // The shortest well-formed RDATA: the root as signer, an empty signature (which
        // then fails verification, not parsing).
        let shortest = RrsigFields::parse(&[0u8; 19]).unwrap();
        assert!(shortest.signer.is_root() && shortest.signature.is_empty());
        let mut long = vec![0u8; 18];
        long.extend_from_slice(&[63u8; 40]);
        assert!(RrsigFields::parse(&long).is_err());
    }
}
