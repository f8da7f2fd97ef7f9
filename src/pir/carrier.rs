//! The private-lookup carrier over DNS (DESIGN.md section 7): what goes in the EDNS option
//! of a request, in the PIR record of a response, in the PIRCFG record, and in the extended
//! DNS errors. docs/private-lookup.md describes the same layout for implementers.

use super::{PirConfig, PirError, Reader};
use crate::name::Name;

/// EDNS option code carrying a private-lookup request (local/experimental range).
pub const EDNS_OPTION: u16 = 65001;
/// EDNS option code of an extended DNS error (RFC 8914).
pub const EDE_OPTION: u16 = 15;
/// Carrier format version.
pub const VERSION: u8 = 1;
/// The label under which a zone publishes PIRCFG and answers PIR requests.
pub const LABEL: &[u8] = b"_pir";
/// Largest evaluation-key chunk in one request: the option, the question and the headers
/// must stay within a 64 KiB DNS message.
pub const KEY_CHUNK: usize = 60_000;

/// Extended DNS error INFO-CODEs (the shared list, `crate::ede`).
pub mod ede {
    pub use crate::ede::*;
}

/// `_pir.<zone>`.
pub fn pir_name(zone: &Name) -> Result<Name, crate::name::NameError> {
    Name::from_labels([LABEL], zone)
}

/// What the client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// OPRF evaluation of blinded elements.
    Oprf { epoch: u64, blinded: Vec<u8> },
    /// One chunk of an evaluation key.
    Key {
        epoch: u64,
        key_id: [u8; 16],
        index: u16,
        count: u16,
        bytes: Vec<u8>,
    },
    /// One PIR query against a shard, with a previously uploaded key.
    Query {
        epoch: u64,
        key_id: [u8; 16],
        shard: u32,
        query: Vec<u8>,
    },
    /// A shard's slot table for an encrypted replica (asked with type SLOTS; the last table
    /// serial the client holds, if any, goes in EDNS option 65002).
    Replica { epoch: u64, shard: u32 },
}

const KIND_OPRF: u8 = 1;
const KIND_KEY: u8 = 2;
const KIND_QUERY: u8 = 3;
const KIND_REPLICA: u8 = 4;

impl Request {
    pub fn epoch(&self) -> u64 {
        match self {
            Request::Oprf { epoch, .. }
            | Request::Key { epoch, .. }
            | Request::Query { epoch, .. }
            | Request::Replica { epoch, .. } => *epoch,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Request::Oprf { epoch, blinded } => {
                out.push(KIND_OPRF);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(blinded);
            }
            Request::Key {
                epoch,
                key_id,
                index,
                count,
                bytes,
            } => {
                out.push(KIND_KEY);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(key_id);
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                out.extend_from_slice(bytes);
            }
            Request::Query {
                epoch,
                key_id,
                shard,
                query,
            } => {
                out.push(KIND_QUERY);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(key_id);
                out.extend_from_slice(&shard.to_be_bytes());
                out.extend_from_slice(query);
            }
            Request::Replica { epoch, shard } => {
                out.push(KIND_REPLICA);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(&shard.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, PirError> {
        let mut r = Reader::new(bytes, "private-lookup request");
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(PirError::Version {
                what: "private-lookup request",
                got: version,
                supported: VERSION,
            });
        }
        let kind = r.u8("kind")?;
        let epoch = r.u64("epoch")?;
        Ok(match kind {
            KIND_OPRF => Request::Oprf {
                epoch,
                blinded: r.rest().to_vec(),
            },
            KIND_KEY => {
                let key_id = r.array::<16>("key id")?;
                let index = r.u16("chunk index")?;
                let count = r.u16("chunk count")?;
                if count == 0 || index >= count {
                    return Err(PirError::malformed(
                        "private-lookup request",
                        format!("chunk {index} of {count}"),
                    ));
                }
                Request::Key {
                    epoch,
                    key_id,
                    index,
                    count,
                    bytes: r.rest().to_vec(),
                }
            }
            KIND_QUERY => Request::Query {
                epoch,
                key_id: r.array::<16>("key id")?,
                shard: r.u32("shard")?,
                query: r.rest().to_vec(),
            },
            KIND_REPLICA => {
                let shard = r.u32("shard")?;
                r.finish()?;
                Request::Replica { epoch, shard }
            }
            other => {
                return Err(PirError::malformed(
                    "private-lookup request",
                    format!("unknown kind {other}"),
                ))
            }
        })
    }
}

/// What the DP answers, in the RDATA of a PIR record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Oprf(Vec<u8>),
    /// Chunks of the key received so far; `complete` once the key is parsed and stored.
    Key {
        received: u16,
        complete: bool,
    },
    Query(Vec<u8>),
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Response::Oprf(b) => {
                out.push(KIND_OPRF);
                out.extend_from_slice(b);
            }
            Response::Key { received, complete } => {
                out.push(KIND_KEY);
                out.extend_from_slice(&received.to_be_bytes());
                out.push(u8::from(*complete));
            }
            Response::Query(b) => {
                out.push(KIND_QUERY);
                out.extend_from_slice(b);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, PirError> {
        let mut r = Reader::new(bytes, "private-lookup response");
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(PirError::Version {
                what: "private-lookup response",
                got: version,
                supported: VERSION,
            });
        }
        Ok(match r.u8("kind")? {
            KIND_OPRF => Response::Oprf(r.rest().to_vec()),
            KIND_KEY => {
                let received = r.u16("chunks received")?;
                let complete = r.u8("complete")? == 1;
                r.finish()?;
                Response::Key { received, complete }
            }
            KIND_QUERY => Response::Query(r.rest().to_vec()),
            other => {
                return Err(PirError::malformed(
                    "private-lookup response",
                    format!("unknown kind {other}"),
                ))
            }
        })
    }
}

/// The PIRCFG record: the zone's PIR parameters plus the child zones it delegates, so a
/// client can tell whether an identifier lies below a delegation without asking a
/// question that would reveal more of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PirCfgRecord {
    pub config: PirConfig,
    /// Probes (spill indexes) every lookup fetches: the most slots any identifier of the
    /// zone fills, so present, absent and multi-provider identifiers look the same.
    pub probes: u8,
    /// Delegated child zones (absolute names).
    pub children: Vec<Name>,
}

impl PirCfgRecord {
    pub fn encode(&self) -> Vec<u8> {
        let config = self.config.to_wire();
        let mut out = Vec::with_capacity(config.len() + 64);
        out.push(VERSION);
        out.extend_from_slice(&(config.len() as u16).to_be_bytes());
        out.extend_from_slice(&config);
        out.push(self.probes);
        out.extend_from_slice(&(self.children.len() as u16).to_be_bytes());
        for c in &self.children {
            out.extend_from_slice(c.as_wire());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PirCfgRecord, PirError> {
        let mut r = Reader::new(bytes, "PIRCFG");
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(PirError::Version {
                what: "PIRCFG",
                got: version,
                supported: VERSION,
            });
        }
        let len = r.u16("config length")? as usize;
        let config = PirConfig::from_wire(r.take(len, "config")?)?;
        let probes = r.u8("probes")?.max(1);
        let count = r.u16("child count")?;
        let mut children = Vec::with_capacity(usize::from(count).min(1024));
        let mut rest = r.rest();
        for _ in 0..count {
            let (name, used) = Name::from_wire(rest)
                .map_err(|e| PirError::malformed("PIRCFG", format!("child name: {e}")))?;
            children.push(name);
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            return Err(PirError::malformed(
                "PIRCFG",
                format!("{} trailing bytes", rest.len()),
            ));
        }
        Ok(PirCfgRecord {
            config,
            probes,
            children,
        })
    }
}

/// An extended DNS error's option data: INFO-CODE then UTF-8 EXTRA-TEXT.
pub fn ede_bytes(code: u16, text: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Parses extended-DNS-error option data.
pub fn parse_ede(bytes: &[u8]) -> Option<(u16, String)> {
    let code = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    Some((code, String::from_utf8_lossy(&bytes[2..]).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_reject_garbage() {
        let reqs = [
            Request::Oprf {
                epoch: 7,
                blinded: vec![1, 2, 3],
            },
            Request::Key {
                epoch: 7,
                key_id: [9; 16],
                index: 2,
                count: 3,
                bytes: vec![5; 10],
            },
            Request::Query {
                epoch: 7,
                key_id: [9; 16],
                shard: 1,
                query: vec![4; 20],
            },
        ];
        for r in reqs {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[2, 1]).is_err());
        assert!(Request::decode(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let mut bad = Request::Key {
            epoch: 1,
            key_id: [0; 16],
            index: 3,
            count: 3,
            bytes: vec![],
        }
        .encode();
        assert!(Request::decode(&bad).is_err());
        bad.truncate(5);
        assert!(Request::decode(&bad).is_err());
        for resp in [
            Response::Oprf(vec![1]),
            Response::Key {
                received: 3,
                complete: true,
            },
            Response::Query(vec![7; 9]),
        ] {
            assert_eq!(Response::decode(&resp.encode()).unwrap(), resp);
        }
        assert_eq!(
            parse_ede(&ede_bytes(ede::BUSY, "busy")),
            Some((ede::BUSY, "busy".into()))
        );
    }
}
