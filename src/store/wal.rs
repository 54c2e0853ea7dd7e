//! Keeps SQLite's WAL file bounded under steady reads. The automatic checkpoint (every 1,000
//! pages) copies pages back into the database file, but it can start the log over only when no
//! reader still uses it; with reads following one another, as under steady API traffic, there
//! always is one, and the WAL grows without bound (368 MiB in 60 s of
//! `tests/it/contention.rs`'s long run before this). So the committer looks at the log at most
//! once a second and, when it holds more than [`TRUNCATE_AFTER_FRAMES`], checkpoints with
//! `TRUNCATE`: that waits for the reads of the moment to end, which takes milliseconds, and
//! empties the log. PostgreSQL needs none of this.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use tracing::{debug, warn};

use crate::store::connect::SQLITE_BUSY_TIMEOUT;
use crate::store::sql::{get, stmt};
use crate::store::{Backend, Store, StoreError};

/// How often the log is looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long truncating waits for the reads in progress to end.
const READS_WAIT: Duration = Duration::from_secs(1);
/// About 16 MiB of 4 KiB pages: four automatic checkpoints' worth.
const TRUNCATE_AFTER_FRAMES: i64 = 4_000;

/// One committer's watch on the log.
pub(crate) struct WalWatch {
    last: Instant,
}

impl WalWatch {
    pub(crate) fn new() -> WalWatch {
        WalWatch {
            last: Instant::now(),
        }
    }

    /// Called after each commit; does nothing on PostgreSQL or within a second of the last look.
    pub(crate) async fn after_commit(&mut self, store: &Store) {
        if store.backend() != Backend::Sqlite || self.last.elapsed() < CHECK_EVERY {
            return;
        }
        self.last = Instant::now();
        if let Err(error) = bound(store).await {
            warn!(%error, "Checking the size of the SQLite WAL failed.");
        }
    }
}

/// A passive checkpoint (the work the automatic one would do anyway) reports the log's length;
/// a long log is then truncated.
async fn bound(store: &Store) -> Result<(), StoreError> {
    let frames = passive_checkpoint(store).await?;
    if frames > TRUNCATE_AFTER_FRAMES {
        truncate(store).await?;
        let left = passive_checkpoint(store).await?;
        debug!(frames, left, "SQLite WAL checkpointed with TRUNCATE.");
    }
    Ok(())
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on the writer; returns the frames in the log (-1 when
/// the database is not in WAL mode).
async fn passive_checkpoint(store: &Store) -> Result<i64, StoreError> {
    let sql = "PRAGMA wal_checkpoint(PASSIVE)";
    let row = store
        .writer()
        .query_one_raw(stmt(Backend::Sqlite, sql, vec![]))
        .await?;
    match row {
        Some(row) => get(&row, "log"),
        None => Ok(0),
    }
}

/// Truncates the log once the reads of the moment end, waiting for them [`READS_WAIT`] at most
/// (the writer waits meanwhile, so a long read must not stall every write for the whole busy
/// timeout; reads that begin meanwhile do not use the log and are not waited for). When they take longer, the log is left as it is and truncated at a later look.
/// One call, so the shorter timeout never applies to anything else.
async fn truncate(store: &Store) -> Result<(), StoreError> {
    let sql = format!(
        "PRAGMA busy_timeout = {}; PRAGMA wal_checkpoint(TRUNCATE); PRAGMA busy_timeout = {};",
        READS_WAIT.as_millis(),
        SQLITE_BUSY_TIMEOUT.as_millis()
    );
    store.writer().execute_unprepared(&sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::TransactionTrait;

    use super::*;
    use crate::store::testing::TestDb;

    /// A read that stays open while the log grows keeps the automatic checkpoint from starting
    /// it over, as reads one after another do under load; once it ends, the log is emptied.
    #[tokio::test]
    async fn a_log_held_by_a_long_read_is_emptied_afterwards() {
        let db = TestDb::sqlite().await;
        let store = db.store.clone();
        let writer = store.writer();
        writer
            .execute_unprepared("CREATE TABLE pad (b BLOB)")
            .await
            .expect("create");
        let read = store.reader().begin().await.expect("begin a read");
        let count = "SELECT COUNT(*) AS n FROM pad";
        read.query_one_raw(stmt(Backend::Sqlite, count, vec![]))
            .await
            .expect("read");
        // About 5,000 pages, written while the read holds its snapshot.
        for _ in 0..50 {
            let sql = "INSERT INTO pad (b) SELECT randomblob(4000) FROM (WITH RECURSIVE \
                       n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT i FROM n)";
            writer.execute_unprepared(sql).await.expect("insert");
        }
        let before = passive_checkpoint(&store).await.expect("checkpoint");
        read.commit().await.expect("end the read");
        bound(&store).await.expect("bound the log");
        let after = passive_checkpoint(&store).await.expect("checkpoint");
        assert!(
            before > TRUNCATE_AFTER_FRAMES,
            "the log held {before} frames"
        );
        assert_eq!(after, 0, "the log was emptied ({before} frames before)");
        db.cleanup().await;
    }
}
