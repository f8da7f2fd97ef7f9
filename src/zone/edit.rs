//! Changes to a zone file made by the admin CLI: new zones, mappings, delegations.

use std::collections::HashMap;
use std::net::IpAddr;

use super::rdata::{RData, Soa, TYPE_A, TYPE_AAAA, TYPE_NS};
use super::{Record, ZoneFile};
use crate::name::Name;
use crate::record::{ApKey, Ssi};

/// SOA timers of new zones: refresh 1h, retry 10m, expire 14d, negative TTL 5m.
const NEW_SOA: (u32, u32, u32, u32) = (3600, 600, 1_209_600, 300);

fn address_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(a) => RData::A(a),
        IpAddr::V6(a) => RData::Aaaa(a),
    };
    Record {
        name: name.clone(),
        ttl,
        data,
        line: 0,
    }
}

/// (owner, provider) in wire form: at most one mapping each.
pub type MappingKey = (Box<[u8]>, Box<[u8]>);

impl ZoneFile {
    /// A new zone with SOA, NS and glue for the name servers inside it.
    pub fn new_zone(origin: Name, ns: &[(Name, IpAddr)], ttl: u32, serial: u32) -> ZoneFile {
        let mname = ns
            .first()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| origin.clone());
        let rname = Name::parse("hostmaster", Some(&origin)).unwrap_or_else(|_| origin.clone());
        let (refresh, retry, expire, minimum) = NEW_SOA;
        let mut zone = ZoneFile {
            origin: origin.clone(),
            records: vec![Record {
                name: origin.clone(),
                ttl,
                data: RData::Soa(Box::new(Soa {
                    mname,
                    rname,
                    serial,
                    refresh,
                    retry,
                    expire,
                    minimum,
                })),
                line: 0,
            }],
            source: String::new(),
        };
        zone.set_delegation(&origin, ns, ttl);
        zone
    }

    /// Replaces the NS records at `child` (the apex or a delegation) and adds address
    /// records for name servers that lie inside this zone.
    pub fn set_delegation(&mut self, child: &Name, ns: &[(Name, IpAddr)], ttl: u32) {
        let old_targets: Vec<Name> = self
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::Ns(t) if r.name == *child => Some(t.clone()),
                _ => None,
            })
            .collect();
        // Drop the old NS set and glue the old set used, unless something else uses it.
        self.records
            .retain(|r| !(r.name == *child && r.data.rtype() == TYPE_NS));
        for t in old_targets {
            let still_used = self
                .records
                .iter()
                .any(|r| matches!(&r.data, RData::Ns(n) if *n == t));
            if !still_used && t.is_subdomain_of(child) {
                self.records
                    .retain(|r| !(r.name == t && matches!(r.data.rtype(), TYPE_A | TYPE_AAAA)));
            }
        }
        for (name, ip) in ns {
            self.records.push(Record {
                name: child.clone(),
                ttl,
                data: RData::Ns(name.clone()),
                line: 0,
            });
            if name.is_subdomain_of(&self.origin) {
                let glue = address_record(name, ttl, *ip);
                if !self
                    .records
                    .iter()
                    .any(|r| r.name == glue.name && r.data == glue.data)
                {
                    self.records.push(glue);
                }
            }
        }
    }

    /// The `seq` the next mapping of (owner, provider) must carry: one more than the
    /// current one, or 1.
    pub fn next_seq(&self, owner: &Name, provider: &Name) -> u64 {
        self.records
            .iter()
            .filter(|r| r.name == *owner)
            .filter_map(|r| match &r.data {
                RData::Ssi(s) if s.provider == *provider => Some(s.seq),
                _ => None,
            })
            .max()
            .map_or(1, |s| s + 1)
    }

    /// Inserts a mapping, replacing any mapping of the same (owner, provider).
    pub fn put_ssi(&mut self, owner: Name, ttl: u32, ssi: Ssi) {
        self.records.retain(|r| {
            !(r.name == owner && matches!(&r.data, RData::Ssi(s) if s.provider == ssi.provider))
        });
        self.records.push(Record {
            name: owner,
            ttl,
            data: RData::Ssi(Box::new(ssi)),
            line: 0,
        });
    }

    /// Index of SSI records by (owner wire, provider wire), for bulk changes.
    pub fn mapping_index(&self) -> HashMap<MappingKey, usize> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.data {
                RData::Ssi(s) => Some(((r.name.as_wire().into(), s.provider.as_wire().into()), i)),
                _ => None,
            })
            .collect()
    }

    /// Removes the mappings of `owner` (only `provider`'s when given); returns how many.
    pub fn remove_ssi(&mut self, owner: &Name, provider: Option<&Name>) -> usize {
        let before = self.records.len();
        self.records.retain(|r| {
            !(r.name == *owner
                && matches!(&r.data, RData::Ssi(s) if provider.is_none_or(|p| s.provider == *p)))
        });
        before - self.records.len()
    }

    /// Publishes an app provider's key at `<provider>.ap.<apex>`, replacing an older one
    /// with the same key id.
    pub fn put_apkey(&mut self, owner: Name, ttl: u32, key: ApKey) {
        let id = key.key_id();
        self.records.retain(|r| {
            !(r.name == owner && matches!(&r.data, RData::ApKey(k) if k.key_id() == id))
        });
        self.records.push(Record {
            name: owner,
            ttl,
            data: RData::ApKey(Box::new(key)),
            line: 0,
        });
    }

    /// Increments the SOA serial (RFC 1982 arithmetic) so secondaries see the change.
    pub fn bump_serial(&mut self) {
        for r in &mut self.records {
            if let RData::Soa(s) = &mut r.data {
                if r.name == self.origin {
                    s.serial = s.serial.wrapping_add(1).max(1);
                }
            }
        }
    }

    /// Mappings in canonical order, with owner names.
    pub fn mappings(&self) -> impl Iterator<Item = (&Record, &Ssi)> {
        self.records.iter().filter_map(|r| match &r.data {
            RData::Ssi(s) => Some((r, s.as_ref())),
            _ => None,
        })
    }
}
