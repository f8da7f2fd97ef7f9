//! Release and porting (DESIGN 8.2, docs/lifecycle.md) on loopback, through `mimi zone
//! release / port-out / port-in` and a resolver: a release on a file and on a live DP
//! (the operator's TSIG key) removes the mappings, refuses a re-claim verified before it,
//! also after a restart, and accepts a newer one; the four porting cases of
//! draft-rosenberg section 10 resolve as the draft says; the operator's UPDATE refuses
//! what it does not do.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use mimi_discovery::name::Name;
use mimi_discovery::publish::{publish, PublishError, SignedMapping};
use mimi_discovery::record::{Context, ProviderKey, Ssi};
use mimi_discovery::resolver::{Outcome, Resolver};
use mimi_discovery::tsig::{KeyFileFormat, TsigKey};

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 71;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";

struct Fx {
    tree: Tree,
    keys: Keys,
    /// Update keys at the donor (.2) for chat and at the recipient (.3) for talk.
    chat: TsigKey,
    talk: TsigKey,
    /// Key file of the operator (of the donor and the recipient alike).
    op_file: std::path::PathBuf,
    /// The recipient's zone directory.
    zone_dir: std::path::PathBuf,
    _keydir: tempfile::TempDir,
}

/// A root (.1) delegating the carrier block to the donor (.2), which holds chat's
/// mapping for each of `numbers`; a recipient DP (.3) serving a placeholder zone, to which
/// ported numbers are added.
async fn fixture(t: u8, numbers: &[&str]) -> Fx {
    let keys = Keys::new();
    let (root, mut carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    for s in numbers.iter().filter(|s| **s != ALICE) {
        let o = owner(s);
        carrier.put_ssi(
            o.clone(),
            3600,
            mapping(&keys.chat, &o, "user", Context::Any, 10),
        );
    }
    let keydir_guard = tempfile::tempdir().unwrap();
    let keydir = keydir_guard.path().to_path_buf();
    let chat = TsigKey::generate(n("chat-key."));
    let talk = TsigKey::generate(n("talk-key."));
    let op = TsigKey::generate(n("operator-key."));
    let file = |name: &str, k: &TsigKey| {
        let p = keydir.join(name);
        k.save_new(&p, KeyFileFormat::Bind).unwrap();
        p.display().to_string()
    };
    let (cp, tp, op_file) = (
        file("chat.tsig", &chat),
        file("talk.tsig", &talk),
        file("op.tsig", &op),
    );
    let mut donor = spec(carrier, &[2]);
    donor.config_extra = format!(
        "[[update]]\nprovider = \"chat.example.\"\ntsig = {cp:?}\n[[operator]]\ntsig = {op_file:?}\n"
    );
    // The recipient starts with a zone of its own (a placeholder block elsewhere).
    let placeholder = mimi_discovery::zone::ZoneFile::new_zone(
        n("6.6.6.1.e164.mimi.arpa."),
        &[(n("ns1.6.6.6.1.e164.mimi.arpa."), ip(t, 3))],
        3600,
        1,
    );
    let mut recipient = spec(placeholder, &[3]);
    // Ported numbers arrive in its zone directory.
    let zone_dir = keydir.join("zones.d");
    std::fs::create_dir(&zone_dir).unwrap();
    recipient.config_extra = format!(
        "[[update]]\nprovider = \"talk.example.\"\ntsig = {tp:?}\n[[operator]]\ntsig = {op_file:?}\n[zone_directory]\npath = {:?}\nscan_interval_ms = 100\n",
        zone_dir.display().to_string()
    );
    let tree = Tree::start(
        t,
        &keys.trust_toml(),
        vec![spec(root, &[1]), donor, recipient],
    )
    .await;
    Fx {
        tree,
        keys,
        chat,
        talk,
        op_file: op_file.into(),
        zone_dir,
        _keydir: keydir_guard,
    }
}

impl Fx {
    async fn mimi(&self, args: &[&str]) -> (i32, String, String) {
        mimi(self.tree.dir.path(), args).await
    }

    fn dp(&self, x: u8) -> String {
        self.tree.addr(x).to_string()
    }

    /// Ports `number` from the donor (live, by the operator's UPDATE) to the recipient (a
    /// zone file from the hand-over, dropped into its zone directory).
    async fn port(&self, number: &str) {
        let t = self.tree.t;
        let o = owner(number);
        let handover = self.tree.path(&format!("{o}handover"));
        let ns = format!("ns1.{o}={}", ip(t, 3));
        let op = self.op_file.display().to_string();
        let (code, out, err) = self
            .mimi(&[
                "zone",
                "port-out",
                "--dp",
                &self.dp(2),
                "--zone",
                CARRIER,
                "--tsig",
                &op,
                "--sii",
                number,
                "--ns",
                &ns,
                "--out",
                handover.to_str().unwrap(),
            ])
            .await;
        assert_eq!(code, 0, "port-out: {out}{err}");
        assert!(out.starts_with(&format!("ported out {o}: ")), "{out}");
        let (code, out, err) = self
            .mimi(&[
                "zone",
                "port-in",
                "--sii",
                number,
                "--mappings",
                handover.to_str().unwrap(),
                "--ns",
                &ns,
                "--out",
                self.zone_dir.to_str().unwrap(),
            ])
            .await;
        assert_eq!(code, 0, "port-in: {out}{err}");
        // The recipient's next scan of its directory serves the new zone.
        let start = std::time::Instant::now();
        while self.tree.server(3).shared().zones.load().get(&o).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{o} not served from the zone directory"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn publish(
        &self,
        x: u8,
        zone: &str,
        key: &TsigKey,
        owner: &Name,
        ssi: Ssi,
    ) -> Result<(), PublishError> {
        let signed = SignedMapping {
            owner: owner.clone(),
            ttl: 3600,
            ssi,
        };
        publish(self.tree.addr(x), &n(zone), key, &[signed])
            .await
            .map(|_| ())
    }
}

async fn uris_of(r: &Resolver, s: &str) -> Vec<String> {
    let result = r.lookup(&sii(s), Some(Context::Any)).await.unwrap();
    match result.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        Outcome::NotDiscoverable(_) => Vec::new(),
    }
}

/// A mapping of `key`'s provider verified at `verified_at`, with a fresh seq.
fn verified(key: &ProviderKey, owner: &Name, who: &str, verified_at: u64, priority: u16) -> Ssi {
    let mut s = mapping(key, owner, who, Context::Any, priority);
    s.verified_at = verified_at;
    s.not_before = verified_at;
    s.seq = mimi_discovery::publish::now_ms();
    s.sign(owner, &key.signing);
    s
}

fn refused_for(r: Result<(), PublishError>, what: &str) {
    match r {
        Err(PublishError::Refused(refusal)) => {
            let text = refusal.to_string();
            assert!(text.contains(what), "{text}");
        }
        other => panic!("expected a refusal naming {what:?}, got {other:?}"),
    }
}

fn markers(zone_file: &Path) -> String {
    std::fs::read_to_string(mimi_discovery::zone::release::path_for(zone_file)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_the_zone_file_refuses_an_older_reclaim_and_accepts_a_newer_one() {
    bounded(async {
        let fx = fixture(1, &[]).await;
        let alice = owner(ALICE);
        assert_eq!(
            uris_of(&fx.tree.resolver(), ALICE).await,
            [uri(&fx.keys.chat, "alice")]
        );
        // The authority released the number an hour ago; the file learns it now.
        let at = now() - 3600;
        let file = fx.tree.files[1].clone();
        let (code, out, err) = fx
            .mimi(&[
                "zone",
                "release",
                file.to_str().unwrap(),
                "--sii",
                ALICE,
                "--at",
                &at.to_string(),
            ])
            .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.starts_with(&format!("released {alice}: removed 1 mapping(s)")),
            "{out}"
        );
        assert!(markers(&file).contains(&alice.to_string()));
        assert!(fx.tree.server(2).reload().await.unwrap().is_empty());
        assert!(
            uris_of(&fx.tree.resolver(), ALICE).await.is_empty(),
            "released"
        );
        // chat re-claims with its verification from before the release: refused.
        let stale = verified(&fx.keys.chat, &alice, "alice", now() - 86400, 10);
        refused_for(
            fx.publish(2, CARRIER, &fx.chat, &alice, stale).await,
            "released",
        );
        // A hand edit putting an old mapping back is refused at load too.
        let mut z = mimi_discovery::zone::ZoneFile::load(&file).unwrap();
        z.put_ssi(
            alice.clone(),
            3600,
            verified(&fx.keys.chat, &alice, "alice", now() - 7200, 10),
        );
        z.bump_serial();
        z.save(&file, mimi_discovery::zone::WriteStyle::Native)
            .unwrap();
        assert!(fx.tree.server(2).reload().await.unwrap().is_empty());
        assert!(
            uris_of(&fx.tree.resolver(), ALICE).await.is_empty(),
            "refused at load"
        );
        // The number's new holder, verified after the release: accepted.
        let fresh = verified(&fx.keys.chat, &alice, "new-holder", now() - 60, 10);
        fx.publish(2, CARRIER, &fx.chat, &alice, fresh)
            .await
            .unwrap();
        assert_eq!(
            uris_of(&fx.tree.resolver(), ALICE).await,
            [uri(&fx.keys.chat, "new-holder")]
        );
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_release_by_the_operator_goes_through_the_write_path_and_survives_a_restart() {
    bounded(async {
        let mut fx = fixture(2, &[]).await;
        let alice = owner(ALICE);
        let cached = fx.tree.resolver();
        assert_eq!(uris_of(&cached, ALICE).await, [uri(&fx.keys.chat, "alice")]);
        let serial = fx
            .tree
            .server(2)
            .shared()
            .zones
            .load()
            .get(&n(CARRIER))
            .unwrap()
            .store
            .soa()
            .serial;
        // An app provider's key cannot release.
        let chat_file = fx.tree.path("chat-as-operator.tsig");
        fx.chat.save_new(&chat_file, KeyFileFormat::Bind).unwrap();
        let (code, _, err) = fx
            .mimi(&[
                "zone",
                "release",
                "--dp",
                &fx.dp(2),
                "--zone",
                CARRIER,
                "--tsig",
                chat_file.to_str().unwrap(),
                "--sii",
                ALICE,
            ])
            .await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("RR deletions are refused"), "{err}");
        // The operator can.
        let op = fx.op_file.display().to_string();
        let (code, out, err) = fx
            .mimi(&[
                "zone",
                "release",
                "--dp",
                &fx.dp(2),
                "--zone",
                CARRIER,
                "--tsig",
                &op,
                "--sii",
                ALICE,
            ])
            .await;
        assert_eq!(code, 0, "{out}{err}");
        let zones = fx.tree.server(2).shared().zones.load();
        let zone = zones.get(&n(CARRIER)).unwrap();
        assert_eq!(
            zone.store.soa().serial,
            serial + 1,
            "one change, one serial"
        );
        assert!(
            uris_of(&fx.tree.resolver(), ALICE).await.is_empty(),
            "released"
        );
        assert!(
            markers(&fx.tree.files[1]).contains(&alice.to_string()),
            "marker on disk"
        );
        // Re-claims: verified before the release (an hour ago) refused, after accepted.
        let stale = verified(&fx.keys.chat, &alice, "alice", now() - 3600, 10);
        refused_for(
            fx.publish(2, CARRIER, &fx.chat, &alice, stale.clone())
                .await,
            "released",
        );
        // Across a restart (the zone file and journal as the writer left them).
        fx.tree.stop(2).await;
        fx.tree.restart(2).await;
        let mut again = stale;
        again.seq += 1;
        again.sign(&alice, &fx.keys.chat.signing);
        refused_for(
            fx.publish(2, CARRIER, &fx.chat, &alice, again).await,
            "released",
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let fresh = verified(&fx.keys.chat, &alice, "new-holder", now(), 10);
        fx.publish(2, CARRIER, &fx.chat, &alice, fresh)
            .await
            .unwrap();
        assert_eq!(
            uris_of(&fx.tree.resolver(), ALICE).await,
            [uri(&fx.keys.chat, "new-holder")]
        );
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_porting_cases_resolve_through_a_resolver() {
    bounded(async {
        // One number per case, each mapped by chat at the donor.
        let numbers = [
            "+1 555 111 2222",
            "+1 555 111 2223",
            "+1 555 111 2224",
            "+1 555 111 2225",
        ];
        let fx = fixture(3, &numbers).await;
        let (chat, talk) = (&fx.keys.chat, &fx.keys.talk);
        let o: Vec<Name> = numbers.iter().map(|s| owner(s)).collect();
        let who = |i: usize| if i == 0 { "alice" } else { "user" };
        for (i, s) in numbers.iter().enumerate() {
            assert_eq!(uris_of(&fx.tree.resolver(), s).await, [uri(chat, who(i))]);
        }
        // Case 3 and 4: the donor operator was the AP (chat): it withdraws before the port.
        for i in [2, 3] {
            fx.publish(2, CARRIER, &fx.chat, &o[i], tombstone(chat, &o[i]))
                .await
                .unwrap();
        }
        for s in &numbers {
            fx.port(s).await;
        }
        let before = fx.tree.queries(3);
        // Case 1: neither operator is an AP: the mapping moved unchanged and resolves.
        assert_eq!(
            uris_of(&fx.tree.resolver(), numbers[0]).await,
            [uri(chat, "alice")]
        );
        assert!(
            fx.tree.queries(3) > before,
            "answered by the recipient's DP"
        );
        // Case 2: the recipient operator is an AP (talk): it adds its mapping at the
        // recipient; the user's preference (priority) orders the two.
        let pz = o[1].to_string();
        fx.publish(
            3,
            &pz,
            &fx.talk,
            &o[1],
            verified(talk, &o[1], "two", now() - 60, 5),
        )
        .await
        .unwrap();
        assert_eq!(
            uris_of(&fx.tree.resolver(), numbers[1]).await,
            [uri(talk, "two"), uri(chat, "user")]
        );
        // Case 3: the donor AP withdrew: not discoverable, the tombstone moved along.
        assert!(uris_of(&fx.tree.resolver(), numbers[2]).await.is_empty());
        // Case 4: both: the donor AP withdrew, the recipient AP adds.
        let pz = o[3].to_string();
        fx.publish(
            3,
            &pz,
            &fx.talk,
            &o[3],
            verified(talk, &o[3], "four", now() - 60, 10),
        )
        .await
        .unwrap();
        assert_eq!(
            uris_of(&fx.tree.resolver(), numbers[3]).await,
            [uri(talk, "four")]
        );
        // The donor no longer answers for the numbers: it refers.
        let zones = fx.tree.server(2).shared().zones.load();
        let donor = zones.get(&n(CARRIER)).unwrap();
        for x in &o {
            assert!(matches!(
                donor.store.lookup(x.as_wire()),
                mimi_discovery::zone::Lookup::Referral { .. }
            ));
        }
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn porting_on_files_and_operator_refusals() {
    bounded(async {
        let fx = fixture(4, &[]).await;
        let t = 4;
        let alice = owner(ALICE);
        let file = fx.tree.files[1].clone();
        let handover = fx.tree.path("handover.zone");
        let ns = format!("ns1.{alice}={}", ip(t, 3));
        // Port-out on the donor's file: the mapping handed over, a delegation in its place.
        let (code, out, err) = fx
            .mimi(&[
                "zone",
                "port-out",
                file.to_str().unwrap(),
                "--sii",
                ALICE,
                "--ns",
                &ns,
                "--out",
                handover.to_str().unwrap(),
            ])
            .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("1 mapping(s) handed over"), "{out}");
        let z = mimi_discovery::zone::ZoneFile::load(&file).unwrap();
        assert!(z.mappings().all(|(r, _)| r.name != alice));
        assert!(z
            .records
            .iter()
            .any(|r| r.name == alice && matches!(r.data, mimi_discovery::zone::RData::Ns(_))));
        // The hand-over file refuses anything but SSI records of the number.
        let bad = fx.tree.path("bad.zone");
        std::fs::write(&bad, format!("$ORIGIN {alice}\n@ 3600 IN A 127.0.0.1\n")).unwrap();
        let (code, _, err) = fx
            .mimi(&[
                "zone",
                "port-in",
                "--sii",
                ALICE,
                "--mappings",
                bad.to_str().unwrap(),
                "--ns",
                &ns,
                "--out",
                fx.tree.path("x.zone").to_str().unwrap(),
            ])
            .await;
        assert_eq!(code, 2);
        assert!(
            err.contains("bad.zone:2: ") && err.contains("only SSI records"),
            "{err}"
        );
        // Port-in into a directory names the file after the zone.
        let dir = fx.tree.path("zones.d");
        std::fs::create_dir(&dir).unwrap();
        let (code, out, err) = fx
            .mimi(&[
                "zone",
                "port-in",
                "--sii",
                ALICE,
                "--mappings",
                handover.to_str().unwrap(),
                "--ns",
                &ns,
                "--out",
                dir.to_str().unwrap(),
            ])
            .await;
        assert_eq!(code, 0, "{out}{err}");
        let made = dir.join("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.zone");
        let z = mimi_discovery::zone::ZoneFile::load(&made).unwrap();
        assert_eq!(z.origin, alice);
        assert_eq!(z.mappings().count(), 1);

        // The operator's UPDATE refuses what it does not do.
        let op = fx.op_file.display().to_string();
        let (code, _, err) = fx
            .mimi(&[
                "zone",
                "release",
                "--dp",
                &fx.dp(2),
                "--zone",
                CARRIER,
                "--tsig",
                &op,
                "--sii",
                "+44 20 7946 0000",
            ])
            .await;
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("NOTZONE") || err.contains("outside the zone"),
            "{err}"
        );
        // A glue record alone, no delegation.
        let mut rec = hickory_proto::rr::Record::from_rdata(
            hn(&format!("ns9.{alice}")),
            3600,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(127, 0, 0, 9)),
        );
        rec.dns_class = hickory_proto::rr::DNSClass::IN;
        let op_key = TsigKey::load(&fx.op_file).unwrap();
        let mut p =
            mimi_discovery::publish::Publisher::new(fx.tree.addr(2), n(CARRIER), op_key.clone());
        let e = p.send_raw(&[rec]).await.unwrap_err();
        assert!(e.to_string().contains("only as glue"), "{e}");
        // Taking back a delegation that does not exist.
        let e = p
            .send_raw(&mimi_discovery::operate::undelegation_update(&alice))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not delegated"), "{e}");
        // Delegate live, then take it back: the mapping is gone with the port.
        p.send_raw(&mimi_discovery::operate::delegation_update(
            &alice,
            &[(n(&format!("ns1.{alice}")), ip(t, 3))],
            3600,
        ))
        .await
        .unwrap();
        p.send_raw(&mimi_discovery::operate::undelegation_update(&alice))
            .await
            .unwrap();
        let zones = fx.tree.server(2).shared().zones.load();
        let zone = zones.get(&n(CARRIER)).unwrap();
        assert!(matches!(
            zone.store.lookup(alice.as_wire()),
            mimi_discovery::zone::Lookup::NxDomain
        ));
        fx.tree.shutdown().await;
    })
    .await
}
