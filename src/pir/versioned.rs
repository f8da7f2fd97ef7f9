//! A PIR database that changes while queries read it (read-copy-update), shared by the
//! schemes' servers.
//!
//! A query takes the current version once, lock-free, and keeps it (an `Arc`) until its pass
//! over the database ends, so it reads every plaintext of one version, never a half-written
//! one. An update is prepared off to the side from the version it read
//! ([`Versioned::load`]), then committed: under the writer lock, if no other update was
//! committed since, the next version is made from the current one (sharing what did not
//! change) and stored with one atomic pointer swap. Queries already running finish on the
//! old version; nobody waits for a query and no query waits for the writer.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::PirError;

/// One version of a database.
#[derive(Debug)]
pub(crate) struct Version<T> {
    /// Bumped by every commit; a prepared update names the version it was made from.
    pub generation: u64,
    pub value: T,
}

/// The current version of a database and the lock that serialises commits.
pub(crate) struct Versioned<T> {
    current: ArcSwap<Version<T>>,
    writer: Mutex<()>,
}

impl<T> Versioned<T> {
    pub fn new(value: T) -> Versioned<T> {
        Versioned {
            current: ArcSwap::from_pointee(Version {
                generation: 0,
                value,
            }),
            writer: Mutex::new(()),
        }
    }

    /// The current version, kept alive for as long as the caller holds it.
    pub fn load(&self) -> Arc<Version<T>> {
        self.current.load_full()
    }

    /// Stores `next(current)` as the next version, provided the current one is still
    /// `prepared_at` (the generation the update was prepared from); otherwise nothing changes.
    pub fn commit<F>(&self, prepared_at: u64, next: F) -> Result<(), PirError>
    where
        F: FnOnce(&T) -> Result<T, PirError>,
    {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if current.generation != prepared_at {
            return Err(PirError::Internal(format!(
                "committing a PIR update prepared at generation {prepared_at}; the database is at {}",
                current.generation
            )));
        }
        let value = next(&current.value)?;
        self.current.store(Arc::new(Version {
            generation: current.generation + 1,
            value,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_their_version_and_stale_commits_change_nothing() {
        let db = Versioned::new(vec![1, 2, 3]);
        let reader = db.load();
        let prepared = db.load().generation;
        db.commit(prepared, |v| Ok(v.iter().map(|x| x * 10).collect()))
            .expect("commit");
        assert_eq!(reader.value, vec![1, 2, 3]);
        assert_eq!(db.load().value, vec![10, 20, 30]);
        assert_eq!(db.load().generation, 1);
        assert!(db.commit(prepared, |_| Ok(Vec::new())).is_err());
        assert!(db
            .commit(1, |_| Err(PirError::Internal("refused".into())))
            .is_err());
        assert_eq!(db.load().value, vec![10, 20, 30]);
        assert_eq!(db.load().generation, 1);
    }
}
