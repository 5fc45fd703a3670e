//! Provisioned records and their feed: the contract on both backends, a reader woken by a
//! write through another handle, and the feed after Redis lost its data or the SQLite file
//! was replaced.

use super::*;

const CRED: RecordKind = RecordKind::Credential;
const SUB: RecordKind = RecordKind::Subscription;

/// The version of a write that must have been done.
fn done(w: Written) -> u64 {
    match w {
        Written::Done { version } => version,
        other => panic!("not written: {other:?}"),
    }
}

fn live(kind: RecordKind, name: &str, version: u64, doc: &[u8]) -> Record {
    Record {
        kind,
        name: name.into(),
        version,
        doc: Some(doc.to_vec()),
    }
}

/// Every record after `after`, read in pages of `limit` until a short page.
async fn read_all(s: &dyn Store, mut after: u64, limit: usize) -> (Vec<Record>, usize) {
    let (mut all, mut pages) = (Vec::new(), 0);
    loop {
        let feed = s.records_after(after, limit, Duration::ZERO).await.unwrap();
        assert!(!feed.full);
        pages += 1;
        let n = feed.records.len();
        assert!(n <= limit, "a page of {n} for a limit of {limit}");
        if let Some(last) = feed.records.last() {
            after = last.version;
        }
        all.extend(feed.records);
        if n < limit {
            return (all, pages);
        }
    }
}

contract!(records_compare_and_set);
async fn records_compare_and_set(s: Arc<dyn Store>) {
    let v1 = done(
        s.put_record(CRED, "alice", None, b"{}".to_vec())
            .await
            .unwrap(),
    );
    // A second create finds the first.
    assert_eq!(
        s.put_record(CRED, "alice", None, b"x".to_vec())
            .await
            .unwrap(),
        Written::Conflict { current: Some(v1) }
    );
    assert_eq!(
        s.put_record(CRED, "alice", Some(v1 + 100), b"x".to_vec())
            .await
            .unwrap(),
        Written::Conflict { current: Some(v1) }
    );
    let v2 = done(
        s.put_record(CRED, "alice", Some(v1), b"{\"v\":2}".to_vec())
            .await
            .unwrap(),
    );
    assert!(v2 > v1);
    assert_eq!(
        s.get_record(CRED, "alice").await.unwrap(),
        Some(live(CRED, "alice", v2, b"{\"v\":2}"))
    );
    // The other namespace has no "alice".
    assert_eq!(s.get_record(SUB, "alice").await.unwrap(), None);
    // Deletes: the wrong version, the right one, then nothing left to delete.
    assert_eq!(
        s.delete_record(CRED, "alice", v1).await.unwrap(),
        Written::Conflict { current: Some(v2) }
    );
    let v3 = done(s.delete_record(CRED, "alice", v2).await.unwrap());
    assert!(v3 > v2);
    assert_eq!(s.get_record(CRED, "alice").await.unwrap(), None);
    // The feed reports the deletion.
    let feed = s.records_after(v2, 10, Duration::ZERO).await.unwrap();
    let tombstone = Record {
        kind: CRED,
        name: "alice".into(),
        version: v3,
        doc: None,
    };
    assert_eq!(
        feed,
        RecordFeed {
            records: vec![tombstone],
            full: false
        }
    );
    assert_eq!(
        s.delete_record(CRED, "alice", v3).await.unwrap(),
        Written::Conflict { current: None }
    );
    // A deleted record is not live: an update of it conflicts, a create succeeds.
    assert_eq!(
        s.put_record(CRED, "alice", Some(v3), b"x".to_vec())
            .await
            .unwrap(),
        Written::Conflict { current: None }
    );
    let v4 = done(
        s.put_record(CRED, "alice", None, b"again".to_vec())
            .await
            .unwrap(),
    );
    assert!(v4 > v3);
    assert_eq!(
        s.get_record(CRED, "alice").await.unwrap(),
        Some(live(CRED, "alice", v4, b"again"))
    );
    // The feed holds a record's latest change: a follower that had not read the deletion
    // yet goes straight to the new record.
    let feed = s.records_after(v2, 10, Duration::ZERO).await.unwrap();
    assert_eq!(feed.records, vec![live(CRED, "alice", v4, b"again")]);
    // Never written: nothing to get or delete. An empty document is a document.
    assert_eq!(s.get_record(SUB, "nobody").await.unwrap(), None);
    assert_eq!(
        s.delete_record(SUB, "nobody", 1).await.unwrap(),
        Written::Conflict { current: None }
    );
    let v5 = done(s.put_record(SUB, "empty", None, Vec::new()).await.unwrap());
    assert_eq!(
        s.get_record(SUB, "empty").await.unwrap(),
        Some(live(SUB, "empty", v5, b""))
    );
}

contract!(record_versions_order_every_kind);
async fn record_versions_order_every_kind(s: Arc<dyn Store>) {
    let empty = s.records_after(0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(empty, RecordFeed::default());
    let mut written = Vec::new();
    for (i, kind) in [CRED, SUB, SUB, CRED, SUB].into_iter().enumerate() {
        // The same names in both namespaces: separate records.
        let name = format!("n{}", i % 2);
        let doc = format!("{{\"i\":{i}}}").into_bytes();
        let expected = s.get_record(kind, &name).await.unwrap().map(|r| r.version);
        let v = done(
            s.put_record(kind, &name, expected, doc.clone())
                .await
                .unwrap(),
        );
        written.push(live(kind, &name, v, &doc));
    }
    let gone = s.get_record(SUB, "n0").await.unwrap().unwrap();
    assert_eq!(gone, written[4]);
    let v = done(s.delete_record(SUB, "n0", gone.version).await.unwrap());
    written.push(Record {
        doc: None,
        version: v,
        ..gone
    });
    for pair in written.windows(2) {
        assert!(pair[0].version < pair[1].version, "{written:?}");
    }
    // One change per (kind, name) in the feed: the latest, in version order.
    let latest: Vec<Record> = written
        .iter()
        .filter(|r| {
            !written[..]
                .iter()
                .any(|o| o.kind == r.kind && o.name == r.name && o.version > r.version)
        })
        .cloned()
        .collect();
    let (all, pages) = read_all(&*s, 0, 100).await;
    assert_eq!((all.clone(), pages), (latest.clone(), 1));
    // Paging: pages of 2 read the same records, then a short page ends the loop.
    let (paged, pages) = read_all(&*s, 0, 2).await;
    assert_eq!(paged, latest);
    assert_eq!(pages, latest.len() / 2 + 1);
    // No limit to speak of: one page.
    let (unbounded, pages) = read_all(&*s, 0, usize::MAX).await;
    assert_eq!((unbounded, pages), (latest.clone(), 1));
    // A limit of 0 reads one at a time rather than nothing for ever.
    let one = s.records_after(0, 0, Duration::ZERO).await.unwrap();
    assert_eq!(one.records, latest[..1].to_vec());
    // After the last change there is nothing, and waiting finds nothing either.
    let top = latest.last().map(|r| r.version).unwrap_or(0);
    let waited = s
        .records_after(top, 10, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(waited, RecordFeed::default());
}

/// Run a check against two handles on one store: two openers of one SQLite file (as two
/// processes have), two clients of one Redis.
macro_rules! two_handles {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(Arc::new(open_sqlite(&dir)), Arc::new(open_sqlite(&dir))).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let server = RedisServer::start();
                super::$name(Arc::new(server.store("t:")), Arc::new(server.store("t:"))).await;
            }
        }
    };
}

two_handles!(waiting_reader_is_woken_by_another_writer);
async fn waiting_reader_is_woken_by_another_writer(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let first = done(
        b.put_record(SUB, "first", None, b"1".to_vec())
            .await
            .unwrap(),
    );
    let seen = a.records_after(0, 100, Duration::ZERO).await.unwrap();
    assert_eq!(seen.records, vec![live(SUB, "first", first, b"1")]);
    let wait = Duration::from_secs(30);
    let reader = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.records_after(first, 100, wait).await }
    });
    // Give the reader time to start waiting (it finds the record either way).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished());
    // The waiting reader holds up no other call of its store.
    let got = tokio::time::timeout(Duration::from_secs(2), a.get_record(SUB, "first")).await;
    assert_eq!(got.unwrap().unwrap(), Some(live(SUB, "first", first, b"1")));
    let started = Instant::now();
    let v = done(
        b.put_record(CRED, "late", None, b"2".to_vec())
            .await
            .unwrap(),
    );
    let woken = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the reader was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(
        woken,
        RecordFeed {
            records: vec![live(CRED, "late", v, b"2")],
            full: false
        }
    );
    assert!(started.elapsed() < wait / 10, "{:?}", started.elapsed());
    // The writing handle's own feed sees the same.
    let theirs = b.records_after(first, 100, Duration::ZERO).await.unwrap();
    assert_eq!(theirs, woken);
}

/// A flush the writers outran: the new sequence passed the reader's cursor before it read
/// again. The epoch a new sequence starts with still tells it to read everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_flush_is_noticed_even_when_new_writes_pass_the_cursor() {
    let server = RedisServer::start();
    let reader = server.store("e:");
    let writer = server.store("e:");
    done(
        writer
            .put_record(CRED, "old", None, b"o".to_vec())
            .await
            .unwrap(),
    );
    let seen = reader.records_after(0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(seen.records.len(), 1);
    let cursor = seen.records[0].version;
    assert_eq!(server.cli(&["EXISTS", "e:records:epoch"]), "1");
    server.cli(&["FLUSHALL"]);
    for name in ["n1", "n2", "n3"] {
        done(
            writer
                .put_record(CRED, name, None, b"n".to_vec())
                .await
                .unwrap(),
        );
    }
    // A full read is paged like any other: the first two, then the rest as usual.
    let feed = reader
        .records_after(cursor, 2, Duration::ZERO)
        .await
        .unwrap();
    assert!(feed.full, "{feed:?}");
    let names: Vec<&str> = feed.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["n1", "n2"], "`old` is gone");
    let rest = reader.records_after(2, 2, Duration::ZERO).await.unwrap();
    assert!(!rest.full, "{rest:?}");
    let names: Vec<&str> = rest.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["n3"]);
    let next = reader.records_after(3, 10, Duration::ZERO).await.unwrap();
    assert!(!next.full && next.records.is_empty(), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_records_after_a_flush_are_read_whole() {
    let server = RedisServer::start();
    let s = server.store("f:");
    done(s.put_record(CRED, "a", None, b"a".to_vec()).await.unwrap());
    let b = done(s.put_record(CRED, "b", None, b"b".to_vec()).await.unwrap());
    let cursor = done(s.delete_record(CRED, "b", b).await.unwrap());
    // The keys the scripts document.
    assert_eq!(server.cli(&["GET", "f:records:seq"]), cursor.to_string());
    assert_eq!(server.cli(&["HGET", "f:record:1:a", "doc"]), "a");
    assert_eq!(server.cli(&["HEXISTS", "f:record:1:b", "doc"]), "0");
    assert_eq!(
        server.cli(&["ZSCORE", "f:records:index", "1:b"]),
        cursor.to_string()
    );
    assert_eq!(server.cli(&["XLEN", "f:records:feed"]), "3");
    server.cli(&["FLUSHALL"]);
    // The sequence is behind the follower: the whole (empty) live set, at once.
    let started = Instant::now();
    let feed = s
        .records_after(cursor, 10, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        feed,
        RecordFeed {
            records: vec![],
            full: true
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Written again after the flush: the sequence starts over, still behind the cursor.
    let again = done(s.put_record(SUB, "c", None, b"c".to_vec()).await.unwrap());
    assert_eq!(again, 1);
    let feed = s.records_after(cursor, 10, Duration::ZERO).await.unwrap();
    assert!(feed.full);
    assert_eq!(feed.records, vec![live(SUB, "c", again, b"c")]);
}

#[tokio::test]
async fn sqlite_records_after_the_file_went_back_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sqlite(&dir);
    let a = done(s.put_record(CRED, "a", None, b"a".to_vec()).await.unwrap());
    let cursor = done(s.put_record(SUB, "b", None, b"b".to_vec()).await.unwrap());
    // An older copy of the file: the last change is not in it.
    rusqlite::Connection::open(dir.path().join("t.db"))
        .unwrap()
        .execute("DELETE FROM records WHERE version = ?1", [cursor as i64])
        .unwrap();
    let feed = s
        .records_after(cursor, 10, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        feed,
        RecordFeed {
            records: vec![live(CRED, "a", a, b"a")],
            full: true
        }
    );
}

#[tokio::test]
async fn sqlite_adds_the_records_table_to_a_previous_release_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(open_sqlite(&dir));
    // The file as the previous release left it: no records table.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE records")
        .unwrap();
    let s = open_sqlite(&dir);
    let v = done(s.put_record(CRED, "a", None, b"a".to_vec()).await.unwrap());
    assert_eq!(v, 1);
    assert_eq!(
        s.get_record(CRED, "a").await.unwrap(),
        Some(live(CRED, "a", v, b"a"))
    );
}

/// The feed's query walks the version index from the cursor: polled every 50 ms by every
/// process, it must not read the whole table (37.5 ms a poll at 100,000 records).
#[tokio::test]
async fn sqlite_feed_reads_the_version_index_not_the_table() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_sqlite(&dir));
    let c = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    let sql = format!(
        "EXPLAIN QUERY PLAN {}",
        crate::store::sqlite::records::feed_sql()
    );
    let mut stmt = c.prepare(&sql).unwrap();
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params![0i64, 10i64], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("records_by_version"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

/// Records of a kind from a newer tollgate are passed over, and use up no page.
async fn unknown_kinds_are_passed_over(s: &dyn Store, add_unknown: impl FnOnce(u64)) {
    let a = done(s.put_record(CRED, "a", None, b"a".to_vec()).await.unwrap());
    add_unknown(a + 1);
    let b = done(s.put_record(SUB, "b", None, b"b".to_vec()).await.unwrap());
    assert_eq!(b, a + 2);
    let page = s.records_after(0, 1, Duration::ZERO).await.unwrap();
    assert_eq!(page.records, vec![live(CRED, "a", a, b"a")]);
    let page = s.records_after(a, 1, Duration::ZERO).await.unwrap();
    assert_eq!(page.records, vec![live(SUB, "b", b, b"b")]);
    let (all, _) = read_all(s, 0, 10).await;
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn sqlite_unknown_kinds_are_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sqlite(&dir);
    let path = dir.path().join("t.db");
    unknown_kinds_are_passed_over(&s, |v| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO records (kind, name, version, doc) VALUES (9, 'x', ?1, x'00')",
                [v as i64],
            )
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unknown_kinds_are_passed_over() {
    let server = RedisServer::start();
    let s = server.store("u:");
    unknown_kinds_are_passed_over(&s, |v| {
        let v = v.to_string();
        server.cli(&["INCR", "u:records:seq"]);
        server.cli(&["HSET", "u:record:9:x", "v", &v, "doc", "x"]);
        server.cli(&["ZADD", "u:records:index", &v, "9:x"]);
    })
    .await;
}
