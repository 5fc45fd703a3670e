//! The bare-Pingora floor of the load harness: a pass-through proxy with an empty
//! `ProxyHttp` (empty context, a prebuilt `HttpPeer`, no modules), built as an example of
//! this crate so that it shares tollgate's Pingora features, release profile and
//! allocator. What the harness measures here is Pingora's own per-request cost; the
//! difference to tollgate's unprotected route is ours.
//!
//! ```sh
//! cargo build --release --example bare
//! target/release/examples/bare --listen 127.0.0.1:6188 --upstream 127.0.0.1:8000 &
//! curl -i http://127.0.0.1:6188/
//! ```

// Bench harness code, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use clap::Parser;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use std::net::SocketAddr;
use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "A bare Pingora pass-through proxy (the load harness's floor)")]
struct Cli {
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// The one upstream server, plain HTTP/1.1.
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads (1, like the harness's tollgate scenarios).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Parse HTTP/1 headers without keeping their names' case, both ways (tollgate's
    /// `server.header_case: lowercase`).
    #[arg(long)]
    lowercase_header_names: bool,
    /// Pingora's pid file; the upgrade socket goes next to it.
    #[arg(long, default_value = "/tmp/tollgate-bare.pid")]
    pid_file: PathBuf,
}

/// Every request goes to the same upstream; no phase but `upstream_peer` is implemented.
struct Bare {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    /// No modules (Pingora's default adds a disabled compression module).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let cli = Cli::parse();
    let conf = ServerConf {
        threads: cli.threads,
        pid_file: cli.pid_file.to_string_lossy().into_owned(),
        upgrade_sock: cli
            .pid_file
            .with_extension("upgrade.sock")
            .to_string_lossy()
            .into_owned(),
        // Stop at once on SIGTERM, as the harness's tollgate configs do.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(cli.upstream, false, String::new());
    peer.options.h1_lowercase_header_names = cli.lowercase_header_names;
    let bare = Bare { peer };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, bare);
    if cli.lowercase_header_names {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h1_lowercase_header_names = true;
        proxy.app_logic_mut().unwrap().server_options = Some(options);
    }
    proxy.add_tcp(&cli.listen.to_string());
    server.add_service(proxy);
    server.run_forever()
}
