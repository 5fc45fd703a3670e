//! What only the Redis store does: key expiry, the feed after a gap or a loss, timeouts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_expire_with_their_tokens() {
    let server = RedisServer::start();
    let s = server.store("exp:");
    let now = unix_now();
    s.insert(vec![
        (
            digest("short"),
            record(TokenKind::Access, "s", "gx", Some(now + 100)),
        ),
        (
            digest("long"),
            record(TokenKind::Refresh, "l", "gx", Some(now + 5_000)),
        ),
    ])
    .await
    .unwrap();
    let ttl = |key: String| server.cli(&["PTTL", &key]).parse::<i64>().unwrap();
    let short = ttl(format!("exp:t:{}", wire_hex(&digest("short"))));
    assert!((90_000..=100_000).contains(&short), "{short}");
    // The grant's set lives as long as its longest-lived token.
    let grant = ttl("exp:g:gx".into());
    assert!((4_990_000..=5_000_000).contains(&grant), "{grant}");
    // An immortal token keeps its grant's set for ever.
    s.insert(vec![(
        digest("forever"),
        record(TokenKind::Access, "f", "gx", None),
    )])
    .await
    .unwrap();
    assert_eq!(ttl("exp:g:gx".into()), -1);
    assert_eq!(ttl(format!("exp:t:{}", wire_hex(&digest("forever")))), -1);
}

fn wire_hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_feed_reads_the_whole_set_after_a_gap_or_a_loss() {
    let server = RedisServer::start();
    let s = server.store("gap:");
    let now = unix_now();
    let first = s
        .revocations(&Cursor::default(), Duration::ZERO, now)
        .await
        .unwrap();
    assert!(first.full);
    for i in 0..5 {
        s.revoke(Revoke::Token {
            jti: format!("j{i}").into(),
            digest: None,
            until: None,
        })
        .await
        .unwrap();
    }
    // Another node, following from the start, sees all five in order.
    let other = server.store("gap:");
    let seen = other
        .revocations(&first.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert!(!seen.full);
    assert_eq!(seen.revocations.len(), 5);
    // Entries trimmed before a node read them: it must read the whole set.
    server.cli(&["XTRIM", "gap:feed", "MAXLEN", "0"]);
    let late = server.store("gap:");
    let feed = late
        .revocations(&first.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert!(feed.full);
    assert_eq!(feed.revocations.len(), 5);
    // Redis lost everything (restarted without persistence): again the whole (now empty)
    // set, not a wait for stream ids that will never come.
    server.cli(&["FLUSHALL"]);
    let after_loss = server.store("gap:");
    let feed = after_loss
        .revocations(&seen.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert!(feed.full);
    assert!(feed.revocations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_calls_fail_in_time_when_the_server_hangs_or_is_gone() {
    let mut server = RedisServer::start();
    let s = server.store("down:");
    s.ping().await.unwrap();
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    // The calls return (with errors): the store's own timeouts answer, the connection does
    // not hang. The outer bound only keeps a regression from hanging the test run.
    let bound = Duration::from_secs(60);
    let get = tokio::time::timeout(bound, s.get(&digest("x"))).await;
    assert!(matches!(get, Ok(Err(_))), "{get:?}");
    let feed = tokio::time::timeout(
        bound,
        s.revocations(&Cursor(Some("0-0".into())), Duration::from_millis(100), 0),
    )
    .await;
    assert!(matches!(feed, Ok(Err(_))), "{feed:?}");
    signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    assert!(s.ping().await.is_err());
}
