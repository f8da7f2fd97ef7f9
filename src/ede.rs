//! Extended DNS error INFO-CODEs (RFC 8914) every server here answers with: the
//! registered ones used, and the project's own in the private-use range (49152-65535),
//! documented in docs/private-lookup.md and docs/security.md. One list, so that no two
//! meanings share a code.

/// RFC 8914 "Other Error".
pub const OTHER: u16 = 0;
/// RFC 8914 "DNSSEC Bogus".
pub const DNSSEC_BOGUS: u16 = 6;
/// RFC 8914 "Prohibited".
pub const PROHIBITED: u16 = 18;
/// RFC 8914 "Not Authoritative".
pub const NOT_AUTHORITATIVE: u16 = 20;
/// RFC 8914 "Not Supported".
pub const NOT_SUPPORTED: u16 = 21;

/// The request names another epoch: fetch PIRCFG again.
pub const WRONG_EPOCH: u16 = 49152;
/// The evaluation key id is unknown or was evicted: upload the key again.
pub const UNKNOWN_KEY: u16 = 49153;
/// The client's access class is over its quota (burst or day): try later. IANA has no
/// code for rate limiting yet.
pub const RATE_LIMITED: u16 = 49154;
/// The request could not be understood.
pub const BAD_REQUEST: u16 = 49155;
/// The PIR workers are all busy: try again shortly.
pub const BUSY: u16 = 49156;
/// Private lookups are not offered for this name.
pub const NOT_OFFERED: u16 = 49157;

/// The extended DNS error of a reply (RFC 8914, EDNS option 15): its INFO-CODE and text.
pub fn of_reply(reply: &hickory_proto::op::Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match reply
        .edns
        .as_ref()?
        .option(EdnsCode::from(crate::pir::carrier::EDE_OPTION))?
    {
        EdnsOption::Unknown(_, bytes) => crate::pir::carrier::parse_ede(bytes),
        _ => None,
    }
}
