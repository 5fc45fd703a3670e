//! The `tollgate` command: run the gateway, test a config (`-t`), or hash a client secret.

use clap::{Parser, Subcommand};
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate::server::{self, RunOptions};
use tollgate::{admin, config};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Edge gateway with a built-in OAuth2 / JWT token service"
)]
struct Cli {
    /// The gateway config file.
    #[arg(
        short = 'c',
        long = "conf",
        global = true,
        default_value = "/etc/tollgate/tollgate.yaml"
    )]
    conf: PathBuf,
    /// Check the configuration (and the key and certificate files it names), then exit.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Take over the listening sockets of a running instance (graceful upgrade).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
    /// Run in the background; returns once the gateway serves (its pid in the pid file), or
    /// fails with why it did not start.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Read a client secret or password on stdin and print its argon2id hash.
    HashSecret {
        /// Generate a random secret instead, and print it with its hash.
        #[arg(long)]
        generate: bool,
    },
    /// Print the SHA-256 digest of an API key read on stdin, for `api_keys` in the config.
    ApiKey {
        /// Generate a new random key instead, and print it (shown once) with its digest.
        #[arg(long)]
        generate: bool,
    },
    /// The generated signing keys in the store (shared by every node of a cluster).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// DPoP (RFC 9449) from the client's side: a key, and proofs made with it.
    Dpop {
        #[command(subcommand)]
        action: DpopAction,
    },
    /// The admin API's common calls (credentials, secrets, API keys, registration tokens).
    Admin(tollgate::control::cli::AdminArgs),
    /// Revoke every token of a client or a user issued until now, on every node.
    Revoke {
        /// The client whose tokens to revoke (a leaked secret, a compromised app).
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        client: Option<String>,
        /// The user whose tokens to revoke (a stolen password, someone who left).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum DpopAction {
    /// Print a new P-256 private key (PKCS#8 PEM) for DPoP proofs.
    Key,
    /// Print the RFC 7638 thumbprint of a key: the `cnf.jkt` of the tokens bound to it.
    Thumbprint {
        /// The key's PEM file.
        #[arg(long)]
        key: std::path::PathBuf,
    },
    /// Print a DPoP proof for a request (a fresh one per line with --count).
    Proof {
        /// The key's PEM file (`tollgate dpop key` makes one).
        #[arg(long)]
        key: std::path::PathBuf,
        /// The access token the proof goes with, at an API (its hash becomes `ath`).
        #[arg(long)]
        token: Option<String>,
        /// The server's nonce (from a `DPoP-Nonce` header).
        #[arg(long)]
        nonce: Option<String>,
        /// How many proofs to print, one per line (load tests: each is single-use).
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// The request method: POST for a token request.
        method: String,
        /// The request URL, as the client calls it.
        url: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Publish a new signing key now; it signs after tokens.rotation.publish_ahead, and the
    /// key it replaces stays published until its last token has expired.
    Rotate,
    /// List the stored keys and their state.
    List,
}

/// mimalloc: per-thread free lists suit a proxy that allocates and frees small buffers on
/// every request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Every path in the config is resolved against the config file's directory: made
    // absolute here, they do not depend on where a background process runs.
    if let Ok(absolute) = std::path::absolute(&cli.conf) {
        cli.conf = absolute;
    }
    if let Some(Command::HashSecret { generate }) = cli.command {
        return hash_secret(generate);
    }
    if let Some(Command::ApiKey { generate }) = cli.command {
        return api_key(generate);
    }
    if let Some(Command::Dpop { action }) = cli.command {
        return dpop(action);
    }
    if let Some(Command::Admin(args)) = cli.command {
        return tollgate::control::cli::run(args, &cli.conf);
    }
    let cfg = match config::load(&cli.conf) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "tollgate: configuration {} has {} error(s)",
                cli.conf.display(),
                errors.0.len()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(command) = cli.command {
        init_logging(cfg.log.level.min(log::LevelFilter::Warn));
        let result = match command {
            Command::Keys {
                action: KeysAction::Rotate,
            } => admin::rotate_keys(&cfg),
            Command::Keys {
                action: KeysAction::List,
            } => admin::list_keys(&cfg),
            Command::Revoke { client, user } => admin::revoke(
                &cfg,
                match (client, user) {
                    (Some(c), _) => admin::RevokeTarget::Client(c),
                    (None, Some(u)) => admin::RevokeTarget::User(u),
                    (None, None) => return ExitCode::FAILURE,
                },
            ),
            Command::HashSecret { .. }
            | Command::ApiKey { .. }
            | Command::Dpop { .. }
            | Command::Admin(_) => {
                return ExitCode::FAILURE;
            }
        };
        return match result {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.test {
        return match server::check(&cfg) {
            Ok(()) => {
                println!("tollgate: configuration {} is ok", cli.conf.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("tollgate: configuration {} test failed", cli.conf.display());
                ExitCode::FAILURE
            }
        };
    }
    if cli.daemon {
        return daemonize(&cli, &cfg);
    }
    init_logging(cfg.log.level);
    let opts = RunOptions {
        config_path: cli.conf.clone(),
        upgrade: cli.upgrade,
    };
    match server::run(cfg, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `-d`: the gateway runs as a background child; this command exits 0 once it serves, or
/// 1 with why it did not.
fn daemonize(cli: &Cli, cfg: &config::Config) -> ExitCode {
    let mut args = vec!["-c".to_string(), cli.conf.to_string_lossy().into_owned()];
    if cli.upgrade {
        args.push("-u".into());
    }
    // Startup, then (in an upgrade) the wait for the old process's sockets.
    let wait = cfg.server.upgrade_timeout + std::time::Duration::from_secs(30);
    match server::daemon::spawn_and_wait(&args, &cfg.server.pid_file, wait) {
        Ok(pid) => {
            println!("tollgate: serving in the background (pid {pid})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `log.level` applies to the gateway's own records. Dependencies are capped at `info`:
/// Pingora's debug and trace records print whole request headers and URIs, which would put
/// bearer tokens, Basic credentials and query-string secrets into the log.
fn init_logging(level: log::LevelFilter) {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level.min(log::LevelFilter::Info))
        .filter_module("tollgate", level)
        // The access log is on or off by `log.access_log`, whatever the level. The JSON
        // one is one bare object per line, for log shippers; every other record keeps the
        // usual `[time LEVEL target] message`.
        .filter_module("access", log::LevelFilter::Info)
        .filter_module("access_json", log::LevelFilter::Info)
        .format(|buf, record| {
            if record.target() == "access_json" {
                writeln!(buf, "{}", record.args())
            } else {
                writeln!(
                    buf,
                    "[{} {:<5} {}] {}",
                    buf.timestamp_millis(),
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
        });
    let logger = builder.build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(QuietClientFailures(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// Pingora logs each client that goes away or is timed out while its request header is
/// read as an ERROR (`Fail to proxy: Downstream …`), where nginx logs such a client at
/// info. Under a slowloris flood that is a line per connection: the attacker would set the
/// log's volume. Those records are dropped (as below the `info` cap for dependencies);
/// `tollgate_client_timeouts_total` counts the slow ones.
struct QuietClientFailures(env_logger::Logger);

impl log::Log for QuietClientFailures {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        let client_failure = record.level() == log::Level::Error
            && record.target().starts_with("pingora_proxy")
            && record
                .args()
                .to_string()
                .starts_with("Fail to proxy: Downstream");
        if !client_failure {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn api_key(generate: bool) -> ExitCode {
    let key = if generate {
        match tollgate::opaque::generate_api_key() {
            Some(k) => k,
            None => {
                eprintln!("tollgate: no randomness available");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            eprintln!("tollgate: cannot read the key from stdin");
            return ExitCode::FAILURE;
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if key.is_empty() {
        eprintln!("tollgate: the key is empty");
        return ExitCode::FAILURE;
    }
    let digest = tollgate::domain::hex(&tollgate::store::digest(&key));
    let mut out = std::io::stdout().lock();
    let written = if generate {
        writeln!(
            out,
            "api_key: {key}\nsha256: {digest}\n# the key is shown only now: give it to the consumer; keep only the sha256"
        )
    } else {
        writeln!(out, "{digest}")
    };
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn hash_secret(generate: bool) -> ExitCode {
    let secret = if generate {
        let mut bytes = [0u8; 24];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            eprintln!("tollgate: no randomness available");
            return ExitCode::FAILURE;
        }
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    } else {
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            eprintln!("tollgate: cannot read the secret from stdin");
            return ExitCode::FAILURE;
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if secret.is_empty() {
        eprintln!("tollgate: the secret is empty");
        return ExitCode::FAILURE;
    }
    match tollgate::domain::secret::hash_secret(&secret) {
        Ok(hash) => {
            let mut out = std::io::stdout().lock();
            let written = if generate {
                writeln!(
                    out,
                    "client_secret: {secret}\nclient_secret_hash: \"{hash}\""
                )
            } else {
                writeln!(out, "{hash}")
            };
            if written.is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tollgate dpop …`: needs no configuration.
fn dpop(action: DpopAction) -> ExitCode {
    use std::io::Write as _;
    use tollgate::dpop::client::{ClientKey, generate_key};
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| {
                ClientKey::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
            })
    };
    let result = match action {
        DpopAction::Key => generate_key()
            .map(|pem| print!("{pem}"))
            .map_err(|e| e.to_string()),
        DpopAction::Thumbprint { key } => read(&key).map(|k| println!("{}", k.jkt)),
        DpopAction::Proof {
            key,
            token,
            nonce,
            count,
            method,
            url,
        } => read(&key).and_then(|k| {
            let now = tollgate::domain::clock::unix_now();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for _ in 0..count {
                let proof = k
                    .proof(&method, &url, token.as_deref(), nonce.as_deref(), now)
                    .map_err(|e| e.to_string())?;
                writeln!(out, "{proof}").map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate dpop: {e}");
            ExitCode::FAILURE
        }
    }
}
