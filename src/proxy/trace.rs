//! Following a request across systems: its id (`X-Request-Id`: the client's when it is a
//! sane one, else one made here) and its W3C trace context (`traceparent`: passed on as it
//! came, or started here when the configuration asks). Both go upstream; the id also comes
//! back in the response and is in the access log.

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use std::cell::Cell;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The longest request id taken from a client.
const MAX_ID: usize = 128;

/// The request's id: the client's `X-Request-Id` when there is exactly one and it is 1 to
/// 128 characters of `A-Z a-z 0-9 - _ . : + / =`, else a new one.
pub fn request_id(req: &RequestHeader) -> HeaderValue {
    let mut given = req.headers.get_all(&X_REQUEST_ID).iter();
    match (given.next(), given.next()) {
        (Some(v), None) if is_valid_id(v.as_bytes()) => v.clone(),
        _ => new_id(),
    }
}

fn is_valid_id(v: &[u8]) -> bool {
    (1..=MAX_ID).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

/// 32 lowercase hex digits (128 random bits).
fn new_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    hex_into(&mut buf[..16], random());
    hex_into(&mut buf[16..], random());
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Whether the request carries a `traceparent` (valid or not: it is passed on as it came,
/// for the upstream's tracer to judge).
pub fn has_traceparent(req: &RequestHeader) -> bool {
    req.headers.contains_key(&TRACEPARENT)
}

/// A new trace (W3C Trace Context §3.2): version 00, a random trace id and parent id,
/// sampled.
pub fn new_traceparent() -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex_into(&mut buf[3..19], random() | 1);
    hex_into(&mut buf[19..35], random());
    hex_into(&mut buf[36..52], random() | 1);
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn hex_into(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

thread_local! {
    /// splitmix64, seeded once per thread from the system's random source: ids need to be
    /// unique and unguessable enough not to collide, not secret.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // No system randomness: the time still keeps threads and restarts apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return (t as u64) ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

fn random() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for v in id {
            r.append_header("x-request-id", *v).unwrap();
        }
        r
    }

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id(&req(&["abc-123_x.y:z"])), "abc-123_x.y:z");
        for bad in [
            vec!["has space"],
            vec!["a\"b"],
            vec![&"x".repeat(129)],
            vec!["a", "b"],
        ] {
            let id = request_id(&req(&bad));
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        assert_ne!(request_id(&req(&[])), request_id(&req(&[])));
    }

    #[test]
    fn new_traces_are_well_formed() {
        let t = new_traceparent();
        let s = t.to_str().unwrap();
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(parts.len(), 4, "{s}");
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16));
        assert_ne!(new_traceparent(), t);
    }
}
