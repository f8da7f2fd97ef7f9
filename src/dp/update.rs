//! DNS UPDATE (RFC 2136) from app providers, authenticated by TSIG (RFC 8945).
//!
//! The policy of DESIGN 8.1: a TSIG key speaks for one provider (`[[update]]`); the
//! update section may only add SSI records of that provider, each passing the same
//! acceptance rule as a loaded zone (signature under the trust file, SSI host, window)
//! plus `max_validity`; RR deletions are refused (a withdrawal is a signed tombstone);
//! one UPDATE is all or nothing; the answer comes after the journal sync. Every refusal
//! is one [`UpdateError`], which alone decides the RCODE and the extended error.

use std::time::Instant;

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::{DNSClass, RData as HRData, RecordType};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::config::DpConfig;
use super::handler::DpHandler;
use super::signed::WireError;
use super::writer::{Publish, WriteError};
use crate::name::Name;
use crate::record::{verify_against, Ssi, TYPE_SSI};
use crate::tsig::TsigKey;

/// RFC 8914 info codes (the shared list, `crate::ede`).
pub mod ede {
    pub use crate::ede::*;
}

/// Why an UPDATE was not applied. The text names the record and the reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpdateError {
    #[error("{0}")]
    FormErr(String),
    /// TSIG missing, unknown key, bad MAC, or time outside the fudge.
    #[error("{0}")]
    NotAuth(String),
    /// The zone named is not served here.
    #[error("{0}")]
    NotServed(String),
    /// A record outside the zone.
    #[error("{0}")]
    NotZone(String),
    /// Policy: another provider's record, replayed seq, bad signature, ...
    #[error("{0}")]
    Refused(String),
    /// Something RFC 2136 allows that this server does not do (deletions, prerequisites).
    #[error("{0}")]
    NotSupported(String),
    #[error("{0}")]
    RateLimited(String),
    /// Storage failed; nothing was applied.
    #[error("{0}")]
    ServFail(String),
}

impl WireError for UpdateError {
    fn rcode(&self) -> ResponseCode {
        match self {
            UpdateError::FormErr(_) => ResponseCode::FormErr,
            UpdateError::NotAuth(_) | UpdateError::NotServed(_) => ResponseCode::NotAuth,
            UpdateError::NotZone(_) => ResponseCode::NotZone,
            UpdateError::Refused(_)
            | UpdateError::NotSupported(_)
            | UpdateError::RateLimited(_) => ResponseCode::Refused,
            UpdateError::ServFail(_) => ResponseCode::ServFail,
        }
    }

    fn ede_code(&self) -> u16 {
        match self {
            UpdateError::FormErr(_) | UpdateError::ServFail(_) => ede::OTHER,
            UpdateError::NotAuth(_) | UpdateError::Refused(_) => ede::PROHIBITED,
            UpdateError::NotServed(_) | UpdateError::NotZone(_) => ede::NOT_AUTHORITATIVE,
            UpdateError::NotSupported(_) => ede::NOT_SUPPORTED,
            UpdateError::RateLimited(_) => crate::pir::carrier::ede::RATE_LIMITED,
        }
    }
}

impl From<WriteError> for UpdateError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(m) => UpdateError::Refused(m),
            WriteError::Storage(m) => UpdateError::ServFail(m),
            WriteError::Unavailable => {
                UpdateError::ServFail("the zone's writer is busy or stopped; try again".into())
            }
        }
    }
}

/// Whom a TSIG key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An app provider: it may publish its own SSI records.
    Provider(Name),
    /// The zones' operator: it may release identifiers and delegate names (porting).
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Provider(p) => write!(f, "provider {p}"),
            Role::Operator => f.write_str("the operator"),
        }
    }
}

/// The TSIG keys allowed to UPDATE, each with its role (`roles[i]` for `keys[i]`).
#[derive(Debug, Default)]
pub struct Updaters {
    pub keys: Vec<TsigKey>,
    pub roles: Vec<Role>,
}

impl Updaters {
    fn add(&mut self, key: TsigKey, role: Role, at: String) -> Result<(), String> {
        if let Some(i) = self.keys.iter().position(|k| k.name == key.name) {
            return Err(format!(
                "{at}: TSIG key {} is already {}'s; each provider and the operator need their own key",
                key.name, self.roles[i]
            ));
        }
        self.keys.push(key);
        self.roles.push(role);
        Ok(())
    }
}

/// Loads the TSIG keys of the `[[update]]` and `[[operator]]` entries.
pub fn load_updaters(config: &DpConfig) -> Result<Updaters, String> {
    let mut out = Updaters::default();
    for u in &config.updaters {
        let key = TsigKey::load(&u.tsig).map_err(|e| {
            format!(
                "{e} (update key of {} at {}:{})",
                u.provider,
                config.path.display(),
                u.line
            )
        })?;
        let at = format!("{}:{}", config.path.display(), u.line);
        out.add(key, Role::Provider(u.provider.clone()), at)?;
    }
    for o in &config.operators {
        let at = format!("{}:{}", config.path.display(), o.line);
        let key = TsigKey::load(&o.tsig).map_err(|e| format!("{e} (operator key at {at})"))?;
        out.add(key, Role::Operator, at)?;
    }
    Ok(out)
}

use crate::sys::unix_now;

pub use crate::signed::with_ede;

impl DpHandler {
    /// An UPDATE: authenticate, check, hand to the zone's writer, answer once durable.
    pub(super) async fn update<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        handle: R,
    ) -> ResponseInfo {
        let now = unix_now();
        let updaters = self.shared.updaters.load_full();
        let keys = &updaters.keys;
        let verified = crate::tsig::verify_request(request.as_slice(), keys, now);
        let signer = match verified {
            Ok(v) => v,
            Err(failure) => {
                let e = match failure {
                    crate::tsig::TsigFailure::FormErr(_) => {
                        UpdateError::FormErr(failure.to_string())
                    }
                    _ => UpdateError::NotAuth(failure.to_string()),
                };
                warn!(src = %request.src(), "UPDATE refused: {e}");
                self.shared.stats.count_update_refused(e.rcode());
                return self
                    .send_tsig_failure(request, edns, &e, failure, keys, handle)
                    .await;
            }
        };
        let (Some(key), Some(role)) = (keys.get(signer.key), updaters.roles.get(signer.key)) else {
            let e = UpdateError::NotAuth("unknown key".into());
            self.shared.stats.count_update_refused(e.rcode());
            return self.send_error(request, edns, &e, None, handle).await;
        };
        let started = Instant::now();
        let result = match role {
            Role::Provider(provider) => self.apply_update(request, provider, now).await,
            Role::Operator => self.apply_operator(request, now).await,
        };
        let stats = &self.shared.stats;
        match &result {
            Ok(serial) => {
                stats
                    .updates_accepted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if *role == Role::Operator {
                    info!(serial, "operator UPDATE applied");
                }
                debug!(%role, serial, ms = started.elapsed().as_secs_f64() * 1e3, "UPDATE applied");
            }
            Err(e) => {
                stats.count_update_refused(e.rcode());
                info!(%role, rcode = %e.rcode(), "UPDATE refused: {e}");
            }
        }
        let signing = Some((key, &signer));
        match result {
            Ok(_) => {
                self.send_signed(request, edns, ResponseCode::NoError, &[], signing, handle)
                    .await
            }
            Err(e) => self.send_error(request, edns, &e, signing, handle).await,
        }
    }

    /// The zone an UPDATE names, its writer and its update section, checked for what
    /// every UPDATE must satisfy.
    fn update_target<'r>(
        &self,
        request: &'r Request,
    ) -> Result<
        (
            Name,
            super::writer::WriterHandle,
            &'r [hickory_proto::rr::Record],
        ),
        UpdateError,
    > {
        let shared = &self.shared;
        let limits = &shared.update_limits;
        let zone = match request.queries.queries() {
            [z] if z.query_type() == RecordType::SOA && z.query_class() == DNSClass::IN => z,
            _ => {
                return Err(UpdateError::FormErr(
                    "the zone section must hold exactly one SOA question of class IN".into(),
                ))
            }
        };
        let origin = Name::from_hickory(zone.name())
            .map_err(|e| UpdateError::FormErr(format!("zone name: {e}")))?;
        let writer = shared.writers_lock().get(&origin).cloned();
        let Some(writer) = writer else {
            return Err(UpdateError::NotServed(format!(
                "this server is not the primary for {origin}"
            )));
        };
        if !request.answers.is_empty() {
            return Err(UpdateError::NotSupported(
                "prerequisites are not supported: an SSI record's seq orders changes".into(),
            ));
        }
        let updates = &request.authorities;
        if updates.is_empty() {
            return Err(UpdateError::FormErr("the update section is empty".into()));
        }
        if updates.len() > limits.max_records {
            return Err(UpdateError::Refused(format!(
                "{} records in one UPDATE; at most {} (updates.max_records)",
                updates.len(),
                limits.max_records
            )));
        }
        Ok((origin, writer, updates))
    }

    /// An operator's UPDATE (docs/lifecycle.md): "delete all RRsets of a name" releases
    /// the identifier; NS records at a name (with glue below it) delegate it, porting the
    /// number out; "delete the NS RRset" takes a delegation back; DS records at a
    /// delegation are added and deleted (a child's keys, docs/dnssec.md).
    async fn apply_operator(&self, request: &Request, now: u64) -> Result<u32, UpdateError> {
        use super::writer::OperatorOp;
        let (origin, writer, updates) = self.update_target(request)?;
        let mut ops: Vec<OperatorOp> = Vec::new();
        let mut glue = Vec::new();
        for r in updates {
            let owner = Name::from_hickory(&r.name)
                .map_err(|e| UpdateError::FormErr(format!("{}: {e}", r.name)))?;
            if !owner.is_subdomain_of(&origin) {
                return Err(UpdateError::NotZone(format!(
                    "{owner} is outside the zone {origin}"
                )));
            }
            let rtype = r.record_type();
            match (r.dns_class, rtype) {
                (DNSClass::ANY, RecordType::ANY) => {
                    crate::zone::check_sii_owner(&owner, &self.shared.apex).map_err(|m| {
                        UpdateError::Refused(format!("release of {owner}: {m}"))
                    })?;
                    ops.push(OperatorOp::Release(owner));
                }
                (DNSClass::ANY, RecordType::NS) => ops.push(OperatorOp::Undelegate(owner)),
                (DNSClass::ANY, RecordType::DS) => {
                    ops.push(OperatorOp::RemoveDs { owner, rdata: None })
                }
                (DNSClass::NONE, RecordType::DS) => {
                    let rdata = crate::zone::update::canonical_rdata(r).ok_or_else(|| {
                        UpdateError::FormErr(format!("{owner} DS: unreadable record"))
                    })?;
                    ops.push(OperatorOp::RemoveDs {
                        owner,
                        rdata: Some(rdata),
                    });
                }
                (DNSClass::IN, RecordType::DS) => {
                    let record = crate::zone::update::record_from_wire(r).ok_or_else(|| {
                        UpdateError::FormErr(format!("{owner} DS: unreadable record"))
                    })?;
                    ops.push(OperatorOp::AddDs(record));
                }
                (DNSClass::IN, RecordType::NS | RecordType::A | RecordType::AAAA) => {
                    let record = crate::zone::update::record_from_wire(r).ok_or_else(|| {
                        UpdateError::FormErr(format!("{owner} {rtype}: unreadable record"))
                    })?;
                    if rtype == RecordType::NS {
                        match ops.iter_mut().find(|o| {
                            matches!(o, OperatorOp::Delegate { owner: d, .. } if *d == owner)
                        }) {
                            Some(OperatorOp::Delegate { records, .. }) => records.push(record),
                            _ => ops.push(OperatorOp::Delegate {
                                owner,
                                records: vec![record],
                            }),
                        }
                    } else {
                        glue.push(record);
                    }
                }
                _ => {
                    return Err(UpdateError::NotSupported(format!(
                        "{owner} {rtype} class {}: the operator may release an identifier (delete all RRsets of its name), delegate a name (add NS records and glue), take a delegation back (delete its NS RRset), or add and delete DS records at a delegation",
                        r.dns_class
                    )))
                }
            }
        }
        for g in glue {
            let cut = ops.iter_mut().find_map(|o| match o {
                OperatorOp::Delegate { owner, records } if g.name.is_subdomain_of(owner) => {
                    Some(records)
                }
                _ => None,
            });
            match cut {
                Some(records) => records.push(g),
                None => {
                    return Err(UpdateError::Refused(format!(
                        "{}: an address record is accepted only as glue below a name delegated in the same UPDATE",
                        g.name
                    )))
                }
            }
        }
        Ok(writer.operate(ops, now).await?)
    }

    async fn apply_update(
        &self,
        request: &Request,
        provider: &Name,
        now: u64,
    ) -> Result<u32, UpdateError> {
        let shared = &self.shared;
        let limits = &shared.update_limits;
        let (origin, writer, updates) = self.update_target(request)?;
        if !shared
            .update_rate
            .allow_key(provider.clone(), 1.0, Instant::now())
        {
            return Err(UpdateError::RateLimited(format!(
                "provider {provider} sends more than {} UPDATEs a second; try again shortly",
                limits.per_second
            )));
        }
        let trust = shared.trust.load_full();
        let mut records = Vec::with_capacity(updates.len());
        for r in updates {
            let owner = Name::from_hickory(&r.name)
                .map_err(|e| UpdateError::FormErr(format!("{}: {e}", r.name)))?;
            let rtype = u16::from(r.record_type());
            if r.dns_class == DNSClass::ANY || r.dns_class == DNSClass::NONE {
                return Err(UpdateError::NotSupported(format!(
                    "{owner} type {rtype}: RR deletions are refused; withdraw a mapping with a signed tombstone (mimi withdraw)"
                )));
            }
            if r.dns_class != DNSClass::IN {
                return Err(UpdateError::FormErr(format!(
                    "{owner}: class {} in the update section",
                    r.dns_class
                )));
            }
            if !owner.is_subdomain_of(&origin) {
                return Err(UpdateError::NotZone(format!(
                    "{owner} is outside the zone {origin}"
                )));
            }
            if rtype != TYPE_SSI {
                return Err(UpdateError::Refused(format!(
                    "{owner} type {}: app providers may only publish SSI records",
                    r.record_type()
                )));
            }
            let rdata = match &r.data {
                HRData::Unknown { rdata, .. } => rdata.anything.to_vec(),
                _ => Vec::new(),
            };
            let ssi = Ssi::from_wire(&rdata)
                .map_err(|e| UpdateError::FormErr(format!("{owner} SSI: {e}")))?;
            let what = format!("{owner} SSI seq {}", ssi.seq);
            if ssi.provider != *provider {
                return Err(UpdateError::Refused(format!(
                    "{what}: the record is provider {}'s but the key is {provider}'s",
                    ssi.provider
                )));
            }
            crate::zone::check_sii_owner(&owner, &shared.apex)
                .map_err(|m| UpdateError::Refused(format!("{what}: {m}")))?;
            if ssi.not_after.saturating_sub(ssi.verified_at) > limits.max_validity.as_secs() {
                return Err(UpdateError::Refused(format!(
                    "{what}: valid {} days after verification; this DP accepts at most {} (updates.max_validity_days)",
                    ssi.not_after.saturating_sub(ssi.verified_at) / 86400,
                    limits.max_validity.as_secs() / 86400
                )));
            }
            verify_against(&ssi, &owner, &trust, now)
                .map_err(|e| UpdateError::Refused(format!("{what}: {e}")))?;
            records.push(Publish {
                owner,
                ttl: r.ttl,
                ssi,
            });
        }
        Ok(writer.update(provider.clone(), records).await?)
    }
}
