//! The HTML pages of the authorization-code flow (login, consent, error, signed out) and the
//! security headers they are served with. Plain functions from plain values to markup: no
//! JavaScript, no external resources, one inline stylesheet allowed by its CSP hash.
//!
//! Every value a caller passes is escaped here; callers pass raw text, never markup.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderName, HeaderValue};
use std::borrow::Cow;
use std::sync::LazyLock;

#[cfg(test)]
mod tests;

/// The stylesheet, inlined into every page exactly as it is in the file: the CSP hash is
/// computed over these bytes.
const STYLE: &str = include_str!("pages.css");

/// CSP without the style hash: what is sent if the hashed policy could not be built (it
/// always can: base64 is a valid header value). Fails closed: the page is unstyled.
const CSP_FALLBACK: &str = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The page CSP: nothing may load but the inline stylesheet, nothing may frame the page.
/// Deliberately no `form-action`: the consent form's answer is a redirect to the client's
/// `redirect_uri`, and browsers apply `form-action` to the redirect's target too.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = B64.encode(digest(&SHA256, STYLE.as_bytes()));
    HeaderValue::try_from(format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
    ))
    .unwrap_or(HeaderValue::from_static(CSP_FALLBACK))
});

/// The login form. Field names: `flow`, `csrf`, `username`, `password`.
pub struct LoginPage<'a> {
    /// Where the form is posted (a path on this gateway).
    pub action: &'a str,
    /// The flow id (hidden field `flow`).
    pub flow: &'a str,
    /// The CSRF token (hidden field `csrf`).
    pub csrf: &'a str,
    /// The client's display name.
    pub client_name: &'a str,
    /// Prefilled username (after a failed attempt); empty for a fresh form.
    pub username: &'a str,
    /// The message after a failed attempt, shown with `role="alert"`.
    pub error: Option<&'a str>,
}

/// The consent form. Field names: `flow`, `csrf`, `decision` (`allow` or `deny`).
pub struct ConsentPage<'a> {
    /// Where the form is posted (a path on this gateway).
    pub action: &'a str,
    /// The flow id (hidden field `flow`).
    pub flow: &'a str,
    /// The CSRF token (hidden field `csrf`).
    pub csrf: &'a str,
    /// The client's display name.
    pub client_name: &'a str,
    /// Who is signed in.
    pub username: &'a str,
    /// The scopes the client asks for, in display order.
    pub scopes: &'a [ScopeLine<'a>],
}

/// One requested scope as the consent page lists it.
pub struct ScopeLine<'a> {
    /// The scope itself (`orders:read`).
    pub name: &'a str,
    /// What it allows, in words; shown above the name when present.
    pub description: Option<&'a str>,
}

/// The login page.
pub fn login(p: &LoginPage) -> String {
    let error = p
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    // Focus where the user types next: the password after a failure with the name kept.
    let (user_focus, password_focus) = if p.username.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    let body = format!(
        "<h1>Sign in</h1>\n\
         <p class=\"lede\">to continue to <strong>{client}</strong></p>\n\
         {error}\
         <form method=\"post\" action=\"{action}\">\n\
         {hidden}\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" value=\"{username}\" \
         autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required{user_focus}>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required{password_focus}>\n\
         <button type=\"submit\">Sign in</button>\n\
         </form>\n",
        client = escape(p.client_name),
        action = escape(p.action),
        hidden = hidden_fields(p.flow, p.csrf),
        username = escape(p.username),
    );
    document(&format!("Sign in to {}", p.client_name), &body)
}

/// The consent page: the requested scopes and two submit buttons, allow and deny.
pub fn consent(p: &ConsentPage) -> String {
    let client = escape(p.client_name);
    let scopes = if p.scopes.is_empty() {
        format!(
            "<p class=\"lede\"><strong>{client}</strong> would like access to your account, \
             with no specific permissions.</p>\n"
        )
    } else {
        let items: String = p.scopes.iter().map(scope_item).collect();
        format!(
            "<p class=\"lede\"><strong>{client}</strong> would like to:</p>\n\
             <ul class=\"scopes\">\n{items}</ul>\n"
        )
    };
    let body = format!(
        "<h1>Allow access?</h1>\n\
         {scopes}\
         <p class=\"who\">Signed in as <strong>{username}</strong></p>\n\
         <form method=\"post\" action=\"{action}\">\n\
         {hidden}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\n\
         </form>\n",
        username = escape(p.username),
        action = escape(p.action),
        hidden = hidden_fields(p.flow, p.csrf),
    );
    document(&format!("Allow {} access", p.client_name), &body)
}

/// A page that explains what went wrong and offers nothing to click: for requests that
/// must not be redirected back (unknown client, unregistered redirect URI).
pub fn error(title: &str, message: &str) -> String {
    let body = format!("<h1>{}</h1>\n<p>{}</p>\n", escape(title), escape(message));
    document(title, &body)
}

/// The page after signing out.
pub fn signed_out() -> String {
    document(
        "Signed out",
        "<h1>Signed out</h1>\n\
         <p class=\"lede\">You have been signed out. You can close this window.</p>\n",
    )
}

/// The headers every page is served with: content type, no caching, and the security
/// headers (CSP, framing, referrer, sniffing).
pub fn headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (CONTENT_SECURITY_POLICY, CSP.clone()),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ]
}

/// Escape text for HTML element content and double- or single-quoted attribute values.
/// Borrows when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    const SPECIAL: [char; 5] = ['&', '<', '>', '"', '\''];
    let Some(first) = s.find(SPECIAL) else {
        return Cow::Borrowed(s);
    };
    let (clean, rest) = s.split_at(first);
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(clean);
    for c in rest.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The frame shared by every page; `title` is raw text, `body` is markup.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <title>{title} · tollgate</title>\n\
         <style>{STYLE}</style>\n\
         </head>\n\
         <body>\n\
         <main>\n\
         <p class=\"brand\">tollgate</p>\n\
         {body}\
         </main>\n\
         </body>\n\
         </html>\n",
        title = escape(title),
    )
}

fn hidden_fields(flow: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"flow\" value=\"{}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(flow),
        escape(csrf)
    )
}

fn scope_item(s: &ScopeLine) -> String {
    match s.description {
        Some(d) => format!(
            "<li><span>{}</span><code>{}</code></li>\n",
            escape(d),
            escape(s.name)
        ),
        None => format!("<li><code>{}</code></li>\n", escape(s.name)),
    }
}
