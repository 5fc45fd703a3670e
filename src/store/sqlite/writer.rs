//! The writer thread: jobs queued by the store's callers, applied in group-committed
//! transactions, and the checkpointer that copies the write-ahead log back into the
//! database off the commit path.

use super::index::DigestIndex;
use crate::store::StoreError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most jobs one transaction takes.
const MAX_BATCH: usize = 512;

/// One write: applied inside the batch's transaction, answered after the commit.
pub(super) trait Work: Send {
    /// Run the statements; whether they succeeded.
    fn apply(&mut self, tx: &Connection) -> bool;
    /// The job failed after `apply` (its savepoint could not be released).
    fn fail(&mut self, e: StoreError);
    /// Deliver the result, or `commit_failure` when the transaction did not commit.
    fn finish(self: Box<Self>, commit_failure: Option<&StoreError>);
    /// A job of one statement needs no savepoint: SQLite undoes a failed statement by
    /// itself and the transaction goes on.
    fn one_statement(&self) -> bool;
}

pub(super) type Job = Box<dyn Work>;

/// A job whose statements are a closure returning `T`, answered on a oneshot channel.
pub(super) struct Typed<T, F> {
    run: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    one_statement: bool,
}

impl<T, F> Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    pub(super) fn job(
        one_statement: bool,
        run: F,
        reply: oneshot::Sender<Result<T, StoreError>>,
    ) -> Job {
        Box::new(Self {
            run: Some(run),
            result: None,
            reply,
            one_statement,
        })
    }
}

impl<T, F> Work for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn apply(&mut self, tx: &Connection) -> bool {
        let result = match self.run.take() {
            Some(run) => run(tx).map_err(StoreError::from),
            None => Err(StoreError::Writer("ran a job twice")),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn fail(&mut self, e: StoreError) {
        self.result = Some(Err(e));
    }

    fn finish(self: Box<Self>, commit_failure: Option<&StoreError>) {
        let result = match (commit_failure, self.result) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(r)) => r,
            (None, None) => Err(StoreError::Writer("did not run a job")),
        };
        // A caller that has gone away no longer wants its answer: ignoring that is right.
        drop(self.reply.send(result));
    }

    fn one_statement(&self) -> bool {
        self.one_statement
    }
}

/// How often the checkpointer copies the write-ahead log back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub(super) fn run_writer(
    mut conn: Connection,
    jobs: mpsc::Receiver<Job>,
    checkpoints: Connection,
    index: &DigestIndex,
) {
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
        run_batch(&mut conn, batch, index);
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

fn run_batch(conn: &mut Connection, batch: Vec<Job>, index: &DigestIndex) {
    // With the write lock held, the rows other processes appended are indexed first: the
    // jobs' lookups then see every stored token.
    let begun = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .and_then(|tx| index.catch_up(&tx).map(|_| tx));
    let mut tx = match begun {
        Ok(tx) => tx,
        Err(e) => {
            let e = StoreError::from(e);
            log::error!("store write failed: {e}");
            for job in batch {
                job.finish(Some(&e));
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    for mut job in batch {
        // Most jobs are single-token inserts: saving the savepoint's two statements matters.
        if job.one_statement() {
            job.apply(&tx);
            done.push(job);
            continue;
        }
        // Each other job in its own savepoint: one failing job does not undo the others.
        match tx.savepoint() {
            Ok(sp) => {
                if job.apply(&sp)
                    && let Err(e) = sp.commit()
                {
                    job.fail(StoreError::from(e));
                }
            }
            Err(e) => job.fail(StoreError::from(e)),
        }
        done.push(job);
    }
    // The token ids given out so far, as this transaction leaves them (a job undone by
    // its savepoint gave its ids back). Unread, the index only reads those rows again.
    let top: Option<i64> = tx
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'tokens'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .unwrap_or(None);
    let failure = tx.commit().err().map(StoreError::from);
    match (&failure, top) {
        (Some(e), _) => log::error!("store commit failed: {e}"),
        (None, Some(top)) => index.committed(top),
        (None, None) => {}
    }
    for job in done {
        job.finish(failure.as_ref());
    }
}
