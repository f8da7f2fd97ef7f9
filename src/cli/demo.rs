//! `mimi demo`: the demo tree from zones/ on loopback, a resolver, and lookups that show
//! each case.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::dnssec::{DnssecKey, FLAGS_CSK};
use crate::dp::{DpError, DpServer};
use crate::name::Name;
use crate::record::{Context, ProviderKey, TrustStore};
use crate::resolver::{Outcome, ResolveError, Resolver, ResolverConfig};
use crate::sii::Sii;
use crate::tsig::TsigKey;
use crate::zone::{RData, WriteStyle, ZoneFile};

/// One DP of the demo tree: zone file, origin, and the loopback addresses serving it
/// (the glue in zones/*.zone).
/// The zones served signed (DNSSEC): the apex, whose DS is the resolvers' trust anchor,
/// and the number chain.
const SIGNED_ZONES: [&str; 4] = [
    "mimi.arpa.",
    "e164.mimi.arpa.",
    "1.e164.mimi.arpa.",
    "5.5.5.1.e164.mimi.arpa.",
];

fn dnssec_key_path(work: &Path, origin: &str) -> PathBuf {
    work.join(format!("{origin}dnssec"))
}

const TREE: &[(&str, &str, &[&str])] = &[
    ("root.zone", "mimi.arpa.", &["127.53.0.1"]),
    ("e164.zone", "e164.mimi.arpa.", &["127.53.0.2"]),
    ("1.e164.zone", "1.e164.mimi.arpa.", &["127.53.0.3"]),
    (
        "5.5.5.1.e164.zone",
        "5.5.5.1.e164.mimi.arpa.",
        &["127.53.0.4", "127.53.0.14"],
    ),
    ("4.4.e164.zone", "4.4.e164.mimi.arpa.", &["127.53.0.5"]),
    ("email.zone", "email.mimi.arpa.", &["127.53.0.6"]),
    (
        "example.com.email.zone",
        "example.com.email.mimi.arpa.",
        &["127.53.0.7"],
    ),
];
const CARRIER: &str = "5.5.5.1.e164.zone";
/// The TSIG key name chat.example publishes with in the demo.
const DEMO_TSIG: &str = "chat-example-demo.";
/// The number the demo publishes live, and to whom.
const LIVE_SII: &str = "+1 555 111 7777";
/// The TSIG key name of the carrier's operator (releases and ports).
const DEMO_OPERATOR_TSIG: &str = "carrier-operator-demo.";
/// The TSIG key name talk.example publishes with at the recipient carrier.
const DEMO_TALK_TSIG: &str = "talk-example-demo.";
/// The number the carrier's operator releases.
const RELEASED_SII: &str = "+1 (555) 111-2222";
/// The recipient carrier's DP, to which the live number is ported.
const RECIPIENT_DP: &str = "127.53.0.8";
/// The TSIG key name of the resolver's subscription to the carrier zone.
const DEMO_SUB_TSIG: &str = "resolver-sub-demo.";
/// The carrier DP that notifies the resolver, and where the resolver takes NOTIFY.
const CARRIER_DP: &str = "127.53.0.4";
/// The TSIG key of walker.example, the provider whose enumeration the carrier's quota
/// stops, and that quota.
const DEMO_WALKER_TSIG: &str = "walker-example-demo.";
const WALKER_QUOTA: u32 = 20;
const RESOLVER_ADDR: &str = "127.53.0.53";

/// The zones directory: --zones, ./zones, or the one in the source tree.
fn zones_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let candidates = match given {
        Some(d) => vec![d],
        None => vec![
            PathBuf::from("zones"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"),
        ],
    };
    candidates
        .into_iter()
        .find(|d| d.join("root.zone").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("no demo zones found (looked for zones/root.zone); pass --zones DIR")
        })
}

/// Adds the records a misbehaving DP might serve: a forged mapping (another mapping's
/// record with its URI changed) and one signed by a provider the resolver does not trust.
fn add_bad_records(carrier: &mut ZoneFile, apex: &Name) -> anyhow::Result<()> {
    let alice = Sii::parse("+1 555 111 2222", None)?.owner_name(apex)?;
    let template = carrier
        .records
        .iter()
        .find_map(|r| match &r.data {
            RData::Ssi(s) if r.name == alice => Some((**s).clone()),
            _ => None,
        })
        .context("the carrier zone has no mapping for +1 555 111 2222")?;
    let mut forged = template.clone();
    forged.uri = "mimi://chat.example/u/mallory".into();
    carrier.put_ssi(
        Sii::parse("+1 555 111 4444", None)?.owner_name(apex)?,
        3600,
        forged,
    );

    let rogue = ProviderKey::generate(Name::parse("evil.example.", None)?);
    let owner = Sii::parse("+1 555 111 6666", None)?.owner_name(apex)?;
    let mut untrusted = template;
    untrusted.provider = rogue.provider.clone();
    untrusted.uri = "mimi://evil.example/u/eve".into();
    untrusted.sign(&owner, &rogue.signing);
    carrier.put_ssi(owner, 3600, untrusted);
    Ok(())
}

/// The demo's DNS over TLS: a deployment CA, the DoT port every DP listens on, and the
/// client certificate chat.example's resolver presents (its pin is in the carrier's
/// `[[client]]` entry).
struct DemoTls {
    ca: crate::tls::Issued,
    port: u16,
    client: crate::tls::ClientIdentity,
}

impl DemoTls {
    fn new(port: u16) -> anyhow::Result<DemoTls> {
        let now = crate::sys::unix_now();
        let ca = crate::tls::make_ca("mimi demo CA", now - 60, now + 86400)?;
        let client = crate::tls::issue(
            &ca,
            &["resolver.chat.example".into()],
            now - 60,
            now + 86400,
        )?;
        Ok(DemoTls {
            client: crate::tls::ClientIdentity::from_pem(&client)?,
            ca,
            port,
        })
    }

    /// The `[tls]` section of the DP at `addr`, with a certificate for its address.
    fn dp_section(&self, work: &Path, addr: &str) -> anyhow::Result<String> {
        let now = crate::sys::unix_now();
        let cert = crate::tls::issue(&self.ca, &[addr.to_string()], now - 60, now + 86400)?;
        let (c, k) = (
            work.join(format!("dot-{addr}.pem")),
            work.join(format!("dot-{addr}.key")),
        );
        std::fs::write(&c, &cert.cert_pem)?;
        std::fs::write(&k, &cert.key_pem)?;
        Ok(format!(
            "[tls]\nlisten = [\"{addr}:{}\"]\ncert = {:?}\nkey = {:?}\n",
            self.port,
            c.display().to_string(),
            k.display().to_string()
        ))
    }
}

async fn start_tree(
    zones: &Path,
    work: &Path,
    port: u16,
    tls: &DemoTls,
    apex: &Name,
) -> anyhow::Result<Vec<(String, DpServer)>> {
    let trust = std::fs::canonicalize(zones.join("trust.toml")).context("zones/trust.toml")?;
    let mut servers = Vec::new();
    let tsig = work.join("chat.tsig");
    TsigKey::generate(Name::parse(DEMO_TSIG, None)?)
        .save_new(&tsig, crate::tsig::KeyFileFormat::Bind)?;
    for (file, name) in [
        ("operator.tsig", DEMO_OPERATOR_TSIG),
        ("talk.tsig", DEMO_TALK_TSIG),
        ("walker.tsig", DEMO_WALKER_TSIG),
    ] {
        TsigKey::generate(Name::parse(name, None)?)
            .save_new(work.join(file), crate::tsig::KeyFileFormat::Bind)?;
    }
    let sub = work.join("resolver-sub.tsig");
    TsigKey::generate(Name::parse(DEMO_SUB_TSIG, None)?)
        .save_new(&sub, crate::tsig::KeyFileFormat::Bind)?;
    // The number chain is served signed (DNSSEC), a key per zone; each parent holds its
    // child's DS.
    let mut dnssec_keys = Vec::new();
    for origin in SIGNED_ZONES {
        let key = DnssecKey::generate(Name::parse(origin, None)?, FLAGS_CSK);
        let path = dnssec_key_path(work, origin);
        key.save_new(&path)?;
        dnssec_keys.push((path, key));
    }
    for (file, origin, addrs) in TREE {
        let source = zones.join(file);
        let mut z = ZoneFile::load(&source).with_context(|| source.display().to_string())?;
        for (_, key) in &dnssec_keys {
            // The DS goes to the closest enclosing zone of the tree.
            let parent = TREE
                .iter()
                .filter_map(|(_, o, _)| Name::parse(o, None).ok())
                .filter(|o| *o != key.zone && key.zone.is_subdomain_of(o))
                .max_by_key(|o| o.as_wire().len());
            if parent.as_ref() == Some(&z.origin) {
                z.records.push(crate::zone::Record {
                    name: key.zone.clone(),
                    ttl: 3600,
                    data: RData::Unknown {
                        rtype: crate::dnssec::TYPE_DS,
                        data: key.ds_rdata().into_boxed_slice(),
                    },
                    line: 0,
                });
            }
        }
        let dnssec = dnssec_keys
            .iter()
            .find(|(_, k)| k.zone == z.origin)
            .map(|(path, _)| format!("dnssec_key = {:?}\n", path.display().to_string()))
            .unwrap_or_default();
        let mut extra = String::new();
        if *file == CARRIER {
            add_bad_records(&mut z, apex)?;
            // This DP plays a misbehaving one, so the resolver's own checks show; the app
            // provider chat.example may publish to it live.
            // Its operator may release and port numbers. walker.example, known by its
            // TSIG key, may make WALKER_QUOTA lookups a day.
            // chat.example's resolver is known by its client certificate.
            extra = format!(
                "serve_invalid_records = true\n[[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n[[operator]]\ntsig = {:?}\n[[client]]\nprovider = \"walker.example.\"\ntsig = {:?}\nlookups_per_day = {WALKER_QUOTA}\nburst = {WALKER_QUOTA}\n[[client]]\nprovider = \"chat.example.\"\nspki = [{:?}]\nlookups_per_day = 1000000\n",
                tsig.display().to_string(),
                work.join("operator.tsig").display().to_string(),
                work.join("walker.tsig").display().to_string(),
                tls.client.pin()?
            );
        }
        let listen: Vec<String> = addrs.iter().map(|a| format!("\"{a}:{port}\"")).collect();
        for (i, addr) in addrs.iter().enumerate() {
            // The carrier's first DP tells the demo's resolver of every change.
            let subscriber = if *file == CARRIER && *addr == CARRIER_DP {
                format!(
                    "[[subscriber]]\naddress = \"{RESOLVER_ADDR}:{port}\"\ntsig = {:?}\n",
                    sub.display().to_string()
                )
            } else {
                String::new()
            };
            // One DP process per address, as separate operators would run them, each with
            // its own copy of the zone (the DP keeps a journal beside it and rewrites it);
            // each offers private lookups too.
            let zone_path = work.join(format!("{i}-{file}"));
            z.save(&zone_path, WriteStyle::Native)?;
            // Private lookups use Respire, the default. In a build with MulPIR (`--features
            // mulpir`) the email DP uses it, so the private rows run through both schemes (the
            // resolver takes whichever PIRCFG names). The number zones also take Respire batch
            // queries (contact syncs).
            let (scheme, batch) = if file.ends_with("email.zone") {
                (
                    if crate::pir::Scheme::MulPir.built() {
                        "mulpir"
                    } else {
                        "respire"
                    },
                    "",
                )
            } else {
                ("respire", "batch_lookups = 8\n")
            };
            let config = work.join(format!("{origin}{i}.toml"));
            let dot = tls.dp_section(work, addr)?;
            std::fs::write(
                &config,
                format!(
                    "listen = [{}]\ntrust = {:?}\n{extra}{subscriber}{dot}[[zone]]\norigin = \"{origin}\"\nfile = {:?}\n{dnssec}[pir]\nscheme = \"{scheme}\"\n{batch}threads = 1\n",
                    listen[i],
                    trust.display().to_string(),
                    zone_path.display().to_string()
                ),
            )?;
            let server = DpServer::start(&config).await?;
            servers.push((addrs[i].to_string(), server));
        }
    }
    Ok(servers)
}

/// A resolver of the demo tree: roots at 127.53.0.1, short timeouts, no retries (the DPs
/// are local).
fn resolver_config(zones: &Path, port: u16, apex: &Name) -> ResolverConfig {
    let mut config = ResolverConfig::new(
        vec![IpAddr::from([127, 53, 0, 1])],
        port,
        zones.join("trust.toml"),
    );
    config.apex = apex.clone();
    config.limits.timeout = Duration::from_millis(300);
    config.limits.retries = 0;
    config
}

fn free_port() -> anyhow::Result<u16> {
    let s = std::net::UdpSocket::bind("127.53.0.1:0")?;
    Ok(s.local_addr()?.port())
}

struct Row {
    what: &'static str,
    sii: &'static str,
    context: Option<Context>,
}

pub fn run(zones: Option<PathBuf>, apex: &Name, serve: bool) -> anyhow::Result<u8> {
    let zones = zones_dir(zones)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(&zones, apex, serve))
}

async fn demo(zones: &Path, apex: &Name, serve: bool) -> anyhow::Result<u8> {
    let work = tempfile_dir()?;
    // Every DP of a deployment listens on one port; find one free on all the addresses.
    let mut attempt = 0;
    let (port, tls, mut servers) = loop {
        attempt += 1;
        let port = free_port()?;
        let tls = DemoTls::new(free_port()?)?;
        match start_tree(zones, &work, port, &tls, apex).await {
            Ok(s) => break (port, tls, s),
            Err(e)
                if attempt < 10
                    && e.downcast_ref::<DpError>()
                        .is_some_and(|d| matches!(d, DpError::Bind { .. })) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    };
    println!(
        "mimi demo: {} DP servers for {} zones on 127.53.0.x port {port}, DNS over TLS on port {} (zones from {})",
        servers.len(),
        TREE.len(),
        tls.port,
        zones.display()
    );
    println!("The carrier DP (5.5.5.1.e164.mimi.arpa.) is set to serve invalid records too, so the resolver's checks show.\n");

    let trust = TrustStore::load(zones.join("trust.toml"))?;
    let resolver = Resolver::new(resolver_config(zones, port, apex), trust);
    // The resolver follows the carrier zone: its first DP sends NOTIFY, the resolver asks
    // CHANGES and drops what changed (docs/invalidation.md).
    let carrier_zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None)?;
    resolver.invalidation.subscribe(
        carrier_zone.clone(),
        std::net::SocketAddr::new(CARRIER_DP.parse()?, port),
        TsigKey::load(work.join("resolver-sub.tsig"))?,
    );
    let resolver = Arc::new(resolver);
    let notify_at = std::net::SocketAddr::new(RESOLVER_ADDR.parse()?, port);
    let (mut listener, _) = crate::resolver::invalidate::listen(resolver.clone(), &[notify_at])
        .await
        .with_context(|| format!("NOTIFY listener on {notify_at}"))?;
    crate::resolver::invalidate::start(&resolver).await;

    let rows: [Row; 13] = [
        Row {
            what: "one provider",
            sii: "+1 (555) 111-2222",
            context: None,
        },
        Row {
            what: "two providers",
            sii: "+1 555 111 3333",
            context: None,
        },
        Row {
            what: "business only",
            sii: "+1 555 111 3333",
            context: Some(Context::Business),
        },
        Row {
            what: "personal only",
            sii: "+1 555 111 3333",
            context: Some(Context::Personal),
        },
        Row {
            what: "country DP",
            sii: "+1 202 555 0100",
            context: None,
        },
        Row {
            what: "second country",
            sii: "+44 20 7946 0000",
            context: None,
        },
        Row {
            what: "email",
            sii: "Hugh@Example.com",
            context: None,
        },
        Row {
            what: "unknown number",
            sii: "+1 555 111 0000",
            context: None,
        },
        Row {
            what: "unknown email",
            sii: "nobody@example.com",
            context: None,
        },
        Row {
            what: "forged record",
            sii: "+1 555 111 4444",
            context: None,
        },
        Row {
            what: "untrusted provider",
            sii: "+1 555 111 6666",
            context: None,
        },
        Row {
            what: "expired record",
            sii: "+1 555 111 9999",
            context: None,
        },
        Row {
            what: "cached repeat",
            sii: "+1 (555) 111-2222",
            context: None,
        },
    ];
    println!(
        "{:<19} {:<20} {:<9} {:<16} {:<60} {:<18} {:>3} {:>8}",
        "case", "identifier", "context", "result", "mappings / reason", "answered by", "q", "time"
    );
    let mut failures = 0;
    for row in &rows {
        failures += lookup_row(&resolver, row.what, row.sii, row.context).await?;
    }
    // Private lookups: the DPs see the zone and a shard number, never the identifier. The
    // number zones answer through Respire, the email zones through MulPIR (start_tree).
    for (what, sii) in [
        ("private: one prov.", "+1 (555) 111-2222"),
        ("private: two prov.", "+1 555 111 3333"),
        ("private (MulPIR)", "Hugh@Example.com"),
        ("private: unknown", "+1 555 111 0000"),
    ] {
        failures += private_row(&resolver, what, sii).await?;
    }
    // A contact sync of numbers without a replica: the number zones' DPs take Respire
    // batch queries, one query per PIR bucket for up to 8 lookups.
    let before = resolver.stats.pir_batches.load(Ordering::Relaxed);
    let numbers = [
        "+1 (555) 111-2222",
        "+1 555 111 3333",
        "+1 555 111 4444",
        "+1 555 111 0000",
    ];
    failures += sync_row(&resolver, &resolver, "batch: PIR queries", &numbers).await?;
    if resolver.stats.pir_batches.load(Ordering::Relaxed) == before {
        println!("  the contact sync sent no batch query");
        failures += 1;
    }
    // Encrypted replica: chat.example's resolver holds the carrier zone's slot table and
    // looks up there after one OPRF evaluation; other zones by PIR.
    let replica = replica_resolver(zones, &work, port, &tls, apex)?;
    failures += replica_rows(&resolver, &replica).await?;
    // Access classes: walker.example walks the carrier block as fast as it can, with
    // signed queries; the carrier's DP stops it at its quota while others are served.
    failures += access_row(&work, port, apex).await?;
    failures += burst_row(port, apex).await?;
    resolver.cache().clear();
    failures += lookup_row(&resolver, "access: others", "+1 555 111 3333", None).await?;
    failures += dot_row(zones, port, &tls, apex, &servers).await?;
    failures += dnssec_rows(zones, &work, port, apex).await?;
    // Live: the number is unknown (and cached so); chat.example publishes a mapping by
    // DNS UPDATE to the carrier's DP; the DP's NOTIFY makes the resolver drop its cached
    // "not discoverable", so the claim is found within a second, publicly and privately.
    failures += lookup_row(&resolver, "live: unknown yet", LIVE_SII, None).await?;
    failures += publish_row(zones, &work, port, apex, false).await?;
    failures += seen_row(
        &resolver,
        "live: claim seen",
        LIVE_SII,
        Want::Found("walk-in"),
    )
    .await?;
    failures += private_row(&resolver, "live: private", LIVE_SII).await?;
    failures += replica_live_row(&resolver, &replica).await?;
    // The rest of a number's life, each seen by the resolver that cached the old answer:
    // chat.example withdraws; the carrier's operator releases another number, after which
    // a re-claim verified before the release is refused; and the withdrawn number is
    // ported to another carrier whose own app (talk.example) then maps it (case 4 of
    // draft-rosenberg section 10).
    failures += publish_row(zones, &work, port, apex, true).await?;
    failures += seen_row(&resolver, "live: withdrawn", LIVE_SII, Want::Gone).await?;
    failures += lookup_row(&resolver, "release: before", RELEASED_SII, None).await?;
    failures += release_row(&work, port, apex).await?;
    failures += seen_row(&resolver, "release: seen", RELEASED_SII, Want::Gone).await?;
    failures += reclaim_row(zones, &work, port, apex).await?;
    let (failed, recipient) = port_row(zones, &work, port, apex).await?;
    failures += failed;
    if let Some(r) = recipient {
        servers.push((RECIPIENT_DP.to_string(), r));
    }
    failures += seen_row(
        &resolver,
        "port: seen",
        LIVE_SII,
        Want::Found("talk.example"),
    )
    .await?;
    // Failover: the carrier's first name server goes away; its second one answers.
    if let Some(i) = servers.iter().position(|(a, _)| a == "127.53.0.4") {
        let (_, primary) = servers.remove(i);
        primary.shutdown().await;
        resolver.cache().clear();
        failures += lookup_row(
            &resolver,
            "one NS down",
            "+1 555 111 3333",
            Some(Context::Personal),
        )
        .await?;
    }
    let _ = listener.shutdown_gracefully().await;
    println!();
    let served = match (failures, serve) {
        (0, true) => {
            serve_until_stopped(zones, &work, port, &tls, apex, resolver, &mut servers).await
        }
        _ => Ok(()),
    };
    for (_, s) in servers {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&work);
    if failures > 0 {
        bail!("{failures} demo lookup(s) did not give the expected result");
    }
    served?;
    if !serve {
        println!("All lookups behaved as expected. Try one yourself: mimi demo --serve");
    }
    Ok(0)
}

/// `mimi demo --serve`: the tree as the checks left it (the carrier's first DP back up),
/// the resolver answering over DNS and DNS over TLS at `RESOLVER_ADDR`, a resolver config
/// and the demo CA in the work directory; prints commands to try, and returns on Ctrl-C
/// or SIGTERM.
async fn serve_until_stopped(
    zones: &Path,
    work: &Path,
    port: u16,
    tls: &DemoTls,
    apex: &Name,
    resolver: Arc<Resolver>,
    servers: &mut Vec<(String, DpServer)>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    if !servers.iter().any(|(a, _)| a == CARRIER_DP) {
        let config = work.join(format!("{}0.toml", "5.5.5.1.e164.mimi.arpa."));
        servers.push((CARRIER_DP.to_string(), DpServer::start(&config).await?));
    }
    resolver.flush();
    let dns = std::net::SocketAddr::new(RESOLVER_ADDR.parse()?, port);
    let (mut plain, _) = crate::resolver::server::listen(resolver.clone(), &[dns])
        .await
        .with_context(|| format!("the resolver's DNS listener on {dns}"))?;
    let now = crate::sys::unix_now();
    let cert = crate::tls::issue(&tls.ca, &[RESOLVER_ADDR.to_string()], now - 60, now + 86400)?;
    let (cert_path, key_path, ca_path) = (
        work.join("resolver-dot.pem"),
        work.join("resolver-dot.key"),
        work.join("ca.pem"),
    );
    std::fs::write(&cert_path, &cert.cert_pem)?;
    std::fs::write(&key_path, &cert.key_pem)?;
    std::fs::write(&ca_path, &tls.ca.cert_pem)?;
    let dot = std::net::SocketAddr::new(RESOLVER_ADDR.parse()?, tls.port);
    let settings = crate::config::TlsSettings {
        listen: vec![dot],
        cert: cert_path,
        key: key_path,
    };
    let (dot_tasks, _) = crate::resolver::server::listen_tls(
        crate::resolver::server::ResolverHandler(resolver.clone()),
        &settings,
        crate::net::Limits::default(),
    )
    .await
    .with_context(|| format!("the resolver's DNS-over-TLS listener on {dot}"))?;
    // A resolver config for `mimi lookup --config`: the same tree, validated from the
    // apex's DS (DNSSEC), mappings checked against the demo's trust file.
    let zones = std::fs::canonicalize(zones)?;
    let anchor = DnssecKey::load(&dnssec_key_path(work, SIGNED_ZONES[0]))?;
    let ds_line = anchor.ds_line();
    let config = work.join("resolver.toml");
    std::fs::write(
        &config,
        format!(
            "# The demo tree's resolver (mimi demo --serve); docs/resolver.md.\napex = \"{apex}\"\nroots = [\"127.53.0.1\"]\nport = {port}\ntrust = {:?}\nlisten = [\"{dns}\"]\n[dnssec]\ntrust_anchor = [{ds_line:?}]\n",
            zones.join("trust.toml").display().to_string()
        ),
    )?;
    // Metrics of the resolver and of the carrier's first DP, and a control socket each.
    let carrier_at = servers
        .iter()
        .position(|(a, _)| a == CARRIER_DP)
        .context("the carrier's first DP")?;
    let resolver_source: Arc<dyn crate::metrics::Source> = resolver.clone();
    let (resolver_metrics_task, resolver_metrics) = crate::metrics::serve(
        std::net::SocketAddr::new(RESOLVER_ADDR.parse()?, 0),
        resolver_source,
    )
    .await?;
    let dp_source: Arc<dyn crate::metrics::Source> = servers[carrier_at].1.shared().clone();
    let (dp_metrics_task, dp_metrics) =
        crate::metrics::serve(std::net::SocketAddr::new(CARRIER_DP.parse()?, 0), dp_source).await?;
    let (resolver_sock, carrier_sock) = (work.join("resolver.sock"), work.join("carrier.sock"));
    let mut resolver_ctl = crate::control::Control::open(Some(&resolver_sock))?;
    let mut carrier_ctl = crate::control::Control::open(Some(&carrier_sock))?;
    // +1 555 111 2222 was released by the checks; bob's number still has its mappings.
    let bob = "+1 555 111 3333";
    let owner = Sii::parse(bob, None)?.owner_name(apex)?;
    let new = "+1 555 111 8888";
    let chat_tsig = work.join("chat.tsig");
    let chat_key = zones.join("keys/chat.example.key");
    let carrier = "5.5.5.1.e164.mimi.arpa.";
    println!("The demo tree stays up. Commands to try (each as printed):");
    let commands = [
        (
            "a lookup, resolved here from the root servers, validated (DNSSEC) and verified",
            format!("mimi lookup \"{bob}\" --config {}", config.display()),
        ),
        (
            "the same through the demo's resolver over DNS",
            format!("mimi lookup \"{bob}\" --server {dns}"),
        ),
        (
            "the resolver answers dig with verified mappings only",
            format!("dig @{RESOLVER_ADDR} -p {port} +norec {owner} TYPE65280"),
        ),
        (
            "and over DNS over TLS (the demo CA)",
            format!(
                "kdig @{RESOLVER_ADDR} -p {} +tls-ca={} +tls-hostname={RESOLVER_ADDR} {owner} TYPE65280",
                tls.port,
                ca_path.display()
            ),
        ),
        (
            "the carrier's DP itself, signed (DNSSEC)",
            format!("kdig @{CARRIER_DP} -p {port} +dnssec {owner} TYPE65280"),
        ),
        (
            "publish a mapping as chat.example (DNS UPDATE, TSIG) to both carrier DPs",
            format!(
                "for dp in {CARRIER_DP} 127.53.0.14; do mimi publish --dp $dp:{port} --zone {carrier} --tsig {} --key {} --sii \"{new}\" --ssi mimi://chat.example/u/you || exit 1; done",
                chat_tsig.display(),
                chat_key.display()
            ),
        ),
        (
            "and find it",
            format!("mimi lookup \"{new}\" --config {}", config.display()),
        ),
        (
            "the carrier DP's control socket: its zone now",
            format!(
                "mimi ctl --socket {} zone-status {carrier}",
                carrier_sock.display()
            ),
        ),
        (
            "the resolver's counters",
            format!("mimi ctl --socket {} stats", resolver_sock.display()),
        ),
        (
            "the metrics Prometheus would scrape: the carrier DP's and the resolver's",
            format!("curl -s http://{dp_metrics}/metrics | grep '^mimi_dp_queries_total'"),
        ),
        (
            "",
            format!("curl -s http://{resolver_metrics}/metrics | grep '^mimi_resolver_lookups_total'"),
        ),
    ];
    for (what, command) in &commands {
        if !what.is_empty() {
            println!("  # {what}");
        }
        println!("  $ {command}");
    }
    println!("Stop it with Ctrl-C (or mimi ctl ... stop).");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            Some(job) = resolver_ctl.next() => {
                let stop = job.request.command == "stop";
                let _ = job.reply.send(resolver.control(&job.request));
                if stop {
                    break;
                }
            }
            Some(job) = carrier_ctl.next() => {
                let stop = job.request.command == "stop";
                let reply = servers[carrier_at].1.control(&job.request).await;
                let _ = job.reply.send(reply);
                if stop {
                    break;
                }
            }
        }
    }
    println!("Stopping the demo tree.");
    for t in dot_tasks
        .into_iter()
        .chain([resolver_metrics_task, dp_metrics_task])
    {
        t.abort();
    }
    resolver_ctl.close();
    carrier_ctl.close();
    let _ = plain.shutdown_gracefully().await;
    Ok(())
}

/// Publishes a mapping for `LIVE_SII` (or, `withdrawn`, its tombstone) as chat.example by
/// DNS UPDATE (TSIG) to the carrier's DPs; returns 1 when a DP does not accept it.
async fn publish_row(
    zones: &Path,
    work: &Path,
    port: u16,
    apex: &Name,
    withdrawn: bool,
) -> anyhow::Result<u32> {
    use crate::publish::{publish, sign_mapping, Mapping, SignOptions};
    let key = ProviderKey::load(zones.join("keys/chat.example.key"))?;
    let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None)?;
    let mut options = SignOptions::now();
    options.valid_days = 30;
    options.withdrawn = withdrawn;
    let uri = if withdrawn {
        "mimi://chat.example/withdrawn"
    } else {
        "mimi://chat.example/u/walk-in"
    };
    let signed = sign_mapping(&Mapping::new(LIVE_SII, uri), &zone, apex, &key, &options)?;
    let tsig = TsigKey::load(work.join("chat.tsig"))?;
    // The carrier's two name servers here are two DPs each with its own copy of the
    // zone, so the mapping goes to both (a secondary would follow by IXFR instead).
    let started = std::time::Instant::now();
    let mut result = Ok(());
    let first = std::net::SocketAddr::new(IpAddr::from([127, 53, 0, 4]), port);
    for last in [4, 14] {
        let dp = std::net::SocketAddr::new(IpAddr::from([127, 53, 0, last]), port);
        if result.is_ok() {
            result = publish(dp, &zone, &tsig, std::slice::from_ref(&signed))
                .await
                .map(|_| ());
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, detail) = match (&result, withdrawn) {
        (Ok(()), false) => (
            "published",
            "chat.example/u/walk-in by DNS UPDATE (TSIG)".to_string(),
        ),
        (Ok(()), true) => (
            "withdrawn",
            "chat.example's signed tombstone by DNS UPDATE (TSIG)".to_string(),
        ),
        (Err(e), _) => ("refused", e.to_string()),
    };
    println!(
        "{:<19} {LIVE_SII:<20} {:<9} {status:<16} {:<60} {:<18} {:>3} {ms:>6.1}ms",
        if withdrawn {
            "live: withdraw"
        } else {
            "live: publish"
        },
        "any",
        shorten(&detail, 60),
        first.to_string(),
        1
    );
    Ok(u32::from(result.is_err()))
}

/// What a lifecycle row waits for at the resolver.
enum Want {
    /// Found, with a URI containing this.
    Found(&'static str),
    /// Not discoverable.
    Gone,
}

/// Looks `sii` up until the resolver answers as `want` says (its cached answer dropped by
/// invalidation), for at most a second; returns 1 when it does not.
async fn seen_row(resolver: &Resolver, what: &str, sii: &str, want: Want) -> anyhow::Result<u32> {
    const GOAL: Duration = Duration::from_secs(1);
    let parsed = Sii::parse(sii, None)?;
    let started = std::time::Instant::now();
    let mut last = String::new();
    let seen = loop {
        if let Ok(r) = resolver.lookup(&parsed, None).await {
            let uris: Vec<String> = match &r.outcome {
                Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
                Outcome::NotDiscoverable(_) => Vec::new(),
            };
            last = uris.join(", ").replace("mimi://", "");
            let ok = match want {
                Want::Found(part) => uris.iter().any(|u| u.contains(part)),
                Want::Gone => uris.is_empty(),
            };
            if ok {
                break true;
            }
        }
        if started.elapsed() > GOAL {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let stats = &resolver.invalidation.stats;
    let (status, detail) = match (seen, &want) {
        (true, Want::Found(_)) => (
            "found",
            format!("{last} (cache dropped by NOTIFY + CHANGES)"),
        ),
        (true, Want::Gone) => (
            "not discoverable",
            "cached mapping dropped by NOTIFY + CHANGES".to_string(),
        ),
        (false, _) => (
            "still cached",
            format!("{last}: no invalidation within 1 s"),
        ),
    };
    println!(
        "{what:<19} {sii:<20} {:<9} {status:<16} {:<60} {:<18} {:>3} {ms:>6.1}ms",
        "any",
        shorten(&detail, 60),
        format!(
            "{} dropped",
            stats
                .entries_dropped
                .load(std::sync::atomic::Ordering::Relaxed)
        ),
        ""
    );
    Ok(u32::from(!seen))
}

/// The carrier's two name servers here are two DPs each with its own copy of the zone, so
/// an operator's change goes to both (a secondary would follow by IXFR instead).
async fn operate_carrier(
    work: &Path,
    port: u16,
    updates: &[hickory_proto::rr::Record],
) -> Result<(), crate::publish::PublishError> {
    let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None)
        .map_err(|e| crate::publish::PublishError::Encode(e.to_string()))?;
    let key = TsigKey::load(work.join("operator.tsig"))
        .map_err(|e| crate::publish::PublishError::Encode(e.to_string()))?;
    for last in [4, 14] {
        let dp = std::net::SocketAddr::new(IpAddr::from([127, 53, 0, last]), port);
        crate::publish::Publisher::new(dp, zone.clone(), key.clone())
            .send_raw(updates)
            .await?;
    }
    Ok(())
}

fn status_row(what: &str, sii: &str, status: &str, detail: &str, by: &str, ms: f64) {
    println!(
        "{what:<19} {sii:<20} {:<9} {status:<16} {:<60} {by:<18} {:>3} {ms:>6.1}ms",
        "any",
        shorten(detail, 60),
        1
    );
}

/// walker.example asks the carrier's DP for one number after another, each query signed
/// with its TSIG key: exactly `WALKER_QUOTA` are answered (and the answers signed), then
/// REFUSED with the RATE_LIMITED extended error.
async fn access_row(work: &Path, port: u16, apex: &Name) -> anyhow::Result<u32> {
    use hickory_proto::op::ResponseCode;
    let key = TsigKey::load(work.join("walker.tsig"))?;
    let server = std::net::SocketAddr::new(CARRIER_DP.parse()?, port);
    let started = std::time::Instant::now();
    let mut answered = 0;
    let mut refusal = None;
    for i in 0..WALKER_QUOTA + 5 {
        let owner = Sii::parse(&format!("+1 555 100 {i:04}"), None)?.owner_name(apex)?;
        let (rcode, ede) = signed_query(server, &owner, &key).await?;
        match rcode {
            ResponseCode::NoError | ResponseCode::NXDomain => answered += 1,
            _ => {
                refusal = Some((rcode, ede));
                break;
            }
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let rate_limited = Some((ResponseCode::Refused, Some(crate::ede::RATE_LIMITED)));
    let ok = answered == WALKER_QUOTA && refusal == rate_limited;
    let detail = match refusal {
        Some((rcode, ede)) => format!(
            "walker.example (TSIG): {answered} answered, then {rcode} EDE {}",
            ede.map_or("none".into(), |c| c.to_string())
        ),
        None => format!("walker.example (TSIG): all {answered} answered"),
    };
    status_row(
        "access: walk",
        "+1 555 100 0000...",
        if ok {
            "stopped at quota"
        } else {
            "NOT STOPPED"
        },
        &detail,
        CARRIER_DP,
        ms,
    );
    Ok(u32::from(!ok))
}

/// Room for the whole burst's answers in the client's socket: a default buffer holds only
/// a few hundred datagrams, and the demo's runtime may not read while it sends.
fn enlarge_receive_buffer(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads `size` (a c_int, its length given) on a socket we own;
        // failure leaves the buffer as it was.
        let done = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done == 0 {
            return;
        }
    }
}

/// The DPs' own UDP loop (`src/net/udp.rs`): a burst of queries sent from one socket as
/// fast as it can send is answered, on the fast path (answers built once).
async fn burst_row(port: u16, apex: &Name) -> anyhow::Result<u32> {
    const BURST: u16 = 500;
    let email_dp = TREE
        .iter()
        .find(|(f, _, _)| *f == "email.zone")
        .map_or("127.53.0.6", |(_, _, a)| a[0]);
    let server = std::net::SocketAddr::new(email_dp.parse()?, port);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    enlarge_receive_buffer(&socket);
    socket.set_nonblocking(true)?;
    let socket = std::sync::Arc::new(tokio::net::UdpSocket::from_std(socket)?);
    let origin = Name::parse("email.", Some(apex))?;
    let started = std::time::Instant::now();
    // Answers are read while the queries go out: a client socket's default buffer holds
    // only a few hundred datagrams.
    let reader = {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut seen = vec![false; usize::from(BURST)];
            let mut buf = [0u8; 1500];
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            while seen.iter().any(|s| !s) {
                match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Ok(Ok(n)) if n >= 12 => {
                        let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                        if let Some(s) = seen.get_mut(id) {
                            *s = true;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            seen
        })
    };
    for id in 0..BURST {
        let mut q = Vec::with_capacity(64);
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(origin.as_wire());
        q.extend_from_slice(&[0, 6, 0, 1]);
        socket.send_to(&q, server).await?;
    }
    let seen = reader.await?;
    let answered = seen.iter().filter(|s| **s).count();
    let ok = answered * 100 >= usize::from(BURST) * 99;
    status_row(
        "udp: burst",
        "email.mimi.arpa. SOA",
        if ok { "answered" } else { "LOST" },
        &format!("{BURST} queries sent at once from one socket: {answered} answered"),
        email_dp,
        started.elapsed().as_secs_f64() * 1000.0,
    );
    Ok(u32::from(!ok))
}

/// chat.example's resolver looks a number up over DNS over TLS, checking each DP's
/// certificate against the demo CA and presenting its own; the carrier's DPs count the
/// lookup against chat.example, not against an address.
async fn dot_row(
    zones: &Path,
    port: u16,
    tls: &DemoTls,
    apex: &Name,
    servers: &[(String, DpServer)],
) -> anyhow::Result<u32> {
    use crate::tls::{client_config_for, ServerTrust};
    let chat_lookups = || -> u64 {
        servers
            .iter()
            .flat_map(|(_, s)| s.shared().access.load().report())
            .filter(|c| c.provider.to_string() == "chat.example.")
            .map(|c| c.lookups)
            .sum()
    };
    let before = chat_lookups();
    let ca = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(tls.ca.cert_pem.as_bytes())
            .context("the demo CA certificate")?
    };
    let mut config = resolver_config(zones, port, apex);
    config.upstream.tls = Some(crate::resolver::config::UpstreamTls {
        port: tls.port,
        client: client_config_for(&ServerTrust::Ca(vec![ca]), Some(&tls.client))?,
    });
    let resolver = Resolver::new(config, TrustStore::load(zones.join("trust.toml"))?);
    let sii = "+1 555 111 3333";
    let started = std::time::Instant::now();
    let result = resolver.lookup(&Sii::parse(sii, None)?, None).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let counted = chat_lookups() - before;
    let (ok, status, detail, by) = match &result {
        Ok(r) if matches!(r.outcome, Outcome::Found(_)) && counted > 0 => (
            true,
            "found over DoT",
            format!("certificates checked both ways; the carrier DP counted {counted} lookup(s) for chat.example."),
            r.server.map_or(String::new(), |s| s.to_string()),
        ),
        Ok(r) => (
            false,
            "WRONG",
            format!("{:?}; counted for chat.example.: {counted}", r.outcome),
            String::new(),
        ),
        Err(e) => (false, "FAILED", e.to_string(), String::new()),
    };
    status_row("access: mTLS", sii, status, &detail, &by, ms);
    Ok(u32::from(!ok))
}

/// One UDP query signed with `key`; the answer's RCODE and extended error code, after
/// checking the answer's signature.
async fn signed_query(
    server: std::net::SocketAddr,
    qname: &Name,
    key: &TsigKey,
) -> anyhow::Result<(hickory_proto::op::ResponseCode, Option<u16>)> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        qname.to_hickory(),
        hickory_proto::rr::RecordType::from(crate::record::TYPE_SSI),
    ));
    msg.set_edns(Edns::new());
    let mut bytes = msg.to_vec()?;
    let now = crate::sys::unix_now();
    let mac = crate::tsig::sign_request(&mut bytes, key, now)?;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(&bytes, server).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .context("no answer within 2 s")??;
    crate::tsig::verify_response(&buf[..n], key, &mac, crate::sys::unix_now())
        .context("the answer's TSIG")?;
    let reply = Message::from_vec(&buf[..n])?;
    let ede = crate::ede::of_reply(&reply).map(|(c, _)| c);
    Ok((reply.metadata.response_code, ede))
}

/// DNSSEC: the tree is signed from the apex down the number chain. A resolver whose only
/// trust is the apex's DS (`[dnssec] trust_anchor`) and whose trust file is empty looks up
/// a mapping, validated zone by zone with chat.example.'s key taken from its APKEY record
/// in the validated apex, and an absent number (a compact denial). The same resolver
/// anchored on another key refuses the tree as bogus and names the step.
async fn dnssec_rows(zones: &Path, work: &Path, port: u16, apex: &Name) -> anyhow::Result<u32> {
    use crate::resolver::secure::TrustAnchor;
    let root_key = DnssecKey::load(&dnssec_key_path(work, SIGNED_ZONES[0]))?;
    let validating = |ds: Vec<u8>| {
        let mut config = resolver_config(zones, port, apex);
        config.dnssec = Some(TrustAnchor {
            zone: apex.clone(),
            ds: vec![ds],
        });
        Resolver::new(config, TrustStore::new())
    };
    let resolver = validating(root_key.ds_rdata());
    let mut failures = 0;
    let mut row = |ok: bool, name: &str, sii: &str, status: &str, detail: &str, by: String, ms| {
        failures += u32::from(!ok);
        status_row(
            name,
            sii,
            if ok { status } else { "WRONG" },
            detail,
            &by,
            ms,
        );
    };
    let by = |r: &crate::resolver::LookupResult| r.server.map_or(String::new(), |s| s.to_string());
    let started = std::time::Instant::now();
    let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
    let alice = "+1 555 111 2222";
    match resolver.lookup(&Sii::parse(alice, None)?, None).await {
        Ok(r) => match &r.outcome {
            Outcome::Found(m) => {
                let providers: Vec<String> = m.iter().map(|m| m.ssi.provider.to_string()).collect();
                row(
                    true,
                    "dnssec: mapping",
                    alice,
                    "validated",
                    &format!(
                        "from the apex's DS through e164, 1.e164, 5.5.5.1; the key of {} from its APKEY (empty trust file)",
                        providers.join(", ")
                    ),
                    by(&r),
                    ms(started),
                )
            }
            other => row(
                false,
                "dnssec: mapping",
                alice,
                "",
                &format!("{other:?}"),
                by(&r),
                ms(started),
            ),
        },
        Err(e) => row(
            false,
            "dnssec: mapping",
            alice,
            "",
            &e.to_string(),
            String::new(),
            ms(started),
        ),
    }
    let started = std::time::Instant::now();
    let absent = "+1 555 111 0000";
    match resolver.lookup(&Sii::parse(absent, None)?, None).await {
        Ok(r)
            if matches!(
                r.outcome,
                Outcome::NotDiscoverable(crate::resolver::NotFound::NoSuchName)
            ) =>
        {
            row(
                true,
                "dnssec: absent",
                absent,
                "denial valid",
                "compact denial (RFC 9824): one signed NSEC for this name only",
                by(&r),
                ms(started),
            )
        }
        Ok(r) => row(
            false,
            "dnssec: absent",
            absent,
            "",
            &format!("{:?}", r.outcome),
            by(&r),
            ms(started),
        ),
        Err(e) => row(
            false,
            "dnssec: absent",
            absent,
            "",
            &e.to_string(),
            String::new(),
            ms(started),
        ),
    }
    let started = std::time::Instant::now();
    let forged = validating(DnssecKey::generate(apex.clone(), FLAGS_CSK).ds_rdata());
    match forged.lookup(&Sii::parse(alice, None)?, None).await {
        Err(e @ ResolveError::Bogus { .. }) => row(
            true,
            "dnssec: bad anchor",
            alice,
            "bogus",
            &e.to_string(),
            "(anchored on another key)".into(),
            ms(started),
        ),
        other => row(
            false,
            "dnssec: bad anchor",
            alice,
            "",
            &format!(
                "accepted or failed otherwise: {:?}",
                other.map(|r| r.outcome)
            ),
            String::new(),
            ms(started),
        ),
    }
    Ok(failures)
}

/// The carrier's operator releases `RELEASED_SII` by DNS UPDATE (its TSIG key).
async fn release_row(work: &Path, port: u16, apex: &Name) -> anyhow::Result<u32> {
    let owner = Sii::parse(RELEASED_SII, None)?.owner_name(apex)?;
    let started = std::time::Instant::now();
    let result = operate_carrier(work, port, &crate::operate::release_update(&owner)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, detail) = match &result {
        Ok(()) => (
            "released",
            "by the carrier's operator (DNS UPDATE, TSIG)".to_string(),
        ),
        Err(e) => ("refused", e.to_string()),
    };
    status_row(
        "release",
        RELEASED_SII,
        status,
        &detail,
        &format!("{CARRIER_DP}:{port}"),
        ms,
    );
    Ok(u32::from(result.is_err()))
}

/// chat.example re-claims the released number with its verification from before the
/// release: the DP must refuse it.
async fn reclaim_row(zones: &Path, work: &Path, port: u16, apex: &Name) -> anyhow::Result<u32> {
    use crate::publish::{publish, sign_mapping, Mapping, PublishError, SignOptions};
    let key = ProviderKey::load(zones.join("keys/chat.example.key"))?;
    let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None)?;
    let an_hour_ago = crate::publish::now_ms().saturating_sub(3_600_000);
    let mut options = SignOptions::at(an_hour_ago);
    options.valid_days = 30;
    let signed = sign_mapping(
        &Mapping::new(RELEASED_SII, "mimi://chat.example/u/alice"),
        &zone,
        apex,
        &key,
        &options,
    )?;
    let tsig = TsigKey::load(work.join("chat.tsig"))?;
    let dp = std::net::SocketAddr::new(CARRIER_DP.parse()?, port);
    let started = std::time::Instant::now();
    let result = publish(dp, &zone, &tsig, std::slice::from_ref(&signed)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, status, detail) = match &result {
        Err(PublishError::Refused(r)) if r.to_string().contains("released") => (
            true,
            "refused",
            "re-claim verified before the release: refused by the DP".to_string(),
        ),
        Err(e) => (false, "error", e.to_string()),
        Ok(_) => (
            false,
            "accepted",
            "a stale re-claim was accepted".to_string(),
        ),
    };
    status_row(
        "release: re-claim",
        RELEASED_SII,
        status,
        &detail,
        &dp.to_string(),
        ms,
    );
    Ok(u32::from(!ok))
}

/// Ports `LIVE_SII` (withdrawn by chat.example, the donor's AP) to the recipient carrier:
/// the donor's operator hands its signed records over and delegates the number; the
/// recipient serves a zone for it made from the hand-over, and its own AP (talk.example)
/// publishes there. Returns the failures and the recipient's DP.
async fn port_row(
    zones: &Path,
    work: &Path,
    port: u16,
    apex: &Name,
) -> anyhow::Result<(u32, Option<DpServer>)> {
    use crate::publish::{publish, sign_mapping, Mapping, SignOptions};
    let owner = Sii::parse(LIVE_SII, None)?.owner_name(apex)?;
    let recipient: IpAddr = RECIPIENT_DP.parse()?;
    let ns = [(Name::parse("ns1", Some(&owner))?, recipient)];
    let started = std::time::Instant::now();
    let donor = std::net::SocketAddr::new(CARRIER_DP.parse()?, port);
    // The recipient carrier's DP: a zone directory (empty so far) and talk.example's key.
    let zone_dir = work.join("recipient-zones.d");
    std::fs::create_dir_all(&zone_dir)?;
    let config = work.join("recipient.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{RECIPIENT_DP}:{port}\"]\ntrust = {:?}\n[[update]]\nprovider = \"talk.example.\"\ntsig = {:?}\n[zone_directory]\npath = {:?}\nscan_interval_ms = 100\n",
            std::fs::canonicalize(zones.join("trust.toml"))?.display().to_string(),
            work.join("talk.tsig").display().to_string(),
            zone_dir.display().to_string()
        ),
    )?;
    let server = DpServer::start(&config).await?;
    let handed = crate::operate::fetch_mappings(donor, &owner, Duration::from_secs(2)).await?;
    let delegated = operate_carrier(
        work,
        port,
        &crate::operate::delegation_update(&owner, &ns, 3600),
    )
    .await;
    // A zone for the number from the hand-over, dropped into the recipient's directory
    // (as `mimi zone port-in --out DIR` does), which its next scan serves.
    let mut zone = ZoneFile::new_zone(owner.clone(), &ns, 3600, 1);
    zone.records
        .extend(crate::operate::mappings_file(&owner, &handed).records);
    zone.save(
        &super::lifecycle::zone_file_in(&zone_dir, &owner),
        WriteStyle::Native,
    )?;
    let waiting = std::time::Instant::now();
    while server.shared().zones.load().get(&owner).is_none() {
        if waiting.elapsed() > Duration::from_secs(2) {
            bail!("the recipient's zone directory did not serve {owner} within 2 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let key = ProviderKey::load(zones.join("keys/talk.example.key"))?;
    let mut options = SignOptions::now();
    options.valid_days = 30;
    let signed = sign_mapping(
        &Mapping::new(LIVE_SII, "mimi://talk.example/u/ported"),
        &owner,
        apex,
        &key,
        &options,
    )?;
    let tsig = TsigKey::load(work.join("talk.tsig"))?;
    let at = std::net::SocketAddr::new(recipient, port);
    let published = publish(at, &owner, &tsig, std::slice::from_ref(&signed)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, detail) = match (&delegated, &published) {
        (Ok(()), Ok(_)) => (
            "ported",
            format!(
                "{} record(s) handed over; talk.example maps it at the recipient",
                handed.len()
            ),
        ),
        (Err(e), _) => ("refused", format!("delegation: {e}")),
        (_, Err(e)) => ("refused", format!("talk.example's publish: {e}")),
    };
    status_row(
        "port: out and in",
        LIVE_SII,
        status,
        &detail,
        &at.to_string(),
        ms,
    );
    Ok((
        u32::from(delegated.is_err() || published.is_err()),
        Some(server),
    ))
}

/// Runs and prints one lookup; returns 1 when the outcome is not what the case expects.
async fn lookup_row(
    resolver: &Resolver,
    what: &str,
    sii: &str,
    context: Option<Context>,
) -> anyhow::Result<u32> {
    let parsed = Sii::parse(sii, None)?;
    let started = std::time::Instant::now();
    let result = resolver.lookup(&parsed, context).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let ctx = context.map_or("any".to_string(), |c| c.to_string());
    let (status, detail, by, queries, ms, ok) = match &result {
        Ok(r) => {
            let by = match (&r.zone, r.server) {
                (_, _) if r.from_cache => "cache".to_string(),
                (Some(_), Some(s)) => s.to_string(),
                _ => String::new(),
            };
            let ms = r.elapsed.as_secs_f64() * 1000.0;
            match &r.outcome {
                Outcome::Found(m) => {
                    let list: Vec<String> = m
                        .iter()
                        .map(|m| {
                            format!(
                                "{} ({})",
                                m.ssi.uri.trim_start_matches("mimi://"),
                                m.ssi.context
                            )
                        })
                        .collect();
                    let ok = !what.contains("unknown")
                        && !what.contains("forged")
                        && !what.contains("expired")
                        && !what.contains("untrusted");
                    ("found".to_string(), list.join(", "), by, r.queries, ms, ok)
                }
                Outcome::NotDiscoverable(nf) => (
                    "not discoverable".to_string(),
                    nf.to_string(),
                    by,
                    r.queries,
                    ms,
                    what.contains("unknown"),
                ),
            }
        }
        Err(ResolveError::AllRejected { rejected, .. }) => {
            let reason: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
            let ok =
                what.contains("forged") || what.contains("expired") || what.contains("untrusted");
            (
                "rejected".to_string(),
                reason.join("; "),
                String::new(),
                0,
                took,
                ok,
            )
        }
        Err(e) => (
            "error".to_string(),
            e.to_string(),
            String::new(),
            0,
            took,
            false,
        ),
    };
    let detail = shorten(&detail, 60);
    println!(
        "{what:<19} {sii:<20} {ctx:<9} {status:<16} {detail:<60} {by:<18} {queries:>3} {ms:>6.1}ms"
    );
    if let Ok(r) = &result {
        for x in &r.rejected {
            println!(
                "{:<19} {:<20} {:<9} {:<16} {}",
                "",
                "",
                "",
                "  rejected",
                shorten(&format!("{}: {}", x.ssi, x.reason), 90)
            );
        }
    }
    Ok(u32::from(!ok))
}

/// What a lookup found, for comparing public and private lookups.
fn uris_text(r: &Result<crate::resolver::LookupResult, ResolveError>) -> String {
    match r {
        Ok(r) => match &r.outcome {
            Outcome::Found(m) => m
                .iter()
                .map(|m| m.ssi.uri.trim_start_matches("mimi://").to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Outcome::NotDiscoverable(nf) => nf.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

/// A private lookup row: must find exactly what the public lookup found.
async fn private_row(resolver: &Resolver, what: &str, sii: &str) -> anyhow::Result<u32> {
    private_row_with(resolver, resolver, what, sii, None).await
}

/// A private lookup by `private` that must find what `public` finds publicly, from the
/// replica or by PIR as `from_replica` says (when given).
async fn private_row_with(
    public: &Resolver,
    private: &Resolver,
    what: &str,
    sii: &str,
    from_replica: Option<bool>,
) -> anyhow::Result<u32> {
    let parsed = Sii::parse(sii, None)?;
    let public = public.lookup(&parsed, None).await;
    let replica_lookups = || {
        private
            .replicas
            .stats
            .lookups
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = replica_lookups();
    let started = std::time::Instant::now();
    let result = private.lookup_private(&parsed, None).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let used_replica = replica_lookups() > before;
    let uris = uris_text;
    let private = result;
    let same =
        uris(&public) == uris(&private) && from_replica.is_none_or(|want| want == used_replica);
    let (status, by, q) = match &private {
        Ok(r) => (
            if matches!(r.outcome, Outcome::Found(_)) {
                "found"
            } else {
                "not discoverable"
            },
            r.server.map(|s| s.to_string()).unwrap_or_default(),
            r.queries,
        ),
        Err(_) => ("error", String::new(), 0),
    };
    let how = match from_replica {
        Some(_) if used_replica => "replica: ",
        Some(_) => "PIR: ",
        None => "",
    };
    let detail = shorten(
        &format!(
            "{how}{}{}",
            uris(&private),
            if same { "" } else { "  (DIFFERS from public)" }
        ),
        60,
    );
    println!(
        "{what:<19} {sii:<20} {:<9} {status:<16} {detail:<60} {by:<18} {q:>3} {took:>6.1}ms",
        "any"
    );
    Ok(u32::from(!same))
}

/// chat.example's resolver, which keeps an encrypted replica of the carrier zone: it
/// talks DNS over TLS to every DP with its client certificate, by which the carrier's DP
/// knows it (only identified providers get replicas).
fn replica_resolver(
    zones: &Path,
    work: &Path,
    port: u16,
    tls: &DemoTls,
    apex: &Name,
) -> anyhow::Result<Resolver> {
    use crate::tls::{client_config_for, ServerTrust};
    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(tls.ca.cert_pem.as_bytes())
        .context("the demo CA certificate")?;
    let mut config = resolver_config(zones, port, apex);
    config.upstream.tls = Some(crate::resolver::config::UpstreamTls {
        port: tls.port,
        client: client_config_for(&ServerTrust::Ca(vec![ca]), Some(&tls.client))?,
    });
    config.replica = Some(crate::resolver::replica::ReplicaSettings {
        dir: work.join("replicas"),
        max_bytes: 256 << 20,
        zones: vec![Name::parse("5.5.5.1.e164.mimi.arpa.", None)?],
        min_slots: None,
        poll: Duration::from_secs(3600),
    });
    Ok(Resolver::new(
        config,
        TrustStore::load(zones.join("trust.toml"))?,
    ))
}

/// The replica's download, then lookups from it (the carrier zone) and by PIR (the
/// others), and a contact-sync batch across three zones, each as the public lookup finds.
async fn replica_rows(public: &Resolver, replica: &Resolver) -> anyhow::Result<u32> {
    let carrier = Name::parse("5.5.5.1.e164.mimi.arpa.", None)?;
    let started = std::time::Instant::now();
    let (status, detail, mut failures) = match replica.replicate(&carrier).await {
        Ok(r) => {
            let stats = &replica.replicas.stats;
            let kib = stats
                .bytes_received
                .load(std::sync::atomic::Ordering::Relaxed)
                >> 10;
            (
                "ready",
                format!(
                    "{kib} KiB: {} shard(s) of {} buckets, epoch {}",
                    r.config.shard_count, r.config.buckets, r.config.epoch
                ),
                0,
            )
        }
        Err(e) => ("FAILED", e.to_string(), 1),
    };
    status_row(
        "replica: download",
        "5.5.5.1.e164 zone",
        status,
        &detail,
        CARRIER_DP,
        started.elapsed().as_secs_f64() * 1000.0,
    );
    for (what, sii, from_replica) in [
        ("replica: one prov.", "+1 (555) 111-2222", true),
        ("replica: two prov.", "+1 555 111 3333", true),
        ("replica: forged", "+1 555 111 4444", true),
        ("replica: unknown", "+1 555 111 0000", true),
        ("replica: email", "Hugh@Example.com", false),
    ] {
        failures += private_row_with(public, replica, what, sii, Some(from_replica)).await?;
    }
    // A contact sync: one OPRF request per zone, then the replica or PIR.
    let contacts = [
        "+1 (555) 111-2222",
        "+1 555 111 3333",
        "+1 555 111 0000",
        "+1 202 555 0100",
        "+44 20 7946 0000",
        "Hugh@Example.com",
        "nobody@example.com",
        "+1 555 111 3333",
    ];
    failures += sync_row(public, replica, "batch: contacts", &contacts).await?;
    Ok(failures)
}

/// A contact sync by `by` whose every result must equal its public lookup by `public`.
async fn sync_row(
    public: &Resolver,
    by: &Resolver,
    what: &str,
    contacts: &[&str],
) -> anyhow::Result<u32> {
    let siis = contacts
        .iter()
        .map(|c| Sii::parse(c, None))
        .collect::<Result<Vec<_>, _>>()?;
    let batches = by.stats.pir_batches.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    let batch = by.lookup_private_batch(&siis, None).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let batches = by.stats.pir_batches.load(Ordering::Relaxed) - batches;
    let mut differ = Vec::new();
    let mut zones = std::collections::BTreeSet::new();
    let mut found = 0;
    for ((c, sii), b) in contacts.iter().zip(&siis).zip(&batch) {
        let p = public.lookup(sii, None).await;
        if uris_text(&p) != uris_text(b) {
            differ.push(*c);
        }
        if let Ok(r) = b {
            zones.extend(r.zone.clone());
            found += usize::from(matches!(r.outcome, Outcome::Found(_)));
        }
    }
    let ok = differ.is_empty();
    let by_batch = match batches {
        0 => String::new(),
        n => format!("; {n} PIR batches"),
    };
    status_row(
        what,
        &format!("{} identifiers", contacts.len()),
        if ok { "as public" } else { "DIFFERS" },
        &if ok {
            format!(
                "{found} found in {} zones{by_batch}; each result as its public lookup",
                zones.len()
            )
        } else {
            format!("differs from public: {}", differ.join(", "))
        },
        "",
        ms,
    );
    Ok(u32::from(!ok))
}

/// After the live claim: the replica takes the carrier's delta and finds the new mapping.
async fn replica_live_row(public: &Resolver, replica: &Resolver) -> anyhow::Result<u32> {
    let carrier = Name::parse("5.5.5.1.e164.mimi.arpa.", None)?;
    let deltas = || {
        replica
            .replicas
            .stats
            .delta_runs
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = deltas();
    // The serial the subscribed resolver last heard of: the delta must reach it.
    let want = public.invalidation.serial(&carrier);
    if let Err(e) = replica.refresh_replica(&carrier, want).await {
        status_row(
            "replica: delta",
            LIVE_SII,
            "FAILED",
            &e.to_string(),
            CARRIER_DP,
            0.0,
        );
        return Ok(1);
    }
    let fetched = deltas() - before;
    let failed = private_row_with(public, replica, "replica: live", LIVE_SII, Some(true)).await?;
    Ok(failed + u32::from(fetched == 0))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mimi-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
