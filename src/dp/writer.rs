//! One writer per zone: every change of a served zone goes through here.
//!
//! A zone's writer task owns its journal and the mutable state around it (the `seq`
//! watermarks, the expiry index, the zone-file base). Sources of change send it jobs: a
//! DNS UPDATE, a re-read zone file, and its own expiry timer. The writer drains every job
//! waiting, turns each into a changeset applied to a working version (a job that fails
//! leaves no trace), appends all their diffs to the journal with one sync (group commit),
//! and only then publishes the new version (one pointer swap), answers the jobs, asks for
//! NOTIFY and hands the changed owners to the private-lookup updater.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};

use super::config::{JournalSettings, ZoneConfig};
use super::expiry::Expiry;
use super::handler::Shared;
use super::marks::{Saved, Watermarks};
use super::zones::{self, ServedZone, DERIVED_TYPES};
use crate::name::Name;
use crate::record::{Ssi, TYPE_APKEY, TYPE_SSI};
use crate::zone::journal::{Journal, JournalError};
use crate::zone::release::Releases;
use crate::zone::update::{next_serial, record_from_wire, serial_newer};
use crate::zone::{Changeset, Diff, Lookup, RData, Record, ZoneFile, ZoneStore};

/// How often a signed zone looks for signatures within their refresh margin (days): often
/// enough that none expires unrefreshed even with a refresh margin of one day.
const RESIGN_CHECK: Duration = Duration::from_secs(3600);

/// Jobs taken per batch at most: bounds the time one group commit holds answers back.
const MAX_BATCH: usize = 256;
/// Jobs waiting per zone at most; a full queue answers SERVFAIL at once.
const QUEUE: usize = 4096;

/// Why a change was not applied. Each maps to one RCODE and extended error in
/// `dp::update`; the text names the record and the reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The change breaks the zone's rules (replayed seq, owner at a cut, ...).
    #[error("{0}")]
    Refused(String),
    /// Storage failed: nothing was applied.
    #[error("{0}")]
    Storage(String),
    #[error("the zone's writer is busy or stopped")]
    Unavailable,
}

/// An SSI record an app provider asks to publish, already checked on its own (signature,
/// provider, window) by the caller.
#[derive(Debug, Clone)]
pub struct Publish {
    pub owner: Name,
    pub ttl: u32,
    pub ssi: Ssi,
}

/// What the zones' operator (the number or domain authority) asks of a live zone
/// (docs/lifecycle.md). One UPDATE of the operator is a list of these, all or nothing.
#[derive(Debug, Clone)]
pub enum OperatorOp {
    /// Release an identifier: its mappings go, a marker refuses mappings verified before
    /// the release.
    Release(Name),
    /// Delegate a name (porting out): NS records at `owner` and glue below it replace
    /// whatever the zone held at and below it.
    Delegate { owner: Name, records: Vec<Record> },
    /// Take a delegation back: the NS records at the name and the glue below it go.
    Undelegate(Name),
    /// Publish a DS record at a delegation (the child's key, DNSSEC).
    AddDs(Record),
    /// Withdraw the DS record at `owner` with this RDATA, or every DS there (None).
    RemoveDs { owner: Name, rdata: Option<Vec<u8>> },
}

enum Job {
    /// One DNS UPDATE of the zones' operator, made at time `at`: all or nothing.
    Operate {
        ops: Vec<OperatorOp>,
        at: u64,
        reply: oneshot::Sender<Result<u32, WriteError>>,
    },
    /// One DNS UPDATE: all or nothing.
    Update {
        provider: Name,
        records: Vec<Publish>,
        reply: oneshot::Sender<Result<u32, WriteError>>,
    },
    /// The zone file was re-read (SIGHUP): apply what changed in it.
    Reload {
        records: Vec<Record>,
        rejected: usize,
        releases: Releases,
        /// The zone's DNSSEC keys as the config now names them (None: not signed there).
        signer: Option<Arc<crate::dnssec::ZoneSigner>>,
        reply: oneshot::Sender<Result<u32, WriteError>>,
    },
    /// A new private-lookup epoch was built: serve it.
    SwapPir(Arc<super::private::ZonePirState>, oneshot::Sender<()>),
    /// Finish the queue, write the zone file, then say so.
    Stop(oneshot::Sender<()>),
    /// The zone's file was removed: finish the queue but write nothing, then say so.
    Discard(oneshot::Sender<()>),
}

/// The way to a zone's writer.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Operate { .. } => "Operate",
            Job::Update { .. } => "Update",
            Job::Reload { .. } => "Reload",
            Job::SwapPir(..) => "SwapPir",
            Job::Stop(_) => "Stop",
            Job::Discard(_) => "Discard",
        })
    }
}

impl WriterHandle {
    /// Publishes the records (one UPDATE) and returns the serial that holds them, once
    /// the journal has them on disk.
    pub async fn update(&self, provider: Name, records: Vec<Publish>) -> Result<u32, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job::Update {
                provider,
                records,
                reply,
            })
            .map_err(|_| WriteError::Unavailable)?;
        rx.await.map_err(|_| WriteError::Unavailable)?
    }

    /// Applies the operator's changes at time `at` (one UPDATE) once durable.
    pub async fn operate(&self, ops: Vec<OperatorOp>, at: u64) -> Result<u32, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job::Operate { ops, at, reply })
            .map_err(|_| WriteError::Unavailable)?;
        rx.await.map_err(|_| WriteError::Unavailable)?
    }

    /// Applies what changed in the re-read zone file, and a change of the zone's DNSSEC
    /// keys (`signer`, a rollover step): the zone is then signed again whole.
    pub async fn reload(
        &self,
        checked: zones::CheckedZone,
        signer: Option<Arc<crate::dnssec::ZoneSigner>>,
    ) -> Result<u32, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Reload {
                records: checked.records,
                rejected: checked.rejected,
                releases: checked.releases,
                signer,
                reply,
            })
            .await
            .map_err(|_| WriteError::Unavailable)?;
        rx.await.map_err(|_| WriteError::Unavailable)?
    }

    /// Stops the writer once it has applied what is queued and written the zone file.
    pub async fn stop(&self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Job::Stop(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// Stops the writer of a zone whose file was removed: what is queued is applied and
    /// journaled, but the zone file is not written back.
    pub async fn discard(&self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Job::Discard(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// Everything a writer needs to know of the server.
#[derive(Clone)]
pub struct WriterContext {
    pub shared: Arc<Shared>,
    pub journal: JournalSettings,
    pub notify: Vec<SocketAddr>,
    pub listen: Vec<SocketAddr>,
    pub pir: Option<super::private::PirSettings>,
    /// A DP playing a misbehaving one (`serve_invalid_records`) keeps expired records.
    pub keep_expired: bool,
}

/// Where a zone's journal lives.
pub fn journal_path(zc: &ZoneConfig, settings: &JournalSettings) -> PathBuf {
    match &settings.dir {
        Some(dir) => {
            let name = zc.origin.to_string();
            let name = name.trim_end_matches('.');
            dir.join(format!(
                "{}.journal",
                if name.is_empty() { "root" } else { name }
            ))
        }
        None => {
            let mut p = zc.file.clone().into_os_string();
            p.push(".journal");
            PathBuf::from(p)
        }
    }
}

/// State the writer keeps besides the served version.
struct State {
    origin: Name,
    zone_file: PathBuf,
    journal: Journal,
    current: Arc<ServedZone>,
    /// The version the zone file on disk holds (read or last written).
    file_base: ZoneStore,
    history: VecDeque<Arc<Diff>>,
    watermarks: Watermarks,
    expiry: Expiry,
    /// The zone's release markers and where they are kept.
    releases: Releases,
    releases_path: PathBuf,
    changes_since_flush: usize,
    last_flush: Instant,
    /// When a signed zone's signatures are next checked for expiry.
    next_resign: Instant,
    ctx: WriterContext,
    notify: Arc<Notify>,
    pir_tx: Option<mpsc::UnboundedSender<PirChange>>,
}

use crate::sys::unix_now as now;

/// What the private-lookup updater hears of a commit: the owners whose mappings changed,
/// and whether a delegation came or went (the PIRCFG's child list is fixed per epoch).
/// Owners whose records changed, whether a delegation changed, and the serial committed.
type PirChange = (BTreeSet<Name>, bool, u32);

/// The second after which a record is no longer served (valid through `not_after`).
fn retire_at(owner: &Name, data: &RData, wm: &Watermarks) -> Option<u64> {
    match data {
        RData::Ssi(s) if s.withdrawn => {
            let until = wm
                .get(owner, &s.provider)
                .map_or(s.not_after, |w| w.until.max(s.not_after));
            Some(until.saturating_add(1))
        }
        RData::Ssi(s) => Some(s.not_after.saturating_add(1)),
        RData::ApKey(k) => Some(k.not_after.saturating_add(1)),
        _ => None,
    }
}

/// Starts a zone: reads the checked file, replays the journal onto it, builds the
/// private-lookup database, publishes the version and spawns its writer.
pub async fn start_zone(
    zc: ZoneConfig,
    checked: zones::CheckedZone,
    ctx: WriterContext,
) -> Result<WriterHandle, String> {
    let jpath = journal_path(&zc, &ctx.journal);
    let ctx2 = ctx.clone();
    let zc2 = zc.clone();
    let state = tokio::task::spawn_blocking(move || open_zone(zc2, checked, jpath, ctx2))
        .await
        .map_err(|e| e.to_string())??;
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = WriterHandle { tx };
    let mut state = state;
    if let Some(settings) = ctx.pir.clone() {
        let (ptx, prx) = mpsc::unbounded_channel();
        state.pir_tx = Some(ptx);
        tokio::spawn(pir_updater(
            zc.origin.clone(),
            ctx.shared.clone(),
            settings,
            prx,
            handle.clone(),
        ));
    }
    tokio::spawn(notifier(
        zc.origin.clone(),
        ctx.clone(),
        state.notify.clone(),
    ));
    tokio::spawn(run(state, rx));
    Ok(handle)
}

fn open_zone(
    zc: ZoneConfig,
    checked: zones::CheckedZone,
    jpath: PathBuf,
    ctx: WriterContext,
) -> Result<State, String> {
    let origin = zc.origin.clone();
    let file = zc.file.display().to_string();
    let releases_path = crate::zone::release::path_for(&zc.file);
    let mut releases = checked.releases;
    // Markers older than max_validity refuse nothing a DP would still accept.
    let horizon = now().saturating_sub(ctx.shared.update_limits.max_validity.as_secs());
    if releases.prune(horizon) {
        if let Err(e) = releases.save(&releases_path) {
            warn!(zone = %origin, "old release markers not dropped: {e}");
        }
    }
    let base = ZoneStore::build(origin.clone(), checked.records)
        .map_err(|e| format!("{file}: {e}"))?
        .compacted();
    let (journal, mut replay) = match Journal::open(&jpath) {
        Ok(x) => x,
        Err(JournalError::Corrupt { .. } | JournalError::Magic { .. }) => {
            // Not a torn tail but damage in the middle: keep the file for inspection and
            // start afresh from the zone file rather than refuse to serve.
            let aside = jpath.with_extension(format!("journal.damaged.{}", now()));
            warn!(zone = %origin, "journal {} is damaged; moved to {} and started anew", jpath.display(), aside.display());
            std::fs::rename(&jpath, &aside).map_err(|e| format!("{}: {e}", jpath.display()))?;
            Journal::open(&jpath).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut watermarks = Watermarks::from_journal(std::mem::take(&mut replay.watermarks));
    // Replay: the journal's diffs from the file's serial on.
    let file_serial = base.soa().serial;
    let mut current = base.clone();
    let mut history: VecDeque<Arc<Diff>> = VecDeque::new();
    let start = replay
        .diffs
        .iter()
        .position(|d| d.from_serial() == file_serial);
    let ends_at_file = replay
        .diffs
        .last()
        .is_none_or(|d| d.to_serial() == file_serial);
    let mut journal = journal;
    match start {
        Some(i) => {
            for d in &replay.diffs[i..] {
                if d.from_serial() != current.soa().serial {
                    warn!(zone = %origin, "journal breaks at serial {} (expected {}); later entries ignored", d.from_serial(), current.soa().serial);
                    break;
                }
                let cs = Changeset {
                    remove: d
                        .removed
                        .iter()
                        .filter(|r| !DERIVED_TYPES.contains(&r.data.rtype()))
                        .cloned()
                        .collect(),
                    add: d
                        .added
                        .iter()
                        .filter(|r| !DERIVED_TYPES.contains(&r.data.rtype()))
                        .cloned()
                        .collect(),
                };
                current = current
                    .apply(&cs, d.to.0.clone(), d.to.1)
                    .map_err(|e| format!("replaying {}: {e}", jpath.display()))?
                    .0;
            }
            info!(zone = %origin, from = file_serial, to = current.soa().serial, entries = replay.diffs.len() - i, "journal replayed");
        }
        None if ends_at_file => {}
        None => {
            let aside = jpath.with_extension(format!("journal.stale.{}", now()));
            warn!(zone = %origin, "zone file serial {file_serial} is not in journal {} (the file was replaced?): journal moved to {} and started anew", jpath.display(), aside.display());
            drop(journal);
            std::fs::rename(&jpath, &aside).map_err(|e| format!("{}: {e}", jpath.display()))?;
            journal = Journal::open(&jpath).map_err(|e| e.to_string())?.0;
        }
    }
    if start.is_some() || ends_at_file {
        // IXFR history: the contiguous run of diffs ending at the current serial.
        let mut want = current.soa().serial;
        for d in replay.diffs.iter().rev() {
            if d.to_serial() != want {
                break;
            }
            want = d.from_serial();
            history.push_front(Arc::new(d.clone()));
        }
        // Mappings the served version holds stand for their own marks; those the
        // journal's steps removed need one kept.
        for d in &replay.diffs {
            for r in &d.removed {
                if let RData::Ssi(s) = &r.data {
                    watermarks.note(&r.name, s);
                }
            }
        }
    }
    if let Some(signer) = &zc.dnssec {
        // Signed once whole here; every later version signs only what it changes.
        let started = Instant::now();
        current = current
            .sign_with(signer.clone(), now())
            .map_err(|e| format!("{file}: signing: {e}"))?;
        info!(zone = %origin, key_tag = signer.key().key_tag(), ms = started.elapsed().as_millis() as u64, "zone signed (DNSSEC)");
    }
    let mut expiry = Expiry::default();
    for r in current.zone_records().filter(|_| !ctx.keep_expired) {
        if let Some(t) = retire_at(&r.name, &r.data, &watermarks) {
            expiry.add(t, &r.name);
        }
    }
    let pir = match &ctx.pir {
        Some(settings) => {
            let state = zones::build_private(&current, settings, &ctx.shared.pir_secret)?;
            current = zones::with_pircfg(&current, &state)?;
            Some(Arc::new(state))
        }
        None => None,
    };
    let history_vec: Vec<Arc<Diff>> = history.iter().cloned().collect();
    let served = Arc::new(ServedZone::new(
        current,
        checked.rejected,
        pir,
        Arc::new(history_vec),
    ));
    info!(
        zone = %origin,
        records = served.store.record_count(),
        serial = served.store.soa().serial,
        journal = %jpath.display(),
        "zone loaded"
    );
    publish(&ctx.shared, served.clone());
    ctx.shared.stats.note_journal(&origin, journal.size());
    Ok(State {
        origin,
        zone_file: zc.file,
        journal,
        current: served,
        file_base: base,
        history,
        watermarks,
        expiry,
        releases,
        releases_path,
        changes_since_flush: 0,
        last_flush: Instant::now(),
        next_resign: Instant::now() + RESIGN_CHECK,
        ctx,
        notify: Arc::new(Notify::new()),
        pir_tx: None,
    })
}

/// Swaps one zone's version into the served set: in place when the zone is served
/// already, else as a new set with the zone added.
pub fn publish(shared: &Shared, zone: Arc<ServedZone>) {
    if let Some(slot) = shared.zones.load().slot(zone.store.origin()) {
        slot.store(zone);
        return;
    }
    shared.zones.rcu(|set| {
        let mut set = (**set).clone();
        set.insert(zone.clone());
        set
    });
}

/// A zone-file write running beside the writer: the version it writes and how many
/// changed records that version holds beyond the previous file.
type Rewrite = tokio::task::JoinHandle<(ZoneStore, usize, Result<(), String>)>;

/// Starts writing the zone file from the served version on a blocking thread: at a
/// million mappings that takes seconds, which the writer must not spend away from
/// UPDATEs.
fn start_rewrite(state: &State) -> Rewrite {
    let store = state.current.store.clone();
    let (origin, path) = (state.origin.clone(), state.zone_file.clone());
    let changes = state.changes_since_flush;
    tokio::task::spawn_blocking(move || {
        let result = write_zone_file(&store, &origin, &path);
        (store, changes, result)
    })
}

async fn wait_rewrite(
    rewrite: &mut Option<Rewrite>,
) -> Result<(ZoneStore, usize, Result<(), String>), tokio::task::JoinError> {
    match rewrite {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

async fn finish_rewrite(state: State, rewrite: Rewrite) -> Option<State> {
    rewrite_done(state, rewrite.await).await
}

async fn rewrite_done(
    state: State,
    result: Result<(ZoneStore, usize, Result<(), String>), tokio::task::JoinError>,
) -> Option<State> {
    match result {
        Ok((store, changes, Ok(()))) => blocking(state, move |s| compact(s, store, changes)).await,
        Ok((_, _, Err(e))) => {
            warn!(zone = %state.origin, "zone file not rewritten (the journal still holds every change): {e}");
            let mut state = state;
            state.last_flush = Instant::now();
            Some(state)
        }
        Err(e) => {
            warn!(zone = %state.origin, "zone file rewrite failed: {e}");
            Some(state)
        }
    }
}

async fn run(mut state: State, mut rx: mpsc::Receiver<Job>) {
    let mut stopping = Vec::new();
    let mut rewrite: Option<Rewrite> = None;
    // A rewrite that lands after the zone's file was removed puts it back.
    let mut recreated = false;
    loop {
        let wake = state.expiry.next();
        let sleep = match wake {
            Some(t) => Duration::from_millis(
                (t.saturating_mul(1000))
                    .saturating_sub(now_millis())
                    .min(86_400_000),
            ),
            None => Duration::from_secs(86_400),
        };
        let flush_in = state
            .ctx
            .journal
            .flush_interval
            .saturating_sub(state.last_flush.elapsed());
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { break };
                let mut jobs = vec![job];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                // A reload and a stop write the file in line: a write still running
                // must land first, or it would replace the newer file.
                if jobs.iter().any(|j| matches!(j, Job::Reload { .. } | Job::Stop(_) | Job::Discard(_))) {
                    if let Some(r) = rewrite.take() {
                        recreated = jobs.iter().any(|j| matches!(j, Job::Discard(_)));
                        let Some(s) = finish_rewrite(state, r).await else { return };
                        state = s;
                    }
                }
                let (stop, jobs): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| matches!(j, Job::Stop(_) | Job::Discard(_)));
                let Some(s) = blocking(state, move |s| commit_batch(s, jobs)).await else { return };
                state = s;
                if !stop.is_empty() {
                    stopping = stop;
                    break;
                }
            }
            _ = tokio::time::sleep(sleep), if wake.is_some() => {
                let Some(s) = blocking(state, expire).await else { return };
                state = s;
            }
            done = wait_rewrite(&mut rewrite), if rewrite.is_some() => {
                rewrite = None;
                let Some(s) = rewrite_done(state, done).await else { return };
                state = s;
            }
            _ = tokio::time::sleep(flush_in), if state.changes_since_flush > 0 && rewrite.is_none() => {
                rewrite = Some(start_rewrite(&state));
            }
            _ = tokio::time::sleep(state.next_resign.saturating_duration_since(Instant::now())),
                if state.current.store.signer().is_some() => {
                let Some(s) = blocking(state, resign).await else { return };
                state = s;
            }
        }
        if rewrite.is_none() && state.changes_since_flush >= state.ctx.journal.flush_changes {
            rewrite = Some(start_rewrite(&state));
        }
    }
    if let Some(r) = rewrite.take() {
        recreated = true;
        match finish_rewrite(state, r).await {
            Some(s) => state = s,
            None => return,
        }
    }
    let discard = stopping.iter().any(|j| matches!(j, Job::Discard(_)));
    let signal = state.notify.clone();
    if discard {
        if recreated {
            if let Err(e) = std::fs::remove_file(&state.zone_file) {
                warn!(zone = %state.origin, "{}: {e}", state.zone_file.display());
            }
        }
        drop(state);
    } else if state.changes_since_flush > 0 {
        let _ = blocking(state, flush).await;
    } else {
        drop(state);
    }
    // The notifier ends once it is the last holder of the signal.
    signal.notify_one();
    for job in stopping {
        if let Job::Stop(done) | Job::Discard(done) = job {
            let _ = done.send(());
        }
    }
}

/// Runs a step of the writer on a blocking thread (journal syncs and file writes block).
/// A panic there stops the writer; the zone keeps serving its last version read-only.
async fn blocking(
    state: State,
    step: impl FnOnce(State) -> State + Send + 'static,
) -> Option<State> {
    let origin = state.origin.clone();
    match tokio::task::spawn_blocking(move || step(state)).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(zone = %origin, "the zone's writer stopped: {e}; the zone is served read-only until restart");
            None
        }
    }
}

use crate::sys::unix_millis as now_millis;

/// A job's answer, sent once the batch is durable: the serial that holds it, or why not.
type Reply = (
    oneshot::Sender<Result<u32, WriteError>>,
    Result<u32, WriteError>,
);

/// A working copy for one batch: jobs apply to it one by one.
struct Work {
    store: ZoneStore,
    diffs: Vec<Diff>,
    /// Watermark values before the batch touched them, to undo a failed commit.
    undo: Vec<Saved>,
    /// Releases made by the batch (owner, time), stored before the journal entry.
    releases: Vec<(Name, u64)>,
}

impl Work {
    fn new(store: ZoneStore) -> Work {
        Work {
            store,
            diffs: Vec::new(),
            undo: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// The release that refuses a mapping of `owner` verified at `verified_at`, counting
    /// releases earlier in this batch.
    fn released(&self, stored: &Releases, owner: &Name, verified_at: u64) -> Option<u64> {
        let batch = self
            .releases
            .iter()
            .filter(|(o, t)| o == owner && verified_at < *t)
            .map(|(_, t)| *t);
        stored
            .refuses(owner, verified_at)
            .into_iter()
            .chain(batch)
            .max()
    }
}

impl Work {
    /// Applies `cs` to the working version. A mapping in the zone is its own watermark;
    /// one that leaves the zone (replaced, withdrawn, released, expired, edited out of
    /// the file) has its seq and validity kept in `wm`, undone if the batch fails.
    fn commit(&mut self, cs: &Changeset, wm: &mut Watermarks) -> Result<u32, WriteError> {
        let mut soa = self.store.soa().clone();
        soa.serial = next_serial(soa.serial);
        let (next, diff) = self
            .store
            .apply(cs, soa, self.store.soa_ttl())
            .map_err(|e| WriteError::Refused(e.to_string()))?;
        self.store = next;
        for r in &diff.removed {
            if let RData::Ssi(s) = &r.data {
                self.undo.push(wm.note_saving(&r.name, s));
            }
        }
        let serial = diff.to_serial();
        self.diffs.push(diff);
        Ok(serial)
    }
}

/// The changeset of one UPDATE, checked against the working version: a record replaces
/// its provider's record at that owner; its seq must beat every seq seen there.
fn update_changeset(
    work: &Work,
    releases: &Releases,
    wm: &Watermarks,
    provider: &Name,
    records: &[Publish],
) -> Result<Changeset, WriteError> {
    let store = &work.store;
    let mut cs = Changeset::default();
    // Seqs within this UPDATE count too.
    let mut seen: HashMap<&Name, u64> = HashMap::new();
    for p in records {
        let what = format!("{} SSI seq {}", p.owner, p.ssi.seq);
        match store.lookup(p.owner.as_wire()) {
            Lookup::OutOfZone => {
                return Err(WriteError::Refused(format!(
                    "{what}: outside the zone {}",
                    store.origin()
                )))
            }
            Lookup::Referral { .. } => {
                return Err(WriteError::Refused(format!(
                    "{what}: the name is at or below a delegation; publish to the child zone's DP"
                )))
            }
            Lookup::Exact(_) | Lookup::NxDomain => {}
        }
        if let Some(t) = work.released(releases, &p.owner, p.ssi.verified_at) {
            return Err(WriteError::Refused(format!(
                "{what}: the number or address was released at {} and this mapping was verified before that (verified {}); verify it again with its new holder",
                crate::record::format_time(t),
                crate::record::format_time(p.ssi.verified_at)
            )));
        }
        // The provider's mapping there now, whose seq counts as seen.
        let mut replaced = Vec::new();
        if let Lookup::Exact(node) = store.lookup(p.owner.as_wire()) {
            if let Some(set) = node.rrset(TYPE_SSI) {
                replaced.extend(
                    set.records()
                        .iter()
                        .filter_map(record_from_wire)
                        .filter(|r| matches!(&r.data, RData::Ssi(s) if s.provider == *provider)),
                );
            }
        }
        let in_zone = replaced.iter().filter_map(|r| match &r.data {
            RData::Ssi(s) => Some(s.seq),
            _ => None,
        });
        let high = wm
            .get(&p.owner, provider)
            .map(|w| w.seq)
            .into_iter()
            .chain(seen.get(&p.owner).copied())
            .chain(in_zone)
            .max();
        if let Some(high) = high {
            if p.ssi.seq <= high {
                return Err(WriteError::Refused(format!(
                    "{what}: seq not above {high} already seen for provider {provider}"
                )));
            }
        }
        seen.insert(&p.owner, p.ssi.seq);
        cs.remove.extend(replaced);
        cs.remove.retain(|r| !(r.name == p.owner && cs.add.iter().any(|a| a.name == p.owner && matches!((&a.data, &r.data), (RData::Ssi(x), RData::Ssi(y)) if x.provider == y.provider && x.seq == y.seq))));
        // A second record for the same owner in this UPDATE replaces the first.
        cs.add.retain(|a| {
            !(a.name == p.owner && matches!(&a.data, RData::Ssi(s) if s.provider == *provider))
        });
        cs.add.push(Record {
            name: p.owner.clone(),
            ttl: p.ttl,
            data: RData::Ssi(Box::new(p.ssi.clone())),
            line: 0,
        });
    }
    Ok(cs)
}

fn commit_batch(mut state: State, jobs: Vec<Job>) -> State {
    let mut work = Work::new(state.current.store.clone());
    let mut replies: Vec<Reply> = Vec::new();
    let mut reloaded = None;
    let mut new_pir = None;
    let mut swapped = Vec::new();
    // A version with no new records to publish all the same (new keys, a new epoch).
    let mut republish = false;
    for job in jobs {
        match job {
            Job::Update {
                provider,
                records,
                reply,
            } => {
                let result = update_changeset(
                    &work,
                    &state.releases,
                    &state.watermarks,
                    &provider,
                    &records,
                )
                .and_then(|cs| work.commit(&cs, &mut state.watermarks));
                replies.push((reply, result));
            }
            Job::Operate { ops, at, reply } => {
                let result = operator_changeset(&work.store, &ops).and_then(|(cs, released)| {
                    let serial = work.commit(&cs, &mut state.watermarks)?;
                    work.releases
                        .extend(released.into_iter().map(|owner| (owner, at)));
                    Ok(serial)
                });
                replies.push((reply, result));
            }
            Job::Reload {
                records,
                rejected,
                releases,
                signer,
                reply,
            } => {
                // The markers file as the operator left it (read with the zone file).
                state.releases = releases;
                republish |= rekey(&state.origin, &mut work.store, signer);
                // What the operator changed in the file since it was read or written,
                // applied to the current version (which may hold newer updates).
                let file = match ZoneStore::build(state.origin.clone(), records.clone()) {
                    Ok(f) => f,
                    Err(e) => {
                        replies.push((reply, Err(WriteError::Refused(e))));
                        continue;
                    }
                };
                let cs =
                    crate::zone::update::diff_against(&state.file_base, &records, DERIVED_TYPES);
                let soa_changed = file.soa() != state.file_base.soa();
                if cs.is_empty() && !soa_changed {
                    replies.push((reply, Ok(work.store.soa().serial)));
                    continue;
                }
                cs.add.iter().for_each(|r| {
                    if let RData::Ssi(s) = &r.data {
                        debug!(owner = %r.name, seq = s.seq, "mapping added by the zone file");
                    }
                });
                let result = work.commit(&cs, &mut state.watermarks).map(|serial| {
                    // An operator who raised the serial in the file past ours gets theirs.
                    let wanted = file.soa().serial;
                    if serial_newer(wanted, serial) {
                        let mut soa = file.soa().clone();
                        soa.serial = wanted;
                        if let Some(last) = work.diffs.last_mut() {
                            last.to = (soa.clone(), file.soa_ttl());
                        }
                        let s = work.store.clone();
                        if let Ok((n, _)) = s.apply(&Changeset::default(), soa, file.soa_ttl()) {
                            work.store = n;
                        }
                        wanted
                    } else {
                        serial
                    }
                });
                if result.is_ok() {
                    reloaded = Some(rejected);
                }
                replies.push((reply, result));
            }
            Job::SwapPir(p, done) => {
                new_pir = Some(p);
                swapped.push(done);
            }
            Job::Stop(_) | Job::Discard(_) => {}
        }
    }
    let mut pir = state.current.pir.clone();
    if let Some(p) = new_pir {
        match zones::with_pircfg(&work.store, &p) {
            Ok(s) => {
                work.store = s;
                info!(zone = %state.origin, "serving the new private-lookup epoch");
                pir = Some(p);
                republish = true;
            }
            Err(e) => warn!(zone = %state.origin, "new private-lookup epoch not served: {e}"),
        }
    }
    if republish {
        let served = ServedZone::new(
            work.store.clone(),
            state.current.rejected,
            pir,
            state.current.history.clone(),
        );
        state.current = Arc::new(served);
        if work.diffs.is_empty() {
            publish(&state.ctx.shared, state.current.clone());
        }
    }
    let state = finish(state, work, replies, reloaded);
    for done in swapped {
        let _ = done.send(());
    }
    state
}

/// Makes the batch durable, then visible, then answers it.
fn finish(mut state: State, work: Work, replies: Vec<Reply>, reloaded: Option<usize>) -> State {
    if work.diffs.is_empty() {
        for (tx, r) in replies {
            let _ = tx.send(r);
        }
        return state;
    }
    let journaled: Vec<Diff> = work
        .diffs
        .iter()
        .map(|d| Diff {
            from: d.from.clone(),
            to: d.to.clone(),
            removed: d
                .removed
                .iter()
                .filter(|r| !DERIVED_TYPES.contains(&r.data.rtype()))
                .cloned()
                .collect(),
            added: d
                .added
                .iter()
                .filter(|r| !DERIVED_TYPES.contains(&r.data.rtype()))
                .cloned()
                .collect(),
        })
        .collect();
    // Release markers first: a crash before the journal entry leaves a marker that
    // refuses more, never an acknowledged release without one.
    let mut markers_before = None;
    if !work.releases.is_empty() {
        let mut next = state.releases.clone();
        for (owner, t) in &work.releases {
            next.mark(owner.clone(), *t);
        }
        if let Err(e) = next.save(&state.releases_path) {
            warn!(zone = %state.origin, "release markers not stored, nothing applied: {e}");
            return fail_batch(state, work.undo, replies, &e.to_string());
        }
        markers_before = Some(std::mem::replace(&mut state.releases, next));
    }
    let started = Instant::now();
    if let Err(e) = state
        .journal
        .append(&journaled.iter().collect::<Vec<_>>(), &[])
    {
        warn!(zone = %state.origin, "journal write failed, nothing applied: {e}");
        if let Some(before) = markers_before {
            state.releases = before;
            if let Err(e) = state.releases.save(&state.releases_path) {
                warn!(zone = %state.origin, "release markers of the failed change kept (they refuse more, never less): {e}");
            }
        }
        return fail_batch(state, work.undo, replies, &e.to_string());
    }
    let sync = started.elapsed();
    state.ctx.shared.stats.journal_sync.observe(sync);
    state
        .ctx
        .shared
        .stats
        .note_journal(&state.origin, state.journal.size());
    let mut owners = BTreeSet::new();
    let mut cuts_changed = false;
    let mut changed = 0;
    for d in journaled {
        changed += d.removed.len() + d.added.len();
        for r in d.added.iter().filter(|_| !state.ctx.keep_expired) {
            if let Some(t) = retire_at(&r.name, &r.data, &state.watermarks) {
                state.expiry.add(t, &r.name);
            }
        }
        for r in d.removed.iter().chain(&d.added) {
            match &r.data {
                RData::Ssi(_) => {
                    owners.insert(r.name.clone());
                }
                RData::Ns(_) if r.name != state.origin => cuts_changed = true,
                _ => {}
            }
        }
        state.history.push_back(Arc::new(d));
    }
    while state.history.len() > state.ctx.journal.depth.max(1) {
        state.history.pop_front();
    }
    state.changes_since_flush += changed;
    let history: Vec<Arc<Diff>> = state.history.iter().cloned().collect();
    let rejected = reloaded.unwrap_or(state.current.rejected);
    let served = Arc::new(ServedZone::new(
        work.store,
        rejected,
        state.current.pir.clone(),
        Arc::new(history),
    ));
    state.current = served.clone();
    publish(&state.ctx.shared, served);
    debug!(zone = %state.origin, serial = state.current.store.soa().serial, records = changed, sync_ms = sync.as_secs_f64() * 1e3, "committed");
    for (tx, r) in replies {
        let _ = tx.send(r);
    }
    state.notify.notify_one();
    if let Some(tx) = &state.pir_tx {
        // Every serial goes, changed owners or not: replica holders learn from the table
        // which zone serial it reflects.
        let _ = tx.send((owners, cuts_changed, state.current.store.soa().serial));
    }
    if reloaded.is_some() {
        // The file now differs from the served version only by what the journal adds:
        // write it out, so the next hand edit is made against what is served.
        state = flush(state);
    }
    state
}

/// Answers every job of a batch that could not be stored, undoing its watermarks.
fn fail_batch(mut state: State, undo: Vec<Saved>, replies: Vec<Reply>, error: &str) -> State {
    for saved in undo.into_iter().rev() {
        state.watermarks.restore(saved);
    }
    let msg = format!("the change could not be stored ({error}); nothing was applied");
    for (tx, r) in replies {
        let _ = tx.send(r.and(Err(WriteError::Storage(msg.clone()))));
    }
    state
}

/// Every record at `owner` and below it. Names below a phone number are rare (glue of a
/// delegation), so the zone is scanned only when the node has children.
fn records_at_and_below(store: &ZoneStore, owner: &Name) -> Vec<Record> {
    let Some(node) = store.node(owner.as_wire()) else {
        return Vec::new();
    };
    let mut out: Vec<Record> = node
        .rrsets
        .iter()
        .flat_map(|s| s.records().into_iter().filter_map(|r| record_from_wire(&r)))
        .collect();
    if node.children > 0 {
        out.extend(
            store
                .zone_records()
                .filter(|r| r.name != *owner && r.name.is_subdomain_of(owner)),
        );
    }
    out
}

/// The changeset of one operator UPDATE and the owners it releases.
fn operator_changeset(
    store: &ZoneStore,
    ops: &[OperatorOp],
) -> Result<(Changeset, Vec<Name>), WriteError> {
    let origin = store.origin();
    let mut cs = Changeset::default();
    let mut released = Vec::new();
    let below_apex = |owner: &Name, what: &str| {
        if owner == origin || !owner.is_subdomain_of(origin) {
            return Err(WriteError::Refused(format!(
                "{what} {owner}: not a name below the zone {origin}"
            )));
        }
        Ok(())
    };
    // A name at or below a cut other than itself belongs to the child zone.
    let in_child = |owner: &Name| match store.lookup(owner.as_wire()) {
        Lookup::Referral { cut, .. } => cut != owner.as_wire(),
        _ => false,
    };
    let remove = |cs: &mut Changeset, r: Record| {
        if !cs.remove.contains(&r) {
            cs.remove.push(r);
        }
    };
    for op in ops {
        match op {
            OperatorOp::Release(owner) => {
                below_apex(owner, "release of")?;
                if matches!(store.lookup(owner.as_wire()), Lookup::Referral { .. }) {
                    return Err(WriteError::Refused(format!(
                        "release of {owner}: the name is delegated; release it at the child zone's DP"
                    )));
                }
                if let Some(node) = store.node(owner.as_wire()) {
                    for set in node.rrsets.iter().filter(|s| s.rtype == TYPE_SSI) {
                        set.records()
                            .iter()
                            .filter_map(record_from_wire)
                            .for_each(|r| remove(&mut cs, r));
                    }
                }
                released.push(owner.clone());
            }
            OperatorOp::Delegate { owner, records } => {
                below_apex(owner, "delegation of")?;
                if in_child(owner) {
                    return Err(WriteError::Refused(format!(
                        "delegation of {owner}: the name lies below another delegation"
                    )));
                }
                for r in records_at_and_below(store, owner) {
                    remove(&mut cs, r);
                }
                cs.add.extend(records.iter().cloned());
            }
            OperatorOp::AddDs(record) => {
                let owner = &record.name;
                below_apex(owner, "DS at")?;
                let delegated_now = ops
                    .iter()
                    .any(|o| matches!(o, OperatorOp::Delegate { owner: d, .. } if d == owner));
                if !delegated_now && !store.node(owner.as_wire()).is_some_and(|n| n.is_cut) {
                    return Err(WriteError::Refused(format!(
                        "DS at {owner}: the name is not delegated (a DS belongs at a zone cut)"
                    )));
                }
                cs.add.push(record.clone());
            }
            OperatorOp::RemoveDs { owner, rdata } => {
                below_apex(owner, "DS at")?;
                let existing: Vec<Record> = records_at_and_below(store, owner)
                    .into_iter()
                    .filter(|r| r.name == *owner && r.data.rtype() == crate::dnssec::TYPE_DS)
                    .filter(|r| rdata.as_ref().is_none_or(|d| r.data.to_wire() == *d))
                    .collect();
                if existing.is_empty() && rdata.is_some() {
                    return Err(WriteError::Refused(format!(
                        "DS at {owner}: no such DS record to remove"
                    )));
                }
                for r in existing {
                    remove(&mut cs, r);
                }
            }
            OperatorOp::Undelegate(owner) => {
                below_apex(owner, "undelegation of")?;
                let at = store.node(owner.as_wire());
                if !at.is_some_and(|n| n.is_cut) {
                    return Err(WriteError::Refused(format!(
                        "undelegation of {owner}: the name is not delegated"
                    )));
                }
                for r in records_at_and_below(store, owner) {
                    if r.name != *owner || matches!(r.data, RData::Ns(_)) {
                        remove(&mut cs, r);
                    }
                }
            }
        }
    }
    // A record both removed and added (the same delegation again) stays.
    let (remove, add): (Vec<Record>, Vec<Record>) = (
        cs.remove
            .iter()
            .filter(|r| !cs.add.contains(r))
            .cloned()
            .collect(),
        cs.add
            .iter()
            .filter(|r| !cs.remove.contains(r))
            .cloned()
            .collect(),
    );
    Ok((Changeset { remove, add }, released))
}

/// Signs `store` again whole when the config names other DNSSEC keys for it than it is
/// signed with (a rollover step); true when it did. Serving a signed zone unsigned needs a
/// restart: its signatures stay until then.
fn rekey(
    origin: &Name,
    store: &mut ZoneStore,
    signer: Option<Arc<crate::dnssec::ZoneSigner>>,
) -> bool {
    match (store.signer(), signer) {
        (Some(current), Some(next)) if current.same_keys(&next) => false,
        (_, Some(next)) => {
            let tag = next.key().key_tag();
            match store.clone().sign_with(next, now()) {
                Ok(signed) => {
                    *store = signed;
                    info!(zone = %origin, key_tag = tag, "DNSSEC keys changed: zone signed again");
                    true
                }
                Err(e) => {
                    warn!(zone = %origin, "DNSSEC keys not changed: {e}");
                    false
                }
            }
        }
        (Some(_), None) => {
            warn!(zone = %origin, "dnssec_key removed: the zone stays signed until a restart");
            false
        }
        (None, None) => false,
    }
}

/// Makes again the signatures near expiry (DNSSEC). Records do not change, so there is no
/// diff, serial or journal entry: the new version only replaces signatures.
fn resign(mut state: State) -> State {
    state.next_resign = Instant::now() + RESIGN_CHECK;
    match state.current.store.resigned(now()) {
        Ok(Some(store)) => {
            info!(zone = %state.origin, "signatures refreshed");
            let served = Arc::new(ServedZone::new(
                store,
                state.current.rejected,
                state.current.pir.clone(),
                state.current.history.clone(),
            ));
            state.current = served.clone();
            publish(&state.ctx.shared, served);
        }
        Ok(None) => {}
        Err(e) => warn!(zone = %state.origin, "signatures not refreshed: {e}"),
    }
    state
}

/// Removes what has retired by now: one changeset, through the journal like any change.
fn expire(mut state: State) -> State {
    let now = now();
    let owners = state.expiry.take_due(now);
    let mut cs = Changeset::default();
    for owner in &owners {
        let Lookup::Exact(node) = state.current.store.lookup(owner.as_wire()) else {
            continue;
        };
        for set in node
            .rrsets
            .iter()
            .filter(|s| s.rtype == TYPE_SSI || s.rtype == TYPE_APKEY)
        {
            for r in set.records().iter().filter_map(record_from_wire) {
                match retire_at(&r.name, &r.data, &state.watermarks) {
                    Some(t) if t <= now => cs.remove.push(r),
                    Some(t) => {
                        state.expiry.add(t, &r.name);
                    }
                    None => {}
                }
            }
        }
    }
    if cs.is_empty() {
        return state;
    }
    info!(zone = %state.origin, records = cs.remove.len(), "removing expired records");
    let mut work = Work::new(state.current.store.clone());
    if let Err(e) = work.commit(&cs, &mut state.watermarks) {
        warn!(zone = %state.origin, "expiry not applied: {e}");
        return state;
    }
    let before = state.current.store.soa().serial;
    state = finish(state, work, Vec::new(), None);
    if state.current.store.soa().serial == before {
        // The journal refused it: try again in a second.
        for r in cs.remove {
            state.expiry.add(now + 1, &r.name);
        }
    }
    state
}

/// Writes the zone file from `store` (temporary name, rename). Pure I/O on a snapshot,
/// so it can run beside the writer.
fn write_zone_file(store: &ZoneStore, origin: &Name, path: &std::path::Path) -> Result<(), String> {
    let mut records: Vec<Record> = store
        .zone_records()
        .filter(|r| !DERIVED_TYPES.contains(&r.data.rtype()))
        .collect();
    crate::zone::sort_canonical(&mut records);
    let zone = ZoneFile {
        origin: origin.clone(),
        records,
        source: path.display().to_string(),
    };
    zone.save(path, crate::zone::WriteStyle::Native)
        .map_err(|e| e.to_string())
}

/// Writes the zone file from the served version and cuts the journal back, in line
/// (reload and shutdown: the file must hold what is served when they finish).
fn flush(mut state: State) -> State {
    let store = state.current.store.clone();
    if let Err(e) = write_zone_file(&store, &state.origin, &state.zone_file) {
        warn!(zone = %state.origin, "zone file not rewritten (the journal still holds every change): {e}");
        state.last_flush = Instant::now();
        return state;
    }
    let changes = state.changes_since_flush;
    compact(state, store, changes)
}

/// After the zone file holds `written`: cuts the journal back to the configured depth,
/// keeping the seq watermarks. `changes` is what the file now holds beyond the last one.
fn compact(mut state: State, written: ZoneStore, changes: usize) -> State {
    let serial = written.soa().serial;
    state.file_base = written;
    state.changes_since_flush = state.changes_since_flush.saturating_sub(changes);
    state.last_flush = Instant::now();
    // Replay starts at the file's serial: the kept diffs must reach back to it, or the
    // journal keeps everything until the next rewrite.
    let reaches = serial == state.current.store.soa().serial
        || state.history.iter().any(|d| d.from_serial() == serial);
    if !reaches {
        info!(zone = %state.origin, serial, "journal not compacted: more changes came in than it keeps while the zone file was written");
        return state;
    }
    let now = now();
    state.watermarks.retain_valid(now);
    let marks = state.watermarks.to_journal();
    let keep: Vec<&Diff> = state.history.iter().map(|d| &**d).collect();
    match state.journal.rewrite(&keep, &marks) {
        Ok(()) => {
            info!(zone = %state.origin, serial, journal_bytes = state.journal.size(), "zone file rewritten, journal compacted");
            state
                .ctx
                .shared
                .stats
                .note_journal(&state.origin, state.journal.size());
        }
        Err(e) => warn!(zone = %state.origin, "journal not compacted: {e}"),
    }
    state
}

/// Sends NOTIFY after commits, at most one round at a time: commits in between are
/// covered by the next round, which carries the newest serial anyway. Secondaries get
/// it signed with the first `[axfr] keys` key (unsigned without one), subscribed resolvers
/// signed with their key (read at each round, so a
/// reload's subscribers apply from the next change).
async fn notifier(origin: Name, ctx: WriterContext, signal: Arc<Notify>) {
    use super::notify::Target;
    loop {
        signal.notified().await;
        if Arc::strong_count(&signal) == 1 {
            // The writer is gone.
            return;
        }
        let subs = ctx.shared.subscribers.load_full();
        // Secondaries get NOTIFY signed with the first transfer key, when there is one,
        // as they will sign their transfer requests.
        let xfr_key = ctx.shared.axfr_keys.load().first().cloned();
        let targets: Vec<Target> = ctx
            .notify
            .iter()
            .map(|&addr| Target {
                addr,
                key: xfr_key.clone(),
            })
            .chain(subs.targets.iter().map(|&(addr, k)| Target {
                addr,
                key: subs.keys.get(k).cloned(),
            }))
            .collect();
        if targets.is_empty() {
            continue;
        }
        ctx.shared
            .stats
            .notify_sent
            .fetch_add(targets.len() as u64, std::sync::atomic::Ordering::Relaxed);
        super::notify::send_all(vec![origin.clone()], targets, ctx.listen.clone()).await;
    }
}

/// Keeps the private-lookup database in step with the zone: for every batch of changed
/// owners, their current records are re-sealed in the current epoch. When the table
/// cannot take a change, a new epoch is built beside the serving one and swapped in.
async fn pir_updater(
    origin: Name,
    shared: Arc<Shared>,
    settings: super::private::PirSettings,
    mut rx: mpsc::UnboundedReceiver<PirChange>,
    writer: WriterHandle,
) {
    while let Some((mut owners, mut cuts_changed, mut serial)) = rx.recv().await {
        while let Ok((more, cuts, s)) = rx.try_recv() {
            owners.extend(more);
            cuts_changed |= cuts;
            serial = s;
        }
        let shared = shared.clone();
        let origin2 = origin.clone();
        let settings = settings.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let zones = shared.zones.load_full();
            let zone = zones.get(&origin2)?;
            let state = zone.pir.clone()?;
            let changes: Vec<(String, Vec<Vec<u8>>)> = owners
                .iter()
                .map(|o| (o.to_string(), zones::private_entry(&zone.store, o)))
                .collect();
            let updated = if cuts_changed {
                Err("the zone's delegations changed".to_string())
            } else if changes.is_empty() {
                state.reflects(serial);
                return None;
            } else {
                state.update(changes).map_err(|e| e.to_string())
            };
            match updated {
                Ok(report) => {
                    state.reflects(serial);
                    debug!(zone = %origin2, ?report, "private-lookup database updated");
                    None
                }
                Err(e) => {
                    info!(zone = %origin2, "private-lookup database needs a new epoch: {e}");
                    match zones::build_private(&zone.store, &settings, &shared.pir_secret) {
                        Ok(s) => Some(Arc::new(s)),
                        Err(e) => {
                            warn!(zone = %origin2, "new private-lookup epoch failed: {e}");
                            None
                        }
                    }
                }
            }
        })
        .await;
        if let Ok(Some(new_state)) = outcome {
            // Changes committed while it was built are queued here; they are applied
            // once the new epoch serves, so wait for the swap.
            let (done, swapped) = oneshot::channel();
            if writer.tx.send(Job::SwapPir(new_state, done)).await.is_ok() {
                let _ = swapped.await;
            }
        }
    }
}
