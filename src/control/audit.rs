//! The admin API's audit log: one JSON line per call (when, who, from where, what, the
//! answer), appended to a file only its owner reads. Bodies are never written: they may
//! carry secrets, and answers do (a new secret, a new key).

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Serialize)]
pub struct Line<'a> {
    pub time: String,
    /// The admin key's name; `null` when no key was accepted.
    pub key: Option<&'a str>,
    pub client: String,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// What the call acted on (a client id, a subscription id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    /// The new version of what it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The log file, opened again when it was moved away (logrotate's default `create` mode)
/// or removed: admin calls are rare, so one `stat` each is nothing.
pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(open(path)?),
        })
    }

    pub fn write(&self, line: &Line<'_>) {
        use std::os::unix::fs::MetadataExt;
        let Ok(mut text) = serde_json::to_vec(line) else {
            return;
        };
        text.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let moved = match (std::fs::metadata(&self.path), f.metadata()) {
            (Ok(at_path), Ok(open)) => at_path.ino() != open.ino() || at_path.dev() != open.dev(),
            _ => true,
        };
        if moved {
            match open(&self.path) {
                Ok(new) => *f = new,
                Err(e) => log::error!("admin audit log: cannot open {}: {e}", self.path.display()),
            }
        }
        // One write per line: lines of concurrent calls never interleave.
        if let Err(e) = f.write_all(&text) {
            log::error!("admin audit log: cannot write: {e}");
        }
    }
}
