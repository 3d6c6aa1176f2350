//! The durable spool between capture and upload.
//!
//! Why SQLite (WAL) rather than an append-only checksummed log:
//! the spool needs three things a log makes hard — deleting events in any order once
//! the server acknowledged them (a log needs compaction and a second index for that),
//! assigning events to a batch id *durably* so that a retry after a crash re-sends the
//! same batch with the same ids, and an atomic "append these events and bump the
//! counters" step. SQLite gives all three as transactions, reports a full disk as a
//! distinct error code (SQLITE_FULL), and detects a damaged file (`quick_check`),
//! which is what lets us set a corrupt spool aside instead of crashing on it.
//!
//! Life of an event: `append` (durable: counts as captured) → `next_batch` assigns up
//! to [`AGENT_BATCH_EVENTS`] of the oldest to a batch id → the uploader sends that
//! batch, as often as needed, always with the same ids → `ack` deletes it.
//!
//! Which commits wait for the disk (fsync): those that must survive a power cut —
//! new events, gap records, and a batch that carries a gap. Assigning events to a
//! batch, acknowledging and trimming commit without waiting (WAL with
//! `synchronous=NORMAL`: safe against a crash of the agent, and the next synced
//! commit makes them durable too): a power cut can only undo them, which re-sends
//! events the server already holds — it keeps each event id once — or keeps events
//! a trim would have dropped. That is two fsyncs in three fewer at a steady load.
//!
//! A full disk: SQLite in WAL mode needs free space even to *delete* (the WAL grows
//! before the database shrinks), so a spool on a full disk could neither take new
//! events nor let the uploader mark batches and remove acknowledged ones — it would
//! stop uploading exactly when it matters. So the spool keeps a reserve file of
//! [`RESERVE_BYTES`] next to the database. When a write fails with SQLITE_FULL the
//! reserve is deleted and the WAL checkpointed and truncated: that space serves the
//! uploader's bookkeeping (and the status file), while new events are refused —
//! counted by the caller as a gap, never half-written. Events already spooled stay
//! and are uploaded. Every [`RESERVE_PROBE`] the spool tries to write the reserve
//! again; when that succeeds, space has returned and events are taken again.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};
use std::path::{Path, PathBuf};
use toktra_proto::event::{AGENT_BATCH_EVENTS, AGENT_BATCH_SECONDS};
use toktra_proto::{Batch, Dropped, FlowEvent};
use uuid::Uuid;

/// Space kept free for the uploader's writes after the disk fills up: more than the
/// WAL can hold between checkpoints (see `wal_autocheckpoint` in `try_open`), so that
/// checkpointing it and then marking and deleting batches fit.
pub const RESERVE_BYTES: u64 = 1 << 20;
/// How often a spool on a full disk checks whether space has returned.
pub const RESERVE_PROBE: std::time::Duration = std::time::Duration::from_secs(2);
/// Pages the WAL may hold before SQLite checkpoints it (4 KiB pages: 512 KiB), kept
/// under [`RESERVE_BYTES`].
const WAL_AUTOCHECKPOINT_PAGES: u32 = 128;

/// Rough per-row cost beyond the JSON body (key, index entries, page slack), so that
/// the byte bound tracks the file size without asking the file system each time.
const ROW_OVERHEAD: u64 = 96;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the disk holding the spool {0} is full; events are being dropped and counted until space is freed"
    )]
    DiskFull(PathBuf),
    #[error("spool {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("spool {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    pub max_bytes: u64,
    pub max_age_secs: u64,
}

/// What happened when the spool was opened.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// The damaged file was moved here and an empty spool started.
    pub set_aside: Option<(PathBuf, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpoolStats {
    /// Events waiting for the server's acknowledgement.
    pub depth: u64,
    pub bytes: u64,
    pub oldest: Option<DateTime<Utc>>,
    /// Events made durable since the spool was created.
    pub captured_total: u64,
    /// Events acknowledged by the server.
    pub uploaded_total: u64,
    /// Events dropped because the spool was full or too old, or the disk was full.
    pub dropped_total: u64,
    /// The disk holding the spool is full: new events are counted as dropped until
    /// space returns; spooled ones are still uploaded.
    #[serde(default)]
    pub disk_full: bool,
}

pub struct Spool {
    conn: Connection,
    path: PathBuf,
    limits: SpoolLimits,
    bytes: u64,
    /// See the module documentation: set when a write hit a full disk.
    disk_full: bool,
    last_probe: Option<std::time::Instant>,
}

impl Spool {
    /// Opens (or creates) the spool. A file that is not a database or fails its
    /// integrity check is renamed to `<name>.corrupt-<time>` and a new one started:
    /// losing unsent events is bad, but an agent that cannot start loses all future
    /// ones.
    pub fn open(path: &Path, limits: SpoolLimits) -> Result<(Spool, OpenReport), SpoolError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SpoolError::Io {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let mut report = OpenReport::default();
        match Self::try_open(path, limits) {
            Ok(s) => Ok((s, report)),
            Err(OpenFailure::Corrupt(reason)) => {
                let aside = path.with_extension(format!(
                    "db.corrupt-{}",
                    Utc::now().format("%Y%m%dT%H%M%SZ")
                ));
                std::fs::rename(path, &aside).map_err(|e| SpoolError::Io {
                    path: path.to_owned(),
                    reason: format!("is corrupt ({reason}) and could not be set aside: {e}"),
                })?;
                for ext in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{ext}", path.display()));
                    if side.exists() {
                        let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
                    }
                }
                tracing::warn!(
                    spool = %path.display(),
                    set_aside = %aside.display(),
                    "the spool file was corrupt ({reason}); it was set aside and the agent starts with an empty spool"
                );
                report.set_aside = Some((aside, reason));
                let s = Self::try_open(path, limits).map_err(|f| match f {
                    OpenFailure::Corrupt(r) => SpoolError::Io {
                        path: path.to_owned(),
                        reason: r,
                    },
                    OpenFailure::Other(e) => e,
                })?;
                Ok((s, report))
            }
            Err(OpenFailure::Other(e)) => Err(e),
        }
    }

    fn try_open(path: &Path, limits: SpoolLimits) -> Result<Spool, OpenFailure> {
        let sq = |source: rusqlite::Error| {
            if is_corruption(&source) {
                OpenFailure::Corrupt(source.to_string())
            } else {
                OpenFailure::Other(SpoolError::Sqlite {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let conn = Connection::open(path).map_err(sq)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sq)?;
        if check != "ok" {
            return Err(OpenFailure::Corrupt(check));
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS events(
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               event_id TEXT NOT NULL UNIQUE,
               spooled_at INTEGER NOT NULL,
               body BLOB NOT NULL,
               batch_id TEXT);
             CREATE INDEX IF NOT EXISTS events_batch ON events(batch_id);
             CREATE TABLE IF NOT EXISTS batches(
               batch_id TEXT PRIMARY KEY,
               created_at INTEGER NOT NULL,
               dropped_count INTEGER,
               dropped_since TEXT);
             CREATE TABLE IF NOT EXISTS gap(
               id INTEGER PRIMARY KEY CHECK (id = 1),
               count INTEGER NOT NULL,
               since TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS counters(
               name TEXT PRIMARY KEY,
               value INTEGER NOT NULL);",
        )
        .map_err(sq)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(sq)?;
        let bytes: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) + COUNT(*) * ?1 FROM events",
                [ROW_OVERHEAD as i64],
                |r| r.get(0),
            )
            .map_err(sq)?;
        let mut spool = Spool {
            conn,
            path: path.to_owned(),
            limits,
            bytes: bytes as u64,
            disk_full: false,
            last_probe: None,
        };
        // A missing reserve: a new spool, or one whose agent gave the reserve away
        // on a full disk. It is taken back on the terms of the probe in
        // `space_for_events` (room for as much again), else the agent starts in
        // the full-disk mode its predecessor was in.
        if !spool.reserve_path().exists() && spool.write_reserve(RESERVE_BYTES).is_err() {
            spool.enter_disk_full();
        }
        Ok(spool)
    }

    fn reserve_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.reserve", self.path.display()))
    }

    /// Writes the reserve file (real blocks, not a sparse file), proving first that
    /// `headroom` more bytes would fit too. On failure nothing of it is left behind.
    fn write_reserve(&self, headroom: u64) -> std::io::Result<()> {
        use std::io::Write as _;
        let path = self.reserve_path();
        let result = (|| {
            let mut f = std::fs::File::create(&path)?;
            let zeros = vec![0u8; 64 * 1024];
            for _ in 0..(RESERVE_BYTES + headroom).div_ceil(zeros.len() as u64) {
                f.write_all(&zeros)?;
            }
            f.sync_all()?;
            f.set_len(RESERVE_BYTES)?;
            f.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    /// A write hit a full disk: hand the reserve to the uploader's bookkeeping and
    /// refuse new events until space returns.
    fn enter_disk_full(&mut self) {
        if self.disk_full {
            return;
        }
        self.disk_full = true;
        self.last_probe = Some(std::time::Instant::now());
        let _ = std::fs::remove_file(self.reserve_path());
        // Moves what the WAL holds into the database and truncates it: the WAL would
        // otherwise keep its size, and this is when the space is needed.
        let _ = cached_row(
            &self.conn,
            "PRAGMA wal_checkpoint(TRUNCATE)",
            [],
            |_| Ok(()),
        );
        tracing::error!(
            spool = %self.path.display(),
            "the disk holding the spool is full: new events are dropped and counted (the gap is reported to the server) until space is freed; events already spooled are kept and uploaded"
        );
    }

    /// Whether new events may be written: always, unless the disk was full and the
    /// reserve cannot be written back yet (checked at most every [`RESERVE_PROBE`]).
    fn space_for_events(&mut self) -> bool {
        if !self.disk_full {
            return true;
        }
        if self.last_probe.is_some_and(|t| t.elapsed() < RESERVE_PROBE) {
            return false;
        }
        self.last_probe = Some(std::time::Instant::now());
        // Room for the reserve and as much again for events; just the reserve would
        // let the spool flap between full and not on every burst.
        if self.write_reserve(RESERVE_BYTES).is_err() {
            return false;
        }
        self.disk_full = false;
        tracing::info!(
            spool = %self.path.display(),
            "space on the spool's disk has returned: events are spooled again"
        );
        true
    }

    /// Passes `result` on, entering the full-disk mode if it says the disk is full.
    fn watch<T>(&mut self, result: Result<T, SpoolError>) -> Result<T, SpoolError> {
        if matches!(result, Err(SpoolError::DiskFull(_))) {
            self.enter_disk_full();
        }
        result
    }

    /// The disk holding the spool is full (new events are refused and counted).
    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        if source.sqlite_error_code() == Some(ErrorCode::DiskFull) {
            SpoolError::DiskFull(self.path.clone())
        } else {
            SpoolError::Sqlite {
                path: self.path.clone(),
                source,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `events` durable. Only after this returns Ok do they count as captured.
    /// Then enforces the bounds, dropping the oldest events into the gap record. On a
    /// full disk, returns [`SpoolError::DiskFull`] and nothing of `events` is kept.
    pub fn append(&mut self, events: &[FlowEvent], now: DateTime<Utc>) -> Result<(), SpoolError> {
        if events.is_empty() {
            return Ok(());
        }
        if !self.space_for_events() {
            return Err(SpoolError::DiskFull(self.path.clone()));
        }
        let r = self.synced(|s| s.append_inner(events, now));
        self.watch(r)
    }

    fn append_inner(&mut self, events: &[FlowEvent], now: DateTime<Utc>) -> Result<(), SpoolError> {
        let mut added = 0u64;
        let tx = self.conn.transaction().map_err(|e| err_of(&self.path, e))?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events(event_id, spooled_at, body) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| err_of(&self.path, e))?;
            for ev in events {
                let body = serde_json::to_vec(ev).map_err(|e| SpoolError::Io {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
                let n = ins
                    .execute(params![ev.event_id.to_string(), now.timestamp(), body])
                    .map_err(|e| err_of(&self.path, e))?;
                if n == 1 {
                    added += body.len() as u64 + ROW_OVERHEAD;
                }
            }
        }
        bump(&tx, "captured_total", events.len() as u64).map_err(|e| err_of(&self.path, e))?;
        tx.commit().map_err(|e| err_of(&self.path, e))?;
        self.bytes += added;
        self.enforce_bounds(now)
    }

    /// Drops events older than the age bound, then the oldest until under the size
    /// bound, adding them to the gap record.
    pub fn enforce_bounds(&mut self, now: DateTime<Utc>) -> Result<(), SpoolError> {
        let r = self.enforce_bounds_inner(now);
        self.watch(r)
    }

    fn enforce_bounds_inner(&mut self, now: DateTime<Utc>) -> Result<(), SpoolError> {
        let cutoff = now.timestamp() - self.limits.max_age_secs as i64;
        let old: Option<i64> = cached_row(
            &self.conn,
            "SELECT MAX(seq) FROM events WHERE spooled_at < ?1",
            [cutoff],
            |r| r.get(0),
        )
        .map_err(|e| self.err(e))?;
        if let Some(seq) = old {
            self.drop_through(seq, false)?;
        }
        if self.bytes > self.limits.max_bytes {
            // Free down to 90 % so a full spool is not trimmed on every append.
            let target = self.limits.max_bytes / 10 * 9;
            let mut need = self.bytes - target;
            let mut last = None;
            {
                // The batch being sent is spared: the server may already hold it (its
                // acknowledgement lost), and a gap must count only events that are
                // really gone.
                let mut st = self
                    .conn
                    .prepare_cached(
                        "SELECT seq, LENGTH(body) FROM events WHERE batch_id IS NULL ORDER BY seq",
                    )
                    .map_err(|e| err_of(&self.path, e))?;
                let mut rows = st.query([]).map_err(|e| err_of(&self.path, e))?;
                while let Some(r) = rows.next().map_err(|e| err_of(&self.path, e))? {
                    let seq: i64 = r.get(0).map_err(|e| err_of(&self.path, e))?;
                    let len: i64 = r.get(1).map_err(|e| err_of(&self.path, e))?;
                    last = Some(seq);
                    let freed = len as u64 + ROW_OVERHEAD;
                    if freed >= need {
                        break;
                    }
                    need -= freed;
                }
            }
            if let Some(seq) = last {
                self.drop_through(seq, true)?;
            }
        }
        Ok(())
    }

    /// Deletes events with `seq <= through` (only those not yet in a batch when
    /// `unassigned_only`) and records them in the gap.
    fn drop_through(&mut self, through: i64, unassigned_only: bool) -> Result<(), SpoolError> {
        let filter = if unassigned_only {
            "seq <= ?1 AND batch_id IS NULL"
        } else {
            "seq <= ?1"
        };
        let tx = self.conn.transaction().map_err(|e| err_of(&self.path, e))?;
        let (count, bytes, first): (i64, i64, Option<i64>) = cached_row(&tx,
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), MIN(spooled_at) FROM events WHERE {filter}"
                ),
                [through],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| err_of(&self.path, e))?;
        if count == 0 {
            return Ok(());
        }
        cached_exec(
            &tx,
            &format!("DELETE FROM events WHERE {filter}"),
            [through],
        )
        .map_err(|e| err_of(&self.path, e))?;
        let since = first
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .unwrap_or_else(Utc::now);
        add_gap(&tx, count as u64, since).map_err(|e| err_of(&self.path, e))?;
        tx.commit().map_err(|e| err_of(&self.path, e))?;
        self.bytes = self
            .bytes
            .saturating_sub(bytes as u64 + count as u64 * ROW_OVERHEAD);
        tracing::warn!(
            dropped = count,
            since = %since.to_rfc3339(),
            "spool bound reached (size {} bytes / age {} s): dropped the oldest events; the gap is reported to the server",
            self.limits.max_bytes,
            self.limits.max_age_secs
        );
        Ok(())
    }

    /// Records events that could not be made durable at all (disk full). Taken on
    /// a full disk too: the gap is one row, updated in place, which the space the
    /// reserve gave up has room for — so the count of what was lost survives a
    /// restart and reaches the server while the disk is still full. If it fails
    /// even so, the caller keeps the count in memory and tries again later.
    pub fn record_gap(&mut self, count: u64, since: DateTime<Utc>) -> Result<(), SpoolError> {
        let r = self.synced(|s| s.record_gap_inner(count, since));
        self.watch(r)
    }

    fn record_gap_inner(&mut self, count: u64, since: DateTime<Utc>) -> Result<(), SpoolError> {
        let tx = self.conn.transaction().map_err(|e| err_of(&self.path, e))?;
        add_gap(&tx, count, since).map_err(|e| err_of(&self.path, e))?;
        tx.commit().map_err(|e| err_of(&self.path, e))
    }

    /// The batch to send next, if one is due: an already assigned batch (a retry keeps
    /// its ids), else up to 50 of the oldest events once there are 50 or the oldest
    /// waited [`AGENT_BATCH_SECONDS`] (or `flush`), else a gap-only batch.
    pub fn next_batch(
        &mut self,
        now: DateTime<Utc>,
        flush: bool,
        agent_version: &str,
    ) -> Result<Option<Batch>, SpoolError> {
        let r = self.next_batch_inner(now, flush, agent_version);
        self.watch(r)
    }

    fn next_batch_inner(
        &mut self,
        now: DateTime<Utc>,
        flush: bool,
        agent_version: &str,
    ) -> Result<Option<Batch>, SpoolError> {
        let existing: Option<(String, Option<i64>, Option<String>)> = cached_row(&self.conn,
                "SELECT batch_id, dropped_count, dropped_since FROM batches ORDER BY created_at, rowid LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some((id, dc, ds)) = existing {
            let batch = self.load_batch(&id, dc, ds, agent_version)?;
            if batch.events.is_empty() && batch.dropped.is_none() {
                // Its events were all dropped by the bounds (and counted in a gap).
                self.ack_inner(batch.batch_id)?;
                return self.next_batch_inner(now, flush, agent_version);
            }
            return Ok(Some(batch));
        }
        let (count, oldest): (i64, Option<i64>) = cached_row(
            &self.conn,
            "SELECT COUNT(*), MIN(spooled_at) FROM events WHERE batch_id IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| self.err(e))?;
        let gap: Option<(i64, String)> = cached_row(
            &self.conn,
            "SELECT count, since FROM gap WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| self.err(e))?;
        let due = count as usize >= AGENT_BATCH_EVENTS
            || (count > 0
                && (flush
                    || oldest.is_some_and(|t| now.timestamp() - t >= AGENT_BATCH_SECONDS as i64)))
            || (count == 0 && gap.is_some());
        if !due {
            return Ok(None);
        }
        let id = Uuid::now_v7();
        // A gap moved into a batch must not come back after a power cut and be
        // counted a second time in another batch.
        if gap.is_some() {
            self.synced(|s| s.assign_batch(id, now, gap.as_ref()))?;
        } else {
            self.assign_batch(id, now, None)?;
        }
        let batch = self.load_batch(
            &id.to_string(),
            gap.as_ref().map(|g| g.0),
            gap.map(|g| g.1),
            agent_version,
        )?;
        Ok(Some(batch))
    }

    fn assign_batch(
        &mut self,
        id: Uuid,
        now: DateTime<Utc>,
        gap: Option<&(i64, String)>,
    ) -> Result<(), SpoolError> {
        let tx = self.conn.transaction().map_err(|e| err_of(&self.path, e))?;
        cached_exec(&tx,
            "INSERT INTO batches(batch_id, created_at, dropped_count, dropped_since) VALUES (?1, ?2, ?3, ?4)",
            params![
                id.to_string(),
                now.timestamp(),
                gap.map(|g| g.0),
                gap.map(|g| g.1.clone())
            ],
        )
        .map_err(|e| err_of(&self.path, e))?;
        cached_exec(&tx, "DELETE FROM gap", []).map_err(|e| err_of(&self.path, e))?;
        cached_exec(
            &tx,
            "UPDATE events SET batch_id = ?1 WHERE seq IN
               (SELECT seq FROM events WHERE batch_id IS NULL ORDER BY seq LIMIT ?2)",
            params![id.to_string(), AGENT_BATCH_EVENTS as i64],
        )
        .map_err(|e| err_of(&self.path, e))?;
        tx.commit().map_err(|e| err_of(&self.path, e))
    }

    /// Whether commits wait for the disk (see the module notes). Outside a
    /// transaction only, as SQLite requires.
    fn set_synced(&self, synced: bool) -> Result<(), SpoolError> {
        self.conn
            .pragma_update(None, "synchronous", if synced { "FULL" } else { "NORMAL" })
            .map_err(|e| self.err(e))
    }

    /// Runs `f` with its commits synced to disk.
    fn synced<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        self.set_synced(true)?;
        let r = f(self);
        let restored = self.set_synced(false);
        let v = r?;
        restored.map(|()| v)
    }

    fn load_batch(
        &self,
        id: &str,
        dropped_count: Option<i64>,
        dropped_since: Option<String>,
        agent_version: &str,
    ) -> Result<Batch, SpoolError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT body FROM events WHERE batch_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let bodies = st
            .query_map([id], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?;
        let mut events = Vec::new();
        for b in bodies {
            let b = b.map_err(|e| self.err(e))?;
            match serde_json::from_slice::<FlowEvent>(&b) {
                Ok(ev) => events.push(ev),
                // Cannot happen unless the file was edited; skip the row rather than
                // block every later upload on it.
                Err(e) => tracing::error!("unreadable event in the spool skipped: {e}"),
            }
        }
        let dropped = match (dropped_count, dropped_since) {
            (Some(c), Some(s)) if c > 0 => Some(Dropped {
                count: c as u64,
                since: s.parse().unwrap_or_else(|_| Utc::now()),
            }),
            _ => None,
        };
        Ok(Batch {
            batch_id: id.parse().unwrap_or_else(|_| Uuid::now_v7()),
            agent_version: agent_version.to_owned(),
            events,
            dropped,
        })
    }

    /// The server stored the batch: its events leave the spool.
    pub fn ack(&mut self, batch_id: Uuid) -> Result<u64, SpoolError> {
        let r = self.ack_inner(batch_id);
        self.watch(r)
    }

    fn ack_inner(&mut self, batch_id: Uuid) -> Result<u64, SpoolError> {
        let id = batch_id.to_string();
        let tx = self.conn.transaction().map_err(|e| err_of(&self.path, e))?;
        let (count, bytes): (i64, i64) = cached_row(
            &tx,
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM events WHERE batch_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| err_of(&self.path, e))?;
        cached_exec(&tx, "DELETE FROM events WHERE batch_id = ?1", [&id])
            .map_err(|e| err_of(&self.path, e))?;
        cached_exec(&tx, "DELETE FROM batches WHERE batch_id = ?1", [&id])
            .map_err(|e| err_of(&self.path, e))?;
        bump(&tx, "uploaded_total", count as u64).map_err(|e| err_of(&self.path, e))?;
        tx.commit().map_err(|e| err_of(&self.path, e))?;
        self.bytes = self
            .bytes
            .saturating_sub(bytes as u64 + count as u64 * ROW_OVERHEAD);
        Ok(count as u64)
    }

    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let (depth, oldest): (i64, Option<i64>) = cached_row(
            &self.conn,
            "SELECT COUNT(*), MIN(spooled_at) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| self.err(e))?;
        let counter = |name: &str| -> Result<u64, SpoolError> {
            let v: Option<i64> = cached_row(
                &self.conn,
                "SELECT value FROM counters WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
            Ok(v.unwrap_or(0) as u64)
        };
        Ok(SpoolStats {
            depth: depth as u64,
            bytes: self.bytes,
            oldest: oldest.and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
            captured_total: counter("captured_total")?,
            uploaded_total: counter("uploaded_total")?,
            dropped_total: counter("dropped_total")?,
            disk_full: self.disk_full,
        })
    }
}

enum OpenFailure {
    Corrupt(String),
    Other(SpoolError),
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt)
    )
}

fn err_of(path: &Path, source: rusqlite::Error) -> SpoolError {
    if source.sqlite_error_code() == Some(ErrorCode::DiskFull) {
        SpoolError::DiskFull(path.to_owned())
    } else {
        SpoolError::Sqlite {
            path: path.to_owned(),
            source,
        }
    }
}

/// `query_row` through the statement cache: the spool runs the same few statements
/// several times a second, and preparing them was a fifth of its time.
fn cached_row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// `execute` through the statement cache (see [`cached_row`]).
fn cached_exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

fn bump(tx: &rusqlite::Transaction<'_>, name: &str, by: u64) -> rusqlite::Result<()> {
    cached_exec(
        tx,
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        params![name, by as i64],
    )?;
    Ok(())
}

fn add_gap(
    tx: &rusqlite::Transaction<'_>,
    count: u64,
    since: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let since_s = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // `since` keeps the earliest moment: RFC 3339 UTC strings of one format sort as
    // times do.
    cached_exec(
        tx,
        "INSERT INTO gap(id, count, since) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET count = count + excluded.count,
           since = MIN(since, excluded.since)",
        params![count as i64, since_s],
    )?;
    bump(tx, "dropped_total", count)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(i: u64) -> FlowEvent {
        FlowEvent {
            bytes_out: i,
            bytes_in: 2 * i,
            records_in: Some(3),
            ..FlowEvent::example("alice")
        }
    }

    fn limits() -> SpoolLimits {
        SpoolLimits {
            max_bytes: 100 * 1024 * 1024,
            max_age_secs: 3600,
        }
    }

    #[test]
    fn batches_keep_their_ids_across_reopen_and_ack_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spool.db");
        let now = Utc::now();
        let evs: Vec<_> = (0..120).map(event).collect();
        let first_id;
        {
            let (mut s, rep) = Spool::open(&p, limits()).unwrap();
            assert!(rep.set_aside.is_none());
            s.append(&evs, now).unwrap();
            let b = s.next_batch(now, false, "0.1.0").unwrap().unwrap();
            assert_eq!(b.events.len(), 50);
            assert_eq!(b.events[0].event_id, evs[0].event_id);
            first_id = b.batch_id;
        }
        // A crash before the ack: the same batch, same ids, comes back.
        let (mut s, _) = Spool::open(&p, limits()).unwrap();
        let b = s.next_batch(now, false, "0.1.0").unwrap().unwrap();
        assert_eq!(b.batch_id, first_id);
        assert_eq!(b.events.len(), 50);
        assert_eq!(s.ack(first_id).unwrap(), 50);
        let b2 = s.next_batch(now, false, "0.1.0").unwrap().unwrap();
        assert_ne!(b2.batch_id, first_id);
        assert_eq!(b2.events[0].event_id, evs[50].event_id);
        s.ack(b2.batch_id).unwrap();
        // 20 left: not due until 5 s passed or a flush.
        assert!(s.next_batch(now, false, "0.1.0").unwrap().is_none());
        let later = now + chrono::Duration::seconds(5);
        let b3 = s.next_batch(later, false, "0.1.0").unwrap().unwrap();
        assert_eq!(b3.events.len(), 20);
        s.ack(b3.batch_id).unwrap();
        let st = s.stats().unwrap();
        assert_eq!(st.depth, 0);
        assert_eq!(st.captured_total, 120);
        assert_eq!(st.uploaded_total, 120);
        assert!(s.next_batch(later, true, "0.1.0").unwrap().is_none());
    }

    #[test]
    fn full_spool_drops_oldest_and_reports_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spool.db");
        let (mut s, _) = Spool::open(
            &p,
            SpoolLimits {
                max_bytes: 64 * 1024,
                max_age_secs: 3600,
            },
        )
        .unwrap();
        let now = Utc::now();
        let evs: Vec<_> = (0..400).map(event).collect();
        for chunk in evs.chunks(10) {
            s.append(chunk, now).unwrap();
        }
        let st = s.stats().unwrap();
        assert!(st.bytes <= 64 * 1024, "{st:?}");
        assert!(st.dropped_total > 0);
        assert_eq!(st.depth + st.dropped_total, 400);
        let b = s.next_batch(now, true, "0.1.0").unwrap().unwrap();
        let gap = b.dropped.clone().unwrap();
        assert_eq!(gap.count, st.dropped_total);
        // The survivors are the newest: the last event is still there.
        let survivors_first = b.events[0].event_id;
        let idx = evs
            .iter()
            .position(|e| e.event_id == survivors_first)
            .unwrap();
        assert_eq!(idx as u64, st.dropped_total);
        s.ack(b.batch_id).unwrap();
        // The gap went with that batch and is not sent twice.
        let b = s.next_batch(now, true, "0.1.0").unwrap().unwrap();
        assert!(b.dropped.is_none());
    }

    #[test]
    fn the_batch_in_flight_is_never_dropped_for_space() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(
            &dir.path().join("s.db"),
            SpoolLimits {
                max_bytes: 64 * 1024,
                max_age_secs: 3600,
            },
        )
        .unwrap();
        let now = Utc::now();
        let first: Vec<_> = (0..50).map(event).collect();
        s.append(&first, now).unwrap();
        let inflight = s.next_batch(now, true, "t").unwrap().unwrap();
        for _ in 0..40 {
            let more: Vec<_> = (0..10).map(event).collect();
            s.append(&more, now).unwrap();
        }
        let st = s.stats().unwrap();
        assert!(st.dropped_total > 0);
        let again = s.next_batch(now, true, "t").unwrap().unwrap();
        assert_eq!(again.batch_id, inflight.batch_id);
        assert_eq!(
            again.events.len(),
            50,
            "the batch being sent kept all its events"
        );
        assert_eq!(st.depth + st.dropped_total, 450);
    }

    #[test]
    fn old_events_expire_into_the_gap_and_gap_alone_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(&dir.path().join("s.db"), limits()).unwrap();
        let then = Utc::now() - chrono::Duration::hours(2);
        s.append(&[event(1), event(2)], then).unwrap();
        s.enforce_bounds(Utc::now()).unwrap();
        let b = s.next_batch(Utc::now(), false, "0.1.0").unwrap().unwrap();
        assert!(b.events.is_empty());
        assert_eq!(b.dropped.as_ref().unwrap().count, 2);
        assert_eq!(
            b.dropped.unwrap().since.timestamp(),
            then.timestamp(),
            "since is the oldest dropped event's time"
        );
    }

    #[test]
    fn corrupt_file_is_set_aside_and_a_fresh_spool_starts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spool.db");
        std::fs::write(
            &p,
            b"this is not an SQLite database, it is garbage".repeat(200),
        )
        .unwrap();
        let (mut s, rep) = Spool::open(&p, limits()).unwrap();
        let (aside, _reason) = rep.set_aside.unwrap();
        assert!(aside.exists());
        assert!(aside.to_string_lossy().contains("corrupt"));
        s.append(&[event(1)], Utc::now()).unwrap();
        assert_eq!(s.stats().unwrap().depth, 1);
    }

    /// SQLite's page limit answers SQLITE_FULL exactly as a full disk does: the full-
    /// disk mode without a file system of a given size (the end-to-end suite fills a
    /// real tmpfs).
    #[test]
    fn a_full_disk_refuses_new_events_keeps_uploading_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let (mut s, _) = Spool::open(&path, limits()).unwrap();
        let reserve = s.reserve_path();
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
        let now = Utc::now();
        let kept: Vec<_> = (0..10).map(event).collect();
        s.append(&kept, now).unwrap();
        let pages: i64 = s
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        s.conn.pragma_update(None, "max_page_count", pages).unwrap();
        let big: Vec<_> = (0..400).map(event).collect();
        assert!(matches!(s.append(&big, now), Err(SpoolError::DiskFull(_))));
        assert!(s.disk_full() && s.stats().unwrap().disk_full);
        assert!(!reserve.exists(), "the reserve went to the uploader");
        // Nothing of the refused events was kept; what was spooled is still there.
        assert_eq!(s.stats().unwrap().depth, 10);
        assert_eq!(s.stats().unwrap().captured_total, 10);
        // Refused at once while no probe is due, without touching the database.
        assert!(matches!(
            s.append(&big[..1], now),
            Err(SpoolError::DiskFull(_))
        ));
        // What was refused is counted durably at once, full disk or not.
        s.record_gap(400, now).unwrap();
        assert!(s.disk_full());
        assert_eq!(s.stats().unwrap().dropped_total, 400);

        // The uploader goes on: a batch is assigned, sent and acknowledged, the gap
        // with it.
        let batch = s.next_batch(now, true, "t").unwrap().unwrap();
        assert_eq!(batch.events.len(), 10);
        assert_eq!(batch.dropped.unwrap().count, 400);
        assert_eq!(s.ack(batch.batch_id).unwrap(), 10);
        assert_eq!(s.stats().unwrap().depth, 0);
        assert!(s.disk_full(), "space has not returned yet");

        // Space returns; the next probe writes the reserve back and events flow again.
        s.conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        s.last_probe = None;
        s.append(&big[..1], now).unwrap();
        assert!(!s.disk_full() && !s.stats().unwrap().disk_full);
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
        s.append(&big[1..5], now).unwrap();
        let st = s.stats().unwrap();
        assert_eq!(
            (st.depth, st.captured_total, st.uploaded_total),
            (5, 15, 10)
        );
        assert_eq!(st.dropped_total, 400);
        let batch = s.next_batch(now, true, "t").unwrap().unwrap();
        assert!(batch.dropped.is_none(), "the gap went with the first batch");
    }

    #[test]
    fn duplicate_event_ids_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(&dir.path().join("s.db"), limits()).unwrap();
        let e = event(1);
        s.append(std::slice::from_ref(&e), Utc::now()).unwrap();
        s.append(&[e], Utc::now()).unwrap();
        assert_eq!(s.stats().unwrap().depth, 1);
    }
}
