//! Graceful upgrades and shutdowns with real processes: `SIGQUIT` to the running gateway
//! and a new one started with `-u` hand the listening sockets over under a paced load that
//! counts every request; a new process that cannot start leaves the old one serving; a
//! response that finishes while the process drains says `Connection: close`; `-d` returns
//! only once the gateway serves, and fails with the gateway's own error when it cannot.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - {{ name: open, prefix: /open, strip_prefix: true, upstream: {{ servers: ["{}"] }}, auth: none }}
"#,
        up.addr
    )
}

const SERVER: &str = "server:\n  threads: 2\n  drain_time: 2s\n  grace_period: 1s\n  graceful_shutdown_timeout: 2s\n  upgrade_timeout: 8s\n";

async fn start(up: &Upstream) -> Gateway {
    let mut spec = GatewaySpec::new(catalog(up));
    spec.server = Some(SERVER.into());
    Gateway::start(spec, &TestKey::generate()).await
}

fn pid_file(gw: &Gateway) -> PathBuf {
    gw.state_dir().join("tollgate.pid")
}

fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// A process the test started, killed when the test ends (passed or failed).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// The daemon the test started, killed when the test ends if it still runs.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// A second tollgate process on `config`, its output in `log`.
fn spawn(args: &[&str], config: &Path, log: &Path, dir: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(binary())
            .args(args)
            .arg("-c")
            .arg(config)
            .current_dir(dir)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap(),
    )
}

/// `tollgate -d -c tollgate.yaml` run in `dir`: whether it succeeded, and what it said.
/// Its output goes to a file, not a pipe: the daemon inherits stderr, so a pipe would
/// stay open for as long as the daemon runs.
fn daemon(dir: &Path, log: &str) -> (bool, String) {
    let path = dir.join(log);
    let out = std::fs::File::create(&path).unwrap();
    let status = Command::new(binary())
        .args(["-d", "-c", "tollgate.yaml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .status()
        .unwrap();
    (status.success(), std::fs::read_to_string(&path).unwrap())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests at a steady pace from a few keep-alive clients until stopped; every one counted.
struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize, every: Duration) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (url, ok, failed, errors, stop) = (
                    url.clone(),
                    ok.clone(),
                    failed.clone(),
                    errors.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    let mut tick = tokio::time::interval(every);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let outcome = match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                r.bytes().await.map(|_| ()).map_err(|e| format!("{e:?}"))
                            }
                            Ok(r) => Err(format!("status {}", r.status())),
                            Err(e) => Err(format!("{e:?}")),
                        };
                        match outcome {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                errors.lock().unwrap().push(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            ok,
            failed,
            errors,
            stop,
            tasks,
        }
    }

    /// Stop; (answered, failed, the failures).
    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// A keep-alive connection to the gateway on `port`, already accepted by the process
/// serving now (one request answered on it).
async fn kept_connection(port: u16) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = exchange(&mut s, 0).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    s
}

/// One keep-alive request on `s` whose response comes after `delay_ms` upstream; the
/// response head, lowercased.
async fn exchange(s: &mut tokio::net::TcpStream, delay_ms: u64) -> String {
    let req = format!(
        "GET /open/__sleep/{delay_ms} HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    // The head, up to the blank line; then the (short) body, so the connection is reusable.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response head");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < end + length {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response body");
        got.extend_from_slice(&buf[..n]);
    }
    head
}

/// A request whose response comes after `delay_ms` upstream, on a new connection.
async fn slow_request(port: u16, delay_ms: u64) -> tokio::task::JoinHandle<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { exchange(&mut s, delay_ms).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_under_a_paced_load_loses_no_request() {
    let up = start_upstream().await;
    let mut old = start(&up).await;
    let old_pid = old.pid();
    // Written once every listener is up, a moment after the port first answers.
    eventually(
        "the pid file names the serving process",
        Duration::from_secs(10),
        || pid_in(&pid_file(&old)) == Some(old_pid),
    )
    .await;
    let load = Load::start(old.url("/open/x"), 4, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // In flight across the handover: answered by the old process.
    let across = slow_request(old.port, 2500).await;
    // A keep-alive connection the old process holds, used again while it drains.
    let mut kept = kept_connection(old.port).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // As the systemd unit does it: SIGQUIT to the old process, then the new one with -u.
    old.signal("QUIT");
    let new_log = old.dir.path().join("new.log");
    let mut new = spawn(&["-u"], &old.config_path, &new_log, old.dir.path());
    let new_pid = new.id();
    eventually(
        "the new process reports serving",
        Duration::from_secs(20),
        || pid_in(&pid_file(&old)) == Some(new_pid),
    )
    .await;
    assert!(
        old.wait_for_log(&format!("process {new_pid} serves")).await,
        "{}",
        old.log()
    );
    let head = exchange(&mut kept, 300).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("connection: close"),
        "an answer while draining closes its connection:\n{head}"
    );
    eventually("the old process exits", Duration::from_secs(20), || {
        !alive(old_pid)
    })
    .await;
    let head = across.await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(failed, 0, "{errors:?}\nold:\n{}", old.log());
    assert!(ok > 200, "the load ran: {ok} requests");
    // The new process serves alone, and is told apart in its own log.
    let r = reqwest::get(old.url("/open/y")).await.unwrap();
    assert_eq!(r.status(), 200);
    let log = std::fs::read_to_string(&new_log).unwrap();
    assert!(log.contains(&format!("serving (pid {new_pid})")), "{log}");
    let _ = new.kill();
    let _ = new.wait();
    old.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let up = start_upstream().await;
    let old = start(&up).await;
    let old_pid = old.pid();
    let base = std::fs::read_to_string(&old.config_path).unwrap();
    // Two ways to fail: a state directory that cannot be created, and a new listener on a
    // port another program holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad_state = base.replace("state_dir: state", "state_dir: /proc/tollgate-state");
    let port_taken = format!(
        "{base}\nforward_auth:\n  listen: {}\n",
        taken.local_addr().unwrap()
    );
    for (name, config, why) in [
        ("state", bad_state, "cannot create state_dir"),
        ("port", port_taken, "cannot listen on"),
    ] {
        let load = Load::start(old.url("/open/x"), 4, Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = old.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, config).unwrap();
        old.signal("QUIT");
        let log = old.dir.path().join(format!("{name}.log"));
        let mut new = spawn(&["-u"], &path, &log, old.dir.path());
        let status = new.wait().unwrap();
        assert!(!status.success(), "{name}: the new process must fail");
        let said = std::fs::read_to_string(&log).unwrap();
        assert!(said.contains(why), "{name}: {said}");
        // The old process gives up once server.upgrade_timeout (8 s here) has passed, and
        // finishes the handover attempt under way (Pingora's retries, up to 5 s).
        eventually(
            "the old process says it keeps serving",
            Duration::from_secs(30),
            || old.log().contains("this process keeps serving"),
        )
        .await;
        let (ok, failed, errors) = load.finish().await;
        assert_eq!(failed, 0, "{name}: {errors:?}");
        assert!(ok > 100, "{name}: the load ran: {ok}");
        assert!(alive(old_pid));
        assert_eq!(pid_in(&pid_file(&old)), Some(old_pid));
        // The log line is per attempt: clear it for the next one.
        std::fs::write(old.log_path(), "").unwrap();
    }
    // And a good upgrade still works afterwards.
    old.signal("QUIT");
    let log = old.dir.path().join("good.log");
    let mut new = spawn(&["-u"], &old.config_path, &log, old.dir.path());
    let new_pid = new.id();
    eventually("the new process serves", Duration::from_secs(20), || {
        pid_in(&pid_file(&old)) == Some(new_pid)
    })
    .await;
    eventually("the old process exits", Duration::from_secs(20), || {
        !alive(old_pid)
    })
    .await;
    let _ = new.kill();
    let _ = new.wait();
    drop(taken);
}

#[tokio::test]
async fn a_response_finished_while_draining_says_connection_close() {
    let up = start_upstream().await;
    let mut gw = start(&up).await;
    let in_flight = slow_request(gw.port, 800).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.signal("TERM");
    let head = in_flight.await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(gw.wait().success());
}

#[tokio::test]
async fn daemon_mode_returns_once_serving_and_fails_with_the_gateways_error() {
    let up = start_upstream().await;
    let mut gw = start(&up).await;
    let dir = gw.dir.path().to_path_buf();
    let pid_file = pid_file(&gw);
    gw.kill();
    let _ = std::fs::remove_file(&pid_file);

    // A relative -c, from the config's own directory.
    let (ok, said) = daemon(&dir, "first.log");
    assert!(ok, "{said}");
    let pid = pid_in(&pid_file).expect("the pid file names the daemon");
    let _stop = KillOnDrop(pid);
    assert!(said.contains(&format!("pid {pid}")), "{said}");
    let r = reqwest::get(gw.url("/open/x")).await.unwrap();
    assert_eq!(r.status(), 200, "serving when -d returns");

    // The port is now taken (by the daemon itself): a second -d fails, and says why.
    let (ok, said) = daemon(&dir, "second.log");
    assert!(!ok, "{said}");
    assert!(said.contains("cannot listen on"), "{said}");
    assert!(said.contains("exited during its start"), "{said}");
    assert_eq!(
        pid_in(&pid_file),
        Some(pid),
        "the running daemon's pid file stays"
    );

    Command::new("kill").arg(pid.to_string()).status().unwrap();
    eventually(
        "the daemon stops on SIGTERM",
        Duration::from_secs(10),
        || !alive(pid),
    )
    .await;
}
