//! Loopback ports for the servers a test starts.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// A loopback port nobody listens on right now (bound on 127.0.0.1:0, then released),
/// and never one this test process was given before: the kernel may hand a just-released
/// port out again at once, and a gateway given the same port for two listeners refuses
/// to start ("is also a client listener").
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}
