//! Page markup: escaping of every interpolated value, the CSP hash, no scripts or external
//! URLs, form fields, and the header set.

use super::*;

/// A value that breaks out of text and of both attribute quotings unless escaped; `tag`
/// tells the fields apart.
fn hostile(tag: &str) -> String {
    format!("<{tag}>\"'&</{tag}><script>alert(1)</script>")
}

fn escaped(tag: &str) -> String {
    format!("&lt;{tag}&gt;&quot;&#39;&amp;&lt;/{tag}&gt;&lt;script&gt;alert(1)&lt;/script&gt;")
}

fn assert_escaped(page: &str, tags: &[&str]) {
    for tag in tags {
        assert!(
            page.contains(&escaped(tag)),
            "{tag} not escaped as expected in:\n{page}"
        );
        assert!(!page.contains(&format!("<{tag}")), "raw {tag} in:\n{page}");
    }
    assert!(!page.contains("<script"), "script element in:\n{page}");
    assert!(!page.contains("\"'"), "raw quotes in:\n{page}");
}

fn plain_login(error: Option<&str>) -> String {
    login(&LoginPage {
        action: "/authorize/login",
        flow: "f1",
        csrf: "c1",
        client_name: "Orders app",
        username: "",
        error,
    })
}

fn plain_consent(scopes: &[ScopeLine]) -> String {
    consent(&ConsentPage {
        action: "/authorize/consent",
        flow: "f1",
        csrf: "c1",
        client_name: "Orders app",
        username: "alice",
        scopes,
    })
}

fn all_pages() -> Vec<String> {
    let scopes = [
        ScopeLine {
            name: "orders:read",
            description: Some("Read your orders"),
        },
        ScopeLine {
            name: "profile",
            description: None,
        },
    ];
    vec![
        plain_login(None),
        plain_login(Some("Wrong username or password.")),
        plain_consent(&scopes),
        plain_consent(&[]),
        error("Unknown client", "This application is not registered."),
        signed_out(),
    ]
}

#[test]
fn escape_replaces_the_five_specials_and_borrows_otherwise() {
    assert!(matches!(escape("alice@example.com"), Cow::Borrowed(_)));
    assert_eq!(escape(""), "");
    assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    // Already-escaped text is escaped again: callers pass raw text.
    assert_eq!(escape("&amp;"), "&amp;amp;");
    assert_eq!(escape("é<ü"), "é&lt;ü");
}

#[test]
fn login_escapes_every_value() {
    let (action, flow, csrf, client, user, err) = (
        hostile("x-action"),
        hostile("x-flow"),
        hostile("x-csrf"),
        hostile("x-client"),
        hostile("x-user"),
        hostile("x-error"),
    );
    let page = login(&LoginPage {
        action: &action,
        flow: &flow,
        csrf: &csrf,
        client_name: &client,
        username: &user,
        error: Some(&err),
    });
    assert_escaped(
        &page,
        &[
            "x-action", "x-flow", "x-csrf", "x-client", "x-user", "x-error",
        ],
    );
    // The client name also goes into the title.
    assert_eq!(page.matches(&escaped("x-client")).count(), 2);
}

#[test]
fn consent_escapes_every_value() {
    let (action, flow, csrf, client, user) = (
        hostile("x-action"),
        hostile("x-flow"),
        hostile("x-csrf"),
        hostile("x-client"),
        hostile("x-user"),
    );
    let (name1, desc1, name2) = (
        hostile("x-scope-one"),
        hostile("x-desc-one"),
        hostile("x-scope-two"),
    );
    let scopes = [
        ScopeLine {
            name: &name1,
            description: Some(&desc1),
        },
        ScopeLine {
            name: &name2,
            description: None,
        },
    ];
    let page = consent(&ConsentPage {
        action: &action,
        flow: &flow,
        csrf: &csrf,
        client_name: &client,
        username: &user,
        scopes: &scopes,
    });
    assert_escaped(
        &page,
        &[
            "x-action",
            "x-flow",
            "x-csrf",
            "x-client",
            "x-user",
            "x-scope-one",
            "x-desc-one",
            "x-scope-two",
        ],
    );
    let empty = consent(&ConsentPage {
        action: &action,
        flow: &flow,
        csrf: &csrf,
        client_name: &client,
        username: &user,
        scopes: &[],
    });
    assert_escaped(&empty, &["x-client", "x-user"]);
}

#[test]
fn error_page_escapes_title_and_message() {
    let page = error(&hostile("x-title"), &hostile("x-message"));
    assert_escaped(&page, &["x-title", "x-message"]);
}

#[test]
fn csp_hash_matches_the_style_element_exactly() {
    let csp = headers()
        .into_iter()
        .find(|(name, _)| name == CONTENT_SECURITY_POLICY)
        .map(|(_, v)| v.to_str().unwrap().to_string())
        .unwrap();
    for page in all_pages() {
        let start = page.find("<style>").unwrap() + "<style>".len();
        let end = page.find("</style>").unwrap();
        let content = &page[start..end];
        assert_eq!(content, STYLE);
        assert_eq!(page.matches("<style").count(), 1);
        let hash = B64.encode(digest(&SHA256, content.as_bytes()));
        assert!(
            csp.contains(&format!("style-src 'sha256-{hash}'")),
            "{csp} does not allow the style (sha256-{hash})"
        );
    }
}

#[test]
fn pages_have_no_script_and_no_external_url() {
    for page in all_pages() {
        let lower = page.to_ascii_lowercase();
        for banned in [
            "<script",
            "http://",
            "https://",
            "javascript:",
            "url(",
            "@import",
            " src=",
            " href=",
            " onload",
            " onclick",
            " onsubmit",
        ] {
            assert!(!lower.contains(banned), "{banned} in:\n{page}");
        }
        assert!(page.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(
            page.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            )
        );
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(page.contains("<p class=\"brand\">tollgate</p>"));
    }
}

#[test]
fn login_form_has_the_fields_the_handler_reads() {
    let page = plain_login(None);
    assert!(page.contains("<form method=\"post\" action=\"/authorize/login\">"));
    assert!(page.contains("<input type=\"hidden\" name=\"flow\" value=\"f1\">"));
    assert!(page.contains("<input type=\"hidden\" name=\"csrf\" value=\"c1\">"));
    assert!(page.contains("<label for=\"username\">"));
    assert!(page.contains("<input id=\"username\" name=\"username\" type=\"text\" value=\"\""));
    assert!(page.contains("autocomplete=\"username\""));
    assert!(page.contains("<label for=\"password\">"));
    assert!(page.contains("<input id=\"password\" name=\"password\" type=\"password\""));
    assert!(page.contains("autocomplete=\"current-password\""));
    assert!(page.contains("<button type=\"submit\">Sign in</button>"));
    assert!(!page.contains("role=\"alert\""));
    // A fresh form focuses the username; the password is never prefilled.
    assert!(page.contains("required autofocus>\n<label for=\"password\">"));
    assert_eq!(page.matches("value=").count(), 3);

    let failed = login(&LoginPage {
        action: "/authorize/login",
        flow: "f1",
        csrf: "c1",
        client_name: "Orders app",
        username: "alice",
        error: Some("Wrong username or password."),
    });
    assert!(failed.contains("<p class=\"error\" role=\"alert\">Wrong username or password.</p>"));
    assert!(failed.contains("value=\"alice\""));
    assert!(failed.contains("autocomplete=\"current-password\" required autofocus>"));
}

#[test]
fn consent_form_has_flow_csrf_and_two_decisions() {
    let scopes = [
        ScopeLine {
            name: "orders:read",
            description: Some("Read your orders"),
        },
        ScopeLine {
            name: "profile",
            description: None,
        },
    ];
    let page = plain_consent(&scopes);
    assert!(page.contains("<form method=\"post\" action=\"/authorize/consent\">"));
    assert!(page.contains("<input type=\"hidden\" name=\"flow\" value=\"f1\">"));
    assert!(page.contains("<input type=\"hidden\" name=\"csrf\" value=\"c1\">"));
    assert!(page.contains("<button type=\"submit\" name=\"decision\" value=\"allow\">"));
    assert!(page.contains("<button type=\"submit\" name=\"decision\" value=\"deny\""));
    assert!(page.contains("<li><span>Read your orders</span><code>orders:read</code></li>"));
    assert!(page.contains("<li><code>profile</code></li>"));
    assert!(page.contains("Signed in as <strong>alice</strong>"));
    assert!(!plain_consent(&[]).contains("<ul"));
}

#[test]
fn headers_are_complete() {
    let headers = headers();
    let get = |name: HeaderName| {
        let values: Vec<_> = headers.iter().filter(|(n, _)| *n == name).collect();
        assert_eq!(values.len(), 1, "{name} sent {} times", values.len());
        values[0].1.to_str().unwrap().to_string()
    };
    assert_eq!(headers.len(), 6);
    assert_eq!(get(CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(get(CACHE_CONTROL), "no-store");
    assert_eq!(get(X_FRAME_OPTIONS), "DENY");
    assert_eq!(get(REFERRER_POLICY), "no-referrer");
    assert_eq!(get(X_CONTENT_TYPE_OPTIONS), "nosniff");

    let csp = get(CONTENT_SECURITY_POLICY);
    let directives: Vec<(&str, &str)> = csp
        .split(';')
        .map(|d| d.trim().split_once(' ').unwrap())
        .collect();
    let names: Vec<&str> = directives.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["default-src", "style-src", "base-uri", "frame-ancestors"]
    );
    let value = |name: &str| directives.iter().find(|(n, _)| *n == name).unwrap().1;
    assert_eq!(value("default-src"), "'none'");
    assert_eq!(value("base-uri"), "'none'");
    assert_eq!(value("frame-ancestors"), "'none'");
    let style = value("style-src");
    let hash = style
        .strip_prefix("'sha256-")
        .and_then(|h| h.strip_suffix('\''))
        .unwrap();
    assert_eq!(B64.decode(hash).unwrap().len(), 32);
    // No form-action: it would also apply to the redirect back to the client.
    assert!(!csp.contains("form-action"));
    assert!(!csp.contains("unsafe"));
}

#[test]
fn style_cannot_close_its_element_or_fetch() {
    let lower = STYLE.to_ascii_lowercase();
    assert!(!lower.contains("</style"));
    assert!(!lower.contains("url("));
    assert!(!lower.contains("@import"));
}
