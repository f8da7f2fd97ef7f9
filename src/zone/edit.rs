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

    /// Mappings in file order, with their records.
    pub fn mappings(&self) -> impl Iterator<Item = (&Record, &Ssi)> {
        self.records.iter().filter_map(|r| match &r.data {
            RData::Ssi(s) => Some((r, s.as_ref())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Context, Method, ProviderKey};
    use ed25519_dalek::SigningKey;

    const T2026: u64 = 1_767_225_600;

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(provider: &str, seed: u8) -> ProviderKey {
        ProviderKey {
            provider: n(provider),
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn ssi(owner: &Name, key: &ProviderKey, seq: u64, user: &str) -> Ssi {
        let mut s = Ssi {
            version: 1,
            context: Context::Any,
            withdrawn: false,
            priority: 10,
            seq,
            not_before: T2026,
            not_after: T2026 + 365 * 86400,
            method: Method::SmsOtp,
            verified_at: T2026,
            provider: key.provider.clone(),
            uri: format!(
                "mimi://{}/u/{user}",
                key.provider.to_string().trim_end_matches('.')
            ),
            key_id: [0; 8],
            signature: [0; 64],
        };
        s.sign(owner, &key.signing);
        s
    }

    /// (owner, type, data) of every record, sorted, for comparisons.
    fn rrs(zone: &ZoneFile) -> Vec<(String, u16, Vec<u8>)> {
        let mut v: Vec<_> = zone
            .records
            .iter()
            .map(|r| (r.name.to_string(), r.data.rtype(), r.data.to_wire()))
            .collect();
        v.sort();
        v
    }

    fn carrier() -> ZoneFile {
        ZoneFile::new_zone(
            n("5.5.5.1.e164.mimi.arpa."),
            &[
                (n("ns1.5.5.5.1.e164.mimi.arpa."), ip("127.0.0.4")),
                (n("ns2.5.5.5.1.e164.mimi.arpa."), ip("::4")),
                (n("ns.other.example."), ip("192.0.2.1")),
            ],
            300,
            2026010100,
        )
    }

    #[test]
    fn new_zone_has_soa_ns_and_in_zone_glue() {
        let z = carrier();
        assert_eq!(z.origin, n("5.5.5.1.e164.mimi.arpa."));
        let soa = z.soa().unwrap();
        assert_eq!(soa.mname, n("ns1.5.5.5.1.e164.mimi.arpa."));
        assert_eq!(soa.rname, n("hostmaster.5.5.5.1.e164.mimi.arpa."));
        assert_eq!(
            (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            (2026010100, 3600, 600, 1_209_600, 300)
        );
        assert!(z.records.iter().all(|r| r.ttl == 300 && r.line == 0));
        let ns: Vec<&Name> = z
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::Ns(t) if r.name == z.origin => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(ns.len(), 3);
        let addresses: Vec<(String, RData)> = z
            .records
            .iter()
            .filter(|r| matches!(r.data.rtype(), TYPE_A | TYPE_AAAA))
            .map(|r| (r.name.to_string(), r.data.clone()))
            .collect();
        assert_eq!(
            addresses,
            [
                (
                    "ns1.5.5.5.1.e164.mimi.arpa.".to_string(),
                    RData::A("127.0.0.4".parse().unwrap())
                ),
                (
                    "ns2.5.5.5.1.e164.mimi.arpa.".to_string(),
                    RData::Aaaa("::4".parse().unwrap())
                ),
            ],
            "no glue for the out-of-zone name server"
        );
        // Without name servers the origin is the MNAME.
        let bare = ZoneFile::new_zone(n("x."), &[], 60, 1);
        assert_eq!(bare.soa().unwrap().mname, n("x."));
        assert_eq!(bare.records.len(), 1);
    }

    #[test]
    fn set_delegation_replaces_ns_and_glue() {
        let mut z = ZoneFile::new_zone(
            n("mimi.arpa."),
            &[(n("ns1.mimi.arpa."), ip("127.53.0.1"))],
            3600,
            1,
        );
        let child = n("e164.mimi.arpa.");
        z.set_delegation(
            &child,
            &[
                (n("ns1.e164.mimi.arpa."), ip("127.53.0.2")),
                (n("ns2.e164.mimi.arpa."), ip("fd00::2")),
                // In the zone, outside the child: its address is zone data, shared.
                (n("ns1.mimi.arpa."), ip("127.53.0.1")),
            ],
            600,
        );
        let before = rrs(&z);
        assert!(before.contains(&(
            "e164.mimi.arpa.".into(),
            TYPE_NS,
            n("ns2.e164.mimi.arpa.").as_wire().to_vec()
        )));
        assert!(before.contains(&("ns1.e164.mimi.arpa.".into(), TYPE_A, vec![127, 53, 0, 2])));
        assert_eq!(
            before
                .iter()
                .filter(|r| r.0 == "ns1.mimi.arpa." && r.1 == TYPE_A)
                .count(),
            1,
            "glue that already exists is not added twice"
        );

        // Re-delegating replaces the NS set and drops glue no NS uses any more.
        z.set_delegation(&child, &[(n("ns3.e164.mimi.arpa."), ip("127.53.0.3"))], 600);
        let after = rrs(&z);
        let child_ns: Vec<_> = after
            .iter()
            .filter(|r| r.0 == "e164.mimi.arpa." && r.1 == TYPE_NS)
            .collect();
        assert_eq!(child_ns.len(), 1);
        assert!(!after.iter().any(|r| r.0.contains("ns1.e164")));
        assert!(!after.iter().any(|r| r.0.contains("ns2.e164")));
        assert!(after.contains(&("ns3.e164.mimi.arpa.".into(), TYPE_A, vec![127, 53, 0, 3])));
        // The apex name server's address stays: the apex NS still uses it.
        assert!(after.contains(&("ns1.mimi.arpa.".into(), TYPE_A, vec![127, 53, 0, 1])));
        // Other delegations are untouched.
        z.set_delegation(
            &n("email.mimi.arpa."),
            &[(n("ns1.email.mimi.arpa."), ip("127.53.0.6"))],
            600,
        );
        z.set_delegation(&child, &[(n("ns3.e164.mimi.arpa."), ip("127.53.0.3"))], 600);
        assert!(rrs(&z).contains(&("ns1.email.mimi.arpa.".into(), TYPE_A, vec![127, 53, 0, 6])));
        assert_eq!(
            rrs(&z)
                .iter()
                .filter(|r| r.0 == "ns3.e164.mimi.arpa.")
                .count(),
            1
        );
    }

    #[test]
    fn next_seq_put_and_remove() {
        let mut z = carrier();
        let (chat, talk) = (key("chat.example.", 1), key("talk.example.", 2));
        let owner = n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.");
        let other = n("3.3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa.");
        assert_eq!(z.next_seq(&owner, &chat.provider), 1);
        z.put_ssi(owner.clone(), 60, ssi(&owner, &chat, 1, "a"));
        assert_eq!(z.next_seq(&owner, &chat.provider), 2);
        assert_eq!(z.next_seq(&owner, &talk.provider), 1);
        assert_eq!(z.next_seq(&other, &chat.provider), 1);

        // Same (owner, provider): replaced.
        z.put_ssi(owner.clone(), 60, ssi(&owner, &chat, 2, "b"));
        assert_eq!(z.mappings().count(), 1);
        assert_eq!(
            z.mappings().next().unwrap().1.uri,
            "mimi://chat.example/u/b"
        );
        assert_eq!(z.next_seq(&owner, &chat.provider), 3);
        // Another provider or owner: added.
        z.put_ssi(owner.clone(), 60, ssi(&owner, &talk, 1, "b"));
        z.put_ssi(other.clone(), 60, ssi(&other, &chat, 1, "c"));
        assert_eq!(z.mappings().count(), 3);

        let index = z.mapping_index();
        assert_eq!(index.len(), 3);
        let i = index[&(owner.as_wire().into(), talk.provider.as_wire().into())];
        assert!(matches!(&z.records[i].data, RData::Ssi(s) if s.provider == talk.provider));

        assert_eq!(z.remove_ssi(&owner, Some(&talk.provider)), 1);
        assert_eq!(z.remove_ssi(&owner, Some(&talk.provider)), 0);
        assert_eq!(z.mappings().count(), 2);
        z.put_ssi(owner.clone(), 60, ssi(&owner, &talk, 1, "b"));
        assert_eq!(z.remove_ssi(&owner, None), 2);
        assert_eq!(z.remove_ssi(&owner, None), 0);
        let left: Vec<&Name> = z.mappings().map(|(r, _)| &r.name).collect();
        assert_eq!(left, [&other]);
        // SOA, NS and glue are never touched.
        assert_eq!(z.records.len(), 1 + 3 + 2 + 1);
    }

    #[test]
    fn put_apkey_replaces_the_same_key_only() {
        let mut z = ZoneFile::new_zone(
            n("mimi.arpa."),
            &[(n("ns1.mimi.arpa."), ip("127.53.0.1"))],
            3600,
            1,
        );
        let owner = n("chat.example.ap.mimi.arpa.");
        let k1 = key("chat.example.", 1).verifying_key();
        let k2 = key("chat.example.", 2).verifying_key();
        z.put_apkey(owner.clone(), 60, ApKey::new(&k1, T2026, T2026 + 10));
        z.put_apkey(owner.clone(), 60, ApKey::new(&k1, T2026, T2026 + 20));
        let keys = |z: &ZoneFile| -> Vec<ApKey> {
            z.records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::ApKey(k) if r.name == owner => Some((**k).clone()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(keys(&z), [ApKey::new(&k1, T2026, T2026 + 20)]);
        // A second key (rollover) is published next to the first.
        z.put_apkey(owner.clone(), 60, ApKey::new(&k2, T2026, T2026 + 30));
        assert_eq!(keys(&z).len(), 2);
    }

    #[test]
    fn bump_serial_increments_and_wraps() {
        let mut z = carrier();
        z.bump_serial();
        assert_eq!(z.soa().unwrap().serial, 2026010101);
        if let RData::Soa(s) = &mut z.records[0].data {
            s.serial = u32::MAX;
        }
        z.bump_serial();
        assert_eq!(z.soa().unwrap().serial, 1, "0 is skipped");
        // An SOA away from the origin is not the zone's.
        let mut odd = ZoneFile::from_str_named(
            "$ORIGIN x.\n$TTL 1\n@ SOA a b 5 1 1 1 1\nsub SOA a b 7 1 1 1 1\n",
            "t",
            None,
        )
        .unwrap();
        odd.bump_serial();
        let serials: Vec<u32> = odd
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::Soa(s) => Some(s.serial),
                _ => None,
            })
            .collect();
        assert_eq!(serials, [6, 7]);
    }
}
