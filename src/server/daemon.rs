//! `tollgate -d`: run the gateway in the background, and say truthfully whether it started.
//!
//! The command starts the gateway again, without `-d`, as a child in its own process group
//! (stdin and stdout closed, stderr shared, so the child's own error reaches the terminal or
//! the journal), and waits until the child reports serving: its pid in the pid file, which
//! it writes once it listens on every configured address (after taking the sockets over,
//! in an upgrade). It exits 0 then, and 1 when the child exits first or does not report in
//! time. Config paths are absolute by then (the config file's own path is made absolute
//! before it is read), so nothing depends on the directory the command ran in.

use super::listening::running_pid;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why the background gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot find this program to start it in the background: {0}")]
    Exe(std::io::Error),
    #[error("cannot start the gateway in the background: {0}")]
    Spawn(std::io::Error),
    #[error("the gateway exited during its start ({0}); its error is above")]
    Exited(ExitStatus),
    #[error("the gateway did not report serving within {0:?} (pid file {1}); it was stopped")]
    NotReady(Duration, String),
}

/// Start the gateway in the background with `args` (the config file, `-u` for an upgrade)
/// and wait until it serves; its pid.
pub fn spawn_and_wait(
    args: &[String],
    pid_file: &Path,
    wait: Duration,
) -> Result<u32, DaemonError> {
    let exe = std::env::current_exe().map_err(DaemonError::Exe)?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(DaemonError::Spawn)?;
    let pid = child.id();
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DaemonError::Exited(status));
        }
        if running_pid(pid_file) == Some(pid) {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            // Half started is worse than not started: stop it.
            let _ = child.kill();
            let _ = child.wait();
            return Err(DaemonError::NotReady(wait, pid_file.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
