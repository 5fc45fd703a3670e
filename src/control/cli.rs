//! `tollgate admin …`: the admin API's common calls from the command line, so an operator
//! needs no curl. The API's address comes from `admin.listen` of the config (or `--url`),
//! the key from `TOLLGATE_ADMIN_KEY` or `--key-file` (never from an argument, which other
//! users of the machine could read in the process list).

use crate::domain::hex;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct AdminArgs {
    /// The admin API's base URL (default: http://<admin.listen> of the config).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// A file holding the admin key (default: the TOLLGATE_ADMIN_KEY environment variable).
    #[arg(long, global = true)]
    pub key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Subcommand)]
pub enum AdminAction {
    /// Make a new admin key: prints it (shown only now) and the `admin.keys` entry to add.
    Key {
        /// The name the audit log gives it.
        #[arg(long, default_value = "operator")]
        name: String,
    },
    /// Create a credential; prints it with its secret (shown only now).
    CreateCredential {
        /// Its client id (default: generated).
        #[arg(long)]
        client_id: Option<String>,
        /// An API it may call (repeat for several).
        #[arg(long)]
        acl: Vec<String>,
        /// A product whose APIs it may call (repeat for several).
        #[arg(long)]
        product: Vec<String>,
        /// A role: a scope its tokens may carry (repeat for several).
        #[arg(long)]
        role: Vec<String>,
        /// Or: the whole credential as a JSON file (the upstreams file's credential fields).
        #[arg(long, conflicts_with_all = ["client_id", "acl", "product", "role"])]
        json: Option<PathBuf>,
    },
    /// Show a credential.
    Show {
        client_id: String,
    },
    /// Give a credential a new secret; the current one keeps working for the overlap.
    RotateSecret {
        client_id: String,
        /// How long the current secret keeps working (e.g. 1h, 0s).
        #[arg(long, default_value = "1h")]
        overlap: String,
    },
    /// Refuse a credential's tokens and keys until it is enabled again.
    Disable {
        client_id: String,
    },
    Enable {
        client_id: String,
    },
    /// Delete a credential: its tokens are revoked on every node.
    Delete {
        client_id: String,
    },
    /// Give a credential a new API key; prints the key (shown only now).
    AddApiKey {
        client_id: String,
        #[arg(long)]
        name: String,
    },
    /// An initial access token for dynamic client registration (RFC 7591).
    InitialAccessToken {
        #[arg(long)]
        acl: Vec<String>,
        #[arg(long)]
        product: Vec<String>,
        #[arg(long)]
        role: Vec<String>,
        /// The user pool of clients that sign users in (the authorization code flow).
        #[arg(long)]
        user_pool: Option<String>,
        #[arg(long, default_value = "1d")]
        expires_in: String,
        /// Usable for many registrations (default: one).
        #[arg(long)]
        reusable: bool,
    },
}

/// A new admin key and its config entry.
fn new_key(name: &str) -> Result<String, String> {
    let key = crate::provision::credentials::random_token("tga_").map_err(|e| e.to_string())?;
    let digest = hex(&crate::store::digest(&key));
    Ok(format!(
        "admin_key: {key}\n# shown only now; add to admin.keys in tollgate.yaml (restart or upgrade to apply):\n    - name: {name}\n      sha256: {digest}\n      scopes: [read, credentials:write, subscriptions:write, registration:write]\n"
    ))
}

fn admin_key(file: Option<&Path>) -> Result<String, String> {
    let key = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the key file {}: {e}", f.display()))?,
        None => std::env::var("TOLLGATE_ADMIN_KEY")
            .map_err(|_| "set TOLLGATE_ADMIN_KEY or pass --key-file".to_string())?,
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        return Err("the admin key is empty".into());
    }
    Ok(key)
}

fn base_url(args: &AdminArgs, conf: &Path) -> Result<String, String> {
    if let Some(u) = &args.url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let config = crate::config::load(conf).map_err(|e| e.to_string())?;
    let admin = config
        .admin
        .ok_or_else(|| format!("{} has no `admin:` section (or pass --url)", conf.display()))?;
    let scheme = if admin.tls.is_some() { "https" } else { "http" };
    Ok(format!("{scheme}://{}", admin.listen))
}

/// The call an action makes: method, path, body.
fn call(action: AdminAction) -> Result<(reqwest::Method, String, Option<Value>), String> {
    use reqwest::Method;
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Ok(match action {
        AdminAction::Key { .. } => return Err("no call".into()),
        AdminAction::CreateCredential {
            json: Some(file), ..
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
            (Method::POST, "/v1/credentials".into(), Some(body))
        }
        AdminAction::CreateCredential {
            client_id,
            acl,
            product,
            role,
            json: None,
        } => {
            let mut m = Map::new();
            if let Some(id) = client_id {
                m.insert("client_id".into(), json!(id));
            }
            m.insert("acl".into(), json!(acl));
            m.insert("products".into(), json!(product));
            m.insert("roles".into(), json!(role));
            (
                Method::POST,
                "/v1/credentials".into(),
                Some(Value::Object(m)),
            )
        }
        AdminAction::Show { client_id } => (
            Method::GET,
            format!("/v1/credentials/{}", enc(&client_id)),
            None,
        ),
        AdminAction::RotateSecret { client_id, overlap } => (
            Method::POST,
            format!("/v1/credentials/{}/secret", enc(&client_id)),
            Some(json!({ "overlap": overlap })),
        ),
        AdminAction::Disable { client_id } => (
            Method::POST,
            format!("/v1/credentials/{}/disable", enc(&client_id)),
            None,
        ),
        AdminAction::Enable { client_id } => (
            Method::POST,
            format!("/v1/credentials/{}/enable", enc(&client_id)),
            None,
        ),
        AdminAction::Delete { client_id } => (
            Method::DELETE,
            format!("/v1/credentials/{}", enc(&client_id)),
            None,
        ),
        AdminAction::AddApiKey { client_id, name } => (
            Method::POST,
            format!("/v1/credentials/{}/api-keys", enc(&client_id)),
            Some(json!({ "name": name })),
        ),
        AdminAction::InitialAccessToken {
            acl,
            product,
            role,
            user_pool,
            expires_in,
            reusable,
        } => {
            let mut body = json!({
                "acl": acl, "products": product, "roles": role,
                "expires_in": expires_in, "reusable": reusable,
            });
            if let (Some(p), Value::Object(m)) = (user_pool, &mut body) {
                m.insert("user_pool".into(), json!(p));
            }
            (Method::POST, "/v1/initial-access-tokens".into(), Some(body))
        }
    })
}

async fn send(
    base: &str,
    key: &str,
    (method, path, body): (reqwest::Method, String, Option<Value>),
) -> Result<(u16, String), String> {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach the admin API at {base}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, text))
}

/// Run `tollgate admin …`; `conf` is the gateway file named by `-c`.
pub fn run(args: AdminArgs, conf: &Path) -> ExitCode {
    let fail = |e: String| {
        eprintln!("tollgate admin: {e}");
        ExitCode::FAILURE
    };
    // A closed pipe (`| head`) ends the output, never the process with a panic.
    let out = |text: &str| {
        use std::io::Write as _;
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    };
    if let AdminAction::Key { name } = &args.action {
        return match new_key(name) {
            Ok(text) => {
                out(&text);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let base = match base_url(&args, conf) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let key = match admin_key(args.key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let request = match call(args.action) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    match rt.block_on(send(&base, &key, request)) {
        Ok((status, text)) if (200..300).contains(&status) => {
            if !text.is_empty() {
                out(&format!("{text}\n"));
            }
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            let why = serde_json::from_str::<Value>(&text)
                .ok()
                .map(|v| {
                    let mut s = v["error_description"].as_str().unwrap_or(&text).to_string();
                    for e in v["errors"].as_array().into_iter().flatten() {
                        s.push_str(&format!(
                            "\n  {}: {}",
                            e["path"].as_str().unwrap_or_default(),
                            e["message"].as_str().unwrap_or_default()
                        ));
                    }
                    s
                })
                .unwrap_or(text);
            fail(format!("{status}: {why}"))
        }
        Err(e) => fail(e),
    }
}
