//! A Node.js server from `tests/interop/` (run with `npm ci --prefix tests/interop`): it
//! prints `{"port": N}` once listening, and is killed (SIGKILL) when dropped.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct NodeServer {
    child: Child,
    pub port: u16,
}

impl NodeServer {
    /// `script` relative to `tests/interop/`, with its arguments.
    pub fn start<S: AsRef<OsStr>>(script: &str, args: &[S]) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
        assert!(
            dir.join("node_modules").exists(),
            "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("{script}: {line:?}"));
        let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
        Self { child, port }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
