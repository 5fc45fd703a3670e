//! The writer thread: jobs queued by the store's callers, applied in group-committed
//! transactions, and the checkpointer that copies the write-ahead log back into the
//! database off the commit path.

use super::{err, insert, key_or_insert, purge, revoke, rotate};
use crate::store::{Digest, Revoke, Rotation, StoreError, TokenRecord};
use rusqlite::{Connection, TransactionBehavior};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most jobs one transaction takes.
const MAX_BATCH: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Job {
    Insert(Vec<(Digest, TokenRecord)>, Reply<()>),
    Rotate {
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
        reply: Reply<Rotation>,
    },
    Revoke(Revoke, Reply<()>),
    Purge(i64, Reply<u64>),
    KeyOrInsert(String, Vec<u8>, Reply<Vec<u8>>),
}

/// A finished job, its reply held until the batch commits.
enum Done {
    Unit(Reply<()>, Result<(), StoreError>),
    Rotation(Reply<Rotation>, Result<Rotation, StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Bytes(Reply<Vec<u8>>, Result<Vec<u8>, StoreError>),
}

impl Done {
    fn is_ok(&self) -> bool {
        match self {
            Done::Unit(_, r) => r.is_ok(),
            Done::Rotation(_, r) => r.is_ok(),
            Done::Count(_, r) => r.is_ok(),
            Done::Bytes(_, r) => r.is_ok(),
        }
    }

    /// The same reply, with `e` as the result.
    fn failed(self, e: StoreError) -> Done {
        match self {
            Done::Unit(tx, _) => Done::Unit(tx, Err(e)),
            Done::Rotation(tx, _) => Done::Rotation(tx, Err(e)),
            Done::Count(tx, _) => Done::Count(tx, Err(e)),
            Done::Bytes(tx, _) => Done::Bytes(tx, Err(e)),
        }
    }

    /// Send the result, or `failure` when the commit failed.
    fn send(self, failure: Option<&StoreError>) {
        // A caller that has gone away no longer wants its answer: ignoring that is right.
        match self {
            Done::Unit(tx, r) => drop(tx.send(failure.map_or(r, |e| Err(e.clone())))),
            Done::Rotation(tx, r) => drop(tx.send(failure.map_or(r, |e| Err(e.clone())))),
            Done::Count(tx, r) => drop(tx.send(failure.map_or(r, |e| Err(e.clone())))),
            Done::Bytes(tx, r) => drop(tx.send(failure.map_or(r, |e| Err(e.clone())))),
        }
    }
}

/// How often the checkpointer copies the write-ahead log back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub(super) fn run_writer(mut conn: Connection, jobs: mpsc::Receiver<Job>, checkpoints: Connection) {
    // The checkpointer stops when this sender is dropped, with the writer.
    let (_writer_running, writer_stopped) = mpsc::channel::<()>();
    if let Err(e) = std::thread::Builder::new()
        .name("tollgate-checkpoint".into())
        .spawn(move || run_checkpointer(&checkpoints, &writer_stopped))
    {
        log::warn!("cannot start the store checkpointer ({e}); the writer checkpoints itself");
    }
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

/// PASSIVE checkpoints (they never block the writer or readers) every [`CHECKPOINT_EVERY`].
fn run_checkpointer(conn: &Connection, writer_stopped: &mpsc::Receiver<()>) {
    let mut failing = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = writer_stopped.recv_timeout(CHECKPOINT_EVERY) {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                log::warn!("store checkpoint failed (retrying): {e}");
            }
            Err(_) => {}
        }
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = err(e);
            log::error!("store write failed: {e}");
            for job in batch {
                fail(job, &e);
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    for job in batch {
        // A job of one statement needs no savepoint: SQLite undoes a failed statement by
        // itself and the transaction goes on. Saving the two extra statements matters, as
        // most jobs are single-token inserts.
        if job.is_one_statement() {
            done.push(apply(&tx, job));
            continue;
        }
        // Each other job in its own savepoint: one failing job does not undo the others.
        let outcome = match tx.savepoint() {
            Ok(sp) => {
                let d = apply(&sp, job);
                if d.is_ok()
                    && let Err(e) = sp.commit()
                {
                    d.failed(err(e))
                } else {
                    d
                }
            }
            Err(e) => {
                let e = err(e);
                fail_done(job, e)
            }
        };
        done.push(outcome);
    }
    let failure = tx.commit().err().map(err);
    if let Some(e) = &failure {
        log::error!("store commit failed: {e}");
    }
    for d in done {
        d.send(failure.as_ref());
    }
}

impl Job {
    fn is_one_statement(&self) -> bool {
        matches!(self, Job::Insert(tokens, _) if tokens.len() == 1)
    }
}

fn fail(job: Job, e: &StoreError) {
    fail_done(job, e.clone()).send(None);
}

fn fail_done(job: Job, e: StoreError) -> Done {
    match job {
        Job::Insert(_, r) | Job::Revoke(_, r) => Done::Unit(r, Err(e)),
        Job::Rotate { reply, .. } => Done::Rotation(reply, Err(e)),
        Job::Purge(_, r) => Done::Count(r, Err(e)),
        Job::KeyOrInsert(_, _, r) => Done::Bytes(r, Err(e)),
    }
}

fn apply(tx: &Connection, job: Job) -> Done {
    match job {
        Job::Insert(tokens, r) => Done::Unit(r, insert(tx, &tokens).map_err(err)),
        Job::Rotate {
            used,
            successors,
            now,
            grace,
            reuse_until,
            reply,
        } => Done::Rotation(
            reply,
            rotate(tx, &used, &successors, now, grace, reuse_until).map_err(err),
        ),
        Job::Revoke(what, r) => Done::Unit(r, revoke(tx, &what).map_err(err)),
        Job::Purge(now, r) => Done::Count(r, purge(tx, now).map_err(err)),
        Job::KeyOrInsert(name, der, r) => {
            Done::Bytes(r, key_or_insert(tx, &name, &der).map_err(err))
        }
    }
}
