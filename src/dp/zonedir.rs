//! A zone directory (`[zone_directory]`, docs/dp.md): one zone per file `<origin>.zone`,
//! and the served set kept in step with the directory's listing - a new file starts its
//! zone, a removed file stops it - so a DP serves thousands of one-number zones (ported
//! numbers, docs/lifecycle.md) from one config, without restarts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::config::{DpConfig, ZoneConfig, ZoneDirectory};
use super::handler::Shared;
use super::writer::{self, WriterContext};
use crate::name::Name;

/// What the directory's zones are, as last seen.
#[derive(Debug, Default)]
pub struct ZoneDir {
    /// Zones started from the directory: origin -> file.
    served: HashMap<Name, PathBuf>,
    /// Files that failed to load, with their modification time: tried again only once
    /// they change, so a bad file is logged once, not at every scan.
    failed: HashMap<PathBuf, Option<SystemTime>>,
    /// Origins a `[[zone]]` entry serves, whose directory file is skipped (warned once).
    shadowed: HashSet<Name>,
}

/// The zone files of a directory: `<origin>.zone`, not hidden (atomic writes use hidden
/// temporary names), origin from the file name.
pub fn listing(dir: &Path) -> std::io::Result<Vec<ZoneConfig>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".zone") else {
            continue;
        };
        if name.starts_with('.') || stem.is_empty() {
            continue;
        }
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        match Name::parse(&format!("{stem}."), None) {
            Ok(origin) => out.push(ZoneConfig {
                origin,
                file: path,
                line: 0,
                dnssec: None,
            }),
            Err(e) => warn!(
                "{}: not a zone file name <origin>.zone: {e}",
                path.display()
            ),
        }
    }
    out.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(out)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ZoneDir {
    pub fn serves(&self, origin: &Name) -> bool {
        self.served.contains_key(origin)
    }

    /// Brings the served set in step with the directory: starts the zones of new files,
    /// stops those whose file is gone; with `reread`, applies the changes of every served
    /// file too (SIGHUP). Returns the failures (also logged).
    pub async fn sync(
        &mut self,
        dir: &ZoneDirectory,
        config: &DpConfig,
        shared: &Arc<Shared>,
        ctx: &WriterContext,
        reread: bool,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let listed = match listing(&dir.path) {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("zone directory {}: {e}", dir.path.display());
                warn!("{msg}; its zones keep being served");
                return vec![msg];
            }
        };
        let trust = shared.trust.load_full();
        let mut present = HashSet::new();
        for zc in listed {
            if config.zones.iter().any(|z| z.origin == zc.origin) {
                if self.shadowed.insert(zc.origin.clone()) {
                    warn!(zone = %zc.origin, "{}: skipped, [[zone]] in {} serves this zone", zc.file.display(), config.path.display());
                }
                continue;
            }
            present.insert(zc.origin.clone());
            let running = self.served.contains_key(&zc.origin);
            if running && !reread {
                continue;
            }
            let stamp = modified(&zc.file);
            if !running && !reread && self.failed.get(&zc.file) == Some(&stamp) {
                continue;
            }
            let checked = match super::read_checked(config, &zc, &trust).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    self.fail(&zc, stamp, e.to_string(), &mut failures);
                    continue;
                }
                Err(super::DpError::Zone(e)) => {
                    self.fail(&zc, stamp, e, &mut failures);
                    continue;
                }
                Err(e) => {
                    self.fail(&zc, stamp, e.to_string(), &mut failures);
                    continue;
                }
            };
            let existing = shared.writers_lock().get(&zc.origin).cloned();
            let result = match existing {
                Some(w) if running => w.reload(checked, zc.dnssec.clone()).await.map(|_| ()).map_err(|e| e.to_string()),
                _ => writer::start_zone(zc.clone(), checked, ctx.clone())
                    .await
                    .map(|h| {
                        shared.writers_lock().insert(zc.origin.clone(), h);
                        info!(zone = %zc.origin, file = %zc.file.display(), "zone added from the zone directory");
                    }),
            };
            match result {
                Ok(()) => {
                    self.failed.remove(&zc.file);
                    self.served.insert(zc.origin.clone(), zc.file.clone());
                }
                Err(e) => self.fail(&zc, stamp, e, &mut failures),
            }
        }
        let gone: Vec<(Name, PathBuf)> = self
            .served
            .iter()
            .filter(|(o, _)| !present.contains(*o))
            .map(|(o, f)| (o.clone(), f.clone()))
            .collect();
        for (origin, file) in gone {
            self.served.remove(&origin);
            let handle = shared.writers_lock().remove(&origin);
            if let Some(h) = handle {
                if file.exists() {
                    // Still there (the directory moved, or [[zone]] took the zone over):
                    // stop as usual, writing the file.
                    h.stop().await;
                } else {
                    h.discard().await;
                    let zc = ZoneConfig {
                        origin: origin.clone(),
                        file,
                        line: 0,
                        dnssec: None,
                    };
                    set_journal_aside(&writer::journal_path(&zc, &config.journal));
                }
            }
            // A zone [[zone]] now serves keeps its slot (its writer started anew).
            if !config.zones.iter().any(|z| z.origin == origin) {
                shared.zones.rcu(|set| {
                    let mut set = (**set).clone();
                    set.remove(&origin);
                    set
                });
            }
            info!(zone = %origin, "zone removed: its file left the zone directory");
        }
        self.shadowed
            .retain(|o| config.zones.iter().any(|z| z.origin == *o));
        failures
    }

    fn fail(
        &mut self,
        zc: &ZoneConfig,
        stamp: Option<SystemTime>,
        e: String,
        out: &mut Vec<String>,
    ) {
        warn!(zone = %zc.origin, "zone directory: {} not served: {e}", zc.file.display());
        self.failed.insert(zc.file.clone(), stamp);
        out.push(format!("zone {}: {e}", zc.origin));
    }
}

/// Moves a removed zone's journal to `<journal>.removed`, so that a zone of the same
/// name added later starts from its own file.
fn set_journal_aside(journal: &Path) {
    if !journal.exists() {
        return;
    }
    let mut aside = journal.as_os_str().to_owned();
    aside.push(".removed");
    if let Err(e) = std::fs::rename(journal, &aside) {
        warn!("{}: {e}", journal.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_takes_origin_zone_files_only() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.zone",
            "example.com.email.mimi.arpa.zone",
            ".x.zone.tmp.1",
            ".hidden.zone",
            "a.zone.journal",
            "a.zone.releases",
            "README",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.zone")).unwrap();
        let l = listing(dir.path()).unwrap();
        let names: Vec<String> = l.iter().map(|z| z.origin.to_string()).collect();
        assert_eq!(
            names,
            [
                "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.",
                "example.com.email.mimi.arpa."
            ]
        );
    }
}
