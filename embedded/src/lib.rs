//! A redb database that recovers from disk faults by itself, for the embedded log and store.
//!
//! redb latches the first failed I/O (a full disk, say): from then on every call on that
//! `Database` fails with "previous I/O error" until it is closed and opened again, which
//! recovers the file to its last durable commit. [`Db`] does that on its own. The first fatal
//! error marks it failed and starts one recovery thread (never one per caller), which retries
//! with a doubling pause: it first writes and fsyncs a probe file beside the database, so a
//! disk that is still full is not reopened again and again, then closes the database and
//! opens it anew. Calls never wait for a recovery: while one holds the database they fail at
//! once with [`DbError::Recovering`], and calls in flight when the fault hit get redb's error.
//! Nothing committed durably is lost; commits made with `Durability::None` since the last
//! durable one are (redb drops them when a failed database closes).

use redb::Database;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError, Weak};
use std::time::Duration;

/// First and longest pause between recovery attempts.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// What the probe writes: a disk with less room than this is still full, for our purposes.
const PROBE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error("{what} {path}: {source}", path = path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recovering from a disk fault ({0}); retry shortly")]
    Recovering(String),
    /// redb locks its file: only one process may have it open.
    #[error("{path} is open in another process (a running `tidings standalone`? stop it first)", path = .0.display())]
    InUse(PathBuf),
}

/// Whether `error` means the database itself is broken (and must be reopened), rather than
/// this one call.
pub fn is_fatal(error: &redb::Error) -> bool {
    matches!(
        error,
        redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::DatabaseClosed
            | redb::Error::LockPoisoned(_)
    )
}

/// A redb database that reopens itself after a fatal I/O error. Clones share one database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    probe: PathBuf,
    /// `None` between closing a failed database and opening it again. Calls hold the read
    /// side for their whole transaction; only a recovery takes the write side.
    db: RwLock<Option<Database>>,
    /// Set from the first fatal error until a recovery succeeds (the fast path of
    /// [`Db::writable`]; `health` is the truth).
    failed: AtomicBool,
    health: Mutex<Health>,
    reopens: AtomicU64,
}

#[derive(Default)]
struct Health {
    /// The error that failed the database, while it is failed.
    error: Option<String>,
    /// A recovery thread is running.
    recovering: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes of pages each database keeps cached in memory (G7). redb's default is 1 GiB per
/// database, which a busy log fills with pages it already wrote: memory that grows with
/// traffic, not with what is read back (readers follow the tail, which stays cached).
pub const CACHE_BYTES: usize = 16 << 20;

fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

impl Db {
    /// Opens (or creates) the database at `path`, creating its directory.
    pub fn create(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                what: "creating",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = match builder().create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(DbError::InUse(path.to_path_buf()))
            }
            Err(error) => return Err(redb::Error::from(error).into()),
        };
        let mut probe = path.as_os_str().to_owned();
        probe.push(".probe");
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                probe: probe.into(),
                db: RwLock::new(Some(db)),
                failed: AtomicBool::new(false),
                health: Mutex::new(Health::default()),
                reopens: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `work` on the database. A fatal error fails it and starts the recovery; while a
    /// recovery holds it, this returns [`DbError::Recovering`] at once.
    pub fn run<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, DbError> {
        let guard = match self.inner.db.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return Err(self.inner.recovering()),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        let Some(db) = guard.as_ref() else {
            return Err(self.inner.recovering());
        };
        match work(db) {
            Ok(value) => Ok(value),
            Err(error) => {
                // Still under the read guard: the error is this database's, not that of one
                // a recovery might have opened in between.
                if is_fatal(&error) {
                    self.inner.fail(&error);
                }
                Err(error.into())
            }
        }
    }

    /// `Ok` unless the database failed and has not recovered yet. No I/O: the recovery
    /// thread does the probing.
    pub fn writable(&self) -> Result<(), DbError> {
        if self.inner.failed.load(Ordering::Acquire) {
            Err(self.inner.recovering())
        } else {
            Ok(())
        }
    }

    /// How many times the database was reopened after a fault.
    pub fn reopens(&self) -> u64 {
        self.inner.reopens.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn recovering(&self) -> DbError {
        let why = lock(&self.health).error.clone();
        DbError::Recovering(why.unwrap_or_else(|| "reopening".into()))
    }

    /// Marks the database failed and starts the recovery thread unless one runs.
    fn fail(self: &Arc<Self>, error: &redb::Error) {
        let mut health = lock(&self.health);
        if health.error.is_none() {
            tracing::error!(
                path = %self.path.display(),
                %error,
                "database failed; it is reopened once the disk takes writes again"
            );
            health.error = Some(error.to_string());
        }
        self.failed.store(true, Ordering::Release);
        if health.recovering {
            return;
        }
        let weak = Arc::downgrade(self);
        match std::thread::Builder::new()
            .name("redb-recovery".into())
            .spawn(move || recover(weak))
        {
            Ok(_) => health.recovering = true,
            // The next fatal error tries again.
            Err(e) => tracing::error!(error = %e, "cannot start the database recovery thread"),
        }
    }

    /// One attempt: probe the disk, then close the failed database and open it again.
    fn reopen(&self) -> Result<(), DbError> {
        probe(&self.probe)?;
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(failed) = slot.take() {
            // A failed database writes nothing on close; its error is the one we know.
            if let Err(e) = failed.close() {
                tracing::debug!(error = %e, "closing the failed database");
            }
        }
        let db = builder().open(&self.path).map_err(redb::Error::from)?;
        *slot = Some(db);
        // Healthy again before any call can see the new database (they wait on `slot`), so
        // a fault of the new one starts a new recovery.
        let mut health = lock(&self.health);
        health.error = None;
        health.recovering = false;
        self.failed.store(false, Ordering::Release);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %self.path.display(), "database reopened after a disk fault");
        Ok(())
    }
}

/// Retries until the database is open again, or nobody holds it any more.
fn recover(inner: Weak<Inner>) {
    let mut pause = RETRY_MIN;
    loop {
        std::thread::sleep(pause);
        pause = (pause * 2).min(RETRY_MAX);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.reopen() {
            Ok(()) => return,
            Err(e) => tracing::debug!(path = %inner.path.display(), error = %e, "not reopened yet"),
        }
    }
}

/// Writes, syncs and removes `PROBE_BYTES` at `path`: whether the disk takes writes again.
fn probe(path: &Path) -> Result<(), DbError> {
    use std::io::Write;
    let io = |source| DbError::Io {
        what: "probing",
        path: path.to_path_buf(),
        source,
    };
    let written = std::fs::File::create(path).and_then(|mut file| {
        file.write_all(&vec![0x5a; PROBE_BYTES])?;
        file.sync_all()
    });
    let removed = std::fs::remove_file(path);
    written.map_err(io)?;
    removed.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");

    #[test]
    fn only_io_failures_are_fatal() {
        assert!(is_fatal(&redb::Error::PreviousIo));
        assert!(is_fatal(&redb::Error::Io(std::io::Error::other("disk"))));
        assert!(is_fatal(&redb::Error::DatabaseClosed));
        assert!(!is_fatal(&redb::Error::ValueTooLarge(1)));
        assert!(!is_fatal(&redb::Error::TableDoesNotExist("t".into())));
    }

    #[test]
    fn a_database_open_elsewhere_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let _first = Db::create(&path).unwrap();
        let second = Db::create(&path).err().expect("the file is locked");
        assert!(matches!(second, DbError::InUse(_)));
        assert!(
            second.to_string().contains("tidings standalone"),
            "{second}"
        );
    }

    #[test]
    fn a_non_fatal_error_leaves_the_database_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(&dir.path().join("db.redb")).unwrap();
        let missing = db.run(|db| {
            let txn = redb::ReadableDatabase::begin_read(db)?;
            txn.open_table(T)?;
            Ok(())
        });
        assert!(matches!(missing, Err(DbError::Redb(_))));
        assert!(db.writable().is_ok());
        assert_eq!(db.reopens(), 0);
    }
}
