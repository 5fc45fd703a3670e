//! A credential body as the admin API receives it: checked against a small catalog, it
//! never panics, and a refusal names at least one error, each with a message.
//!
//! Input: the request body (JSON, or anything).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const GATEWAY: &str = "upstreams_file: apis.yaml\n";
const UPSTREAMS: &str = r#"
apis:
  - { name: orders, prefix: /orders, upstream: { servers: ["127.0.0.1:1"] }, auth: [jwt, api_key] }
  - { name: open, prefix: /open, upstream: { servers: ["127.0.0.1:1"] }, auth: none }
products:
  - { name: all, apis: [orders] }
user_pools:
  - { name: staff, users: [] }
credentials:
  - client_id: file-client
    client_secret_hash: "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$0cS9Js2fVp3YdtNR1u9GJA"
    acl: [orders]
"#;

fn refs() -> Option<&'static tollgate::config::ProvisionRefs> {
    static REFS: OnceLock<Option<tollgate::config::ProvisionRefs>> = OnceLock::new();
    REFS.get_or_init(|| {
        let path = Path::new("/nonexistent/tollgate/tollgate.yaml");
        tollgate::config::parse(path, GATEWAY, UPSTREAMS)
            .ok()
            .map(|c| tollgate::config::ProvisionRefs::of(&c))
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(refs) = refs() else {
        panic!("the fuzz target's own catalog is invalid");
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Err(errors) = refs.check_credential(&doc, "request body", "") {
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| !e.message.is_empty()));
    }
});
