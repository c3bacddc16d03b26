//! What belongs to one hop and is never forwarded (RFC 9110 §7.6.1).
//!
//! [`Auth`](crate::Auth) owns the boundary between the caller's connection
//! and the route's, so it is where each connection's own headers stop.
//!
//! Toward upstream it drops `Connection` and every header `Connection` names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding` and `Upgrade`
//! (the connection's framing and options: the transport negotiates its own),
//! `Proxy-Authorization` and `Proxy-Authenticate` (credentials for a proxy
//! in front of the gateway, not for the route) and `Cookie` (the caller's
//! session with whatever sits in front of the gateway; neither API uses
//! cookies, so a cookie upstream is only a leak).
//!
//! From upstream it drops `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`,
//! `Proxy-Authenticate`, `Proxy-Authentication-Info` and `Set-Cookie`.
//! `Set-Cookie` is not hop-by-hop in the RFC's sense, but the cookie is the
//! upstream's state for the gateway's connection (a CDN's bot-management
//! cookie, say): passed on, it would land on every caller under the
//! gateway's name and, since `Cookie` is dropped on the way up, never come
//! back. Nothing of the API is lost: both APIs are cookie-free.
//!
//! The version of the request is the transport's to choose as well; see
//! [`Auth`](crate::Auth).
//!
//! # Cost
//!
//! One pass over the names present (a length test each, comparisons only
//! for a name as long as a hop-by-hop one), then a
//! removal only for a hop-by-hop header that is there: a message without
//! any costs no hashing at all. A `Connection` that names only the usual
//! options (`keep-alive`, `close`, `upgrade`, `te`: what Node's and Python's
//! HTTP/1.1 clients send) costs one removal; one that names other headers
//! also costs a small vector of its values and a parse per name.

use std::sync::LazyLock;

use claude_tower_core::headers::{API_KEY, AUTHORIZATION, X_API_KEY};
use http::header::{
    CONNECTION, COOKIE, Entry, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// `keep-alive`: a connection option of HTTP/1.0 and early 1.1.
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `proxy-connection`: a non-standard `Connection` some clients still send.
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `proxy-authentication-info`: a proxy's answer to `Proxy-Authorization`.
pub const PROXY_AUTHENTICATION_INFO: HeaderName =
    HeaderName::from_static("proxy-authentication-info");

/// The request's hop-by-hop names, then `$more`: one list for
/// [`REQUEST_HOP_HEADERS`] and the longer one Auth strips in one pass.
macro_rules! request_hop_headers {
    ($($more:expr),*) => {
        [
            KEEP_ALIVE,
            PROXY_CONNECTION,
            TE,
            TRANSFER_ENCODING,
            UPGRADE,
            PROXY_AUTHORIZATION,
            PROXY_AUTHENTICATE,
            COOKIE,
            $($more),*
        ]
    };
}

/// Dropped from every request before it goes upstream (besides `Connection`
/// and what it names).
pub const REQUEST_HOP_HEADERS: [HeaderName; 8] = request_hop_headers!();

/// What [`Auth`](crate::Auth) drops from a request on its way to the route,
/// found in one pass: [`REQUEST_HOP_HEADERS`], `Host` (it names the gateway,
/// not the route), then the caller's credentials
/// ([`CREDENTIAL_HEADERS`](claude_tower_core::headers::CREDENTIAL_HEADERS)),
/// which a passthrough route keeps.
const REQUEST_DROPPED: [HeaderName; 12] =
    request_hop_headers!(HOST, X_API_KEY, API_KEY, AUTHORIZATION);

/// [`REQUEST_DROPPED`] up to the credentials: the hop-by-hop headers and
/// `Host` (checked by a test).
const REQUEST_DROPPED_KEEPING_CREDENTIALS: usize = 9;

/// Dropped from every upstream response (besides `Connection` and what it
/// names).
pub const RESPONSE_HOP_HEADERS: [HeaderName; 7] = [
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHENTICATION_INFO,
    SET_COOKIE,
];

/// Bit `n` set: `Connection` or a name in `names` is `n` bytes long (every
/// hop-by-hop name is shorter than 64 bytes).
fn length_mask(names: &[HeaderName]) -> u64 {
    names
        .iter()
        .chain([&CONNECTION])
        .fold(0, |mask, name| mask | 1 << name.as_str().len())
}

/// The lengths of `Connection` and [`REQUEST_DROPPED`], credentials kept
/// and dropped.
static REQUEST_DROPPED_LENGTHS: LazyLock<[u64; 2]> = LazyLock::new(|| {
    [
        length_mask(&REQUEST_DROPPED[..REQUEST_DROPPED_KEEPING_CREDENTIALS]),
        length_mask(&REQUEST_DROPPED),
    ]
});

/// The lengths of `Connection` and [`RESPONSE_HOP_HEADERS`].
static RESPONSE_HOP_LENGTHS: LazyLock<u64> = LazyLock::new(|| length_mask(&RESPONSE_HOP_HEADERS));

/// Drops what a request about to go to the route must not carry: its
/// hop-by-hop headers, `Host` and, unless `keep_credentials`, the caller's
/// credentials. One pass finds them; a removal is paid only for a header
/// that is there (a `remove` of an absent name still hashes and probes).
#[inline]
pub(crate) fn strip_request_for_route(headers: &mut HeaderMap, keep_credentials: bool) {
    let [kept, dropped] = *REQUEST_DROPPED_LENGTHS;
    if keep_credentials {
        strip(
            headers,
            &REQUEST_DROPPED[..REQUEST_DROPPED_KEEPING_CREDENTIALS],
            kept,
        );
    } else {
        strip(headers, &REQUEST_DROPPED, dropped);
    }
}

/// Drops the hop-by-hop headers of a response from upstream.
#[inline]
pub(crate) fn strip_response(headers: &mut HeaderMap) {
    strip(headers, &RESPONSE_HOP_HEADERS, *RESPONSE_HOP_LENGTHS);
}

/// `lengths`: the names' lengths as a bit set, `Connection`'s included.
fn strip(headers: &mut HeaderMap, fixed: &[HeaderName], lengths: u64) {
    // One pass over the names present, usually none of them hop-by-hop: a
    // removal is a hash and a probe, so only what is there is removed. A
    // name whose length no hop-by-hop name has (most of them: `x-api-key`,
    // `content-type`, `anthropic-version`...) costs a length and a bit
    // test instead of a comparison with each.
    let mut present = 0u32;
    let mut connection = false;
    for name in headers.keys() {
        let len = name.as_str().len();
        if len >= 64 || lengths & (1 << len) == 0 {
            continue;
        }
        if *name == CONNECTION {
            connection = true;
        } else if let Some(i) = fixed.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    // NOTE: `Connection` first, so that a name it lists is removed even when
    // it is a credential Auth replaces later.
    if connection {
        remove_connection(headers);
    }
    for (i, name) in fixed.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Removes `Connection` and every header it names. Only a value naming
/// something beyond the usual options (`keep-alive`, `close`, ...) costs
/// an allocation.
fn remove_connection(headers: &mut HeaderMap) {
    let names_more = headers
        .get_all(CONNECTION)
        .iter()
        .any(|value| connection_options(value).next().is_some());
    if !names_more {
        headers.remove(CONNECTION);
        return;
    }
    let Entry::Occupied(connection) = headers.entry(CONNECTION) else {
        return;
    };
    let (_, values) = connection.remove_entry_mult();
    let values: Vec<HeaderValue> = values.collect();
    for value in &values {
        for name in connection_options(value) {
            headers.remove(name);
        }
    }
}

/// The header names a `Connection` value lists, except the options that
/// name no header (`close`) or one on the fixed lists anyway. Tokens that are
/// not valid header names are skipped: they cannot name a header we hold.
fn connection_options(value: &HeaderValue) -> impl Iterator<Item = HeaderName> + '_ {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| {
            !token.is_empty()
                && ![&b"close"[..], b"keep-alive", b"upgrade", b"te"]
                    .iter()
                    .any(|known| token.eq_ignore_ascii_case(known))
        })
        .filter_map(|token| HeaderName::from_bytes(token).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn request_drops_the_fixed_list_and_what_connection_names() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Gateway-Trace"),
            ("connection", "x-second , ,close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
            ("proxy-authenticate", "Basic"),
            ("cookie", "session=abc"),
            ("x-gateway-trace", "1"),
            ("x-second", "2"),
            ("anthropic-beta", "context-management-2025-06-27"),
            ("content-type", "application/json"),
        ]);
        strip_request_for_route(&mut headers, true);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["anthropic-beta", "content-type"]);
    }

    #[test]
    fn for_the_route_host_and_credentials_go_too_unless_kept() {
        assert_eq!(
            REQUEST_DROPPED[..REQUEST_HOP_HEADERS.len()],
            REQUEST_HOP_HEADERS
        );
        assert_eq!(REQUEST_DROPPED[REQUEST_HOP_HEADERS.len()], HOST);
        assert_eq!(
            REQUEST_DROPPED[REQUEST_DROPPED_KEEPING_CREDENTIALS..],
            claude_tower_core::headers::CREDENTIAL_HEADERS
        );
        let before = map(&[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("host", "gateway.example"),
            ("x-api-key", "caller-key"),
            ("api-key", "caller-key"),
            ("authorization", "Bearer caller-token"),
            ("cookie", "session=abc"),
            ("anthropic-beta", "context-management-2025-06-27"),
        ]);
        let mut headers = before.clone();
        strip_request_for_route(&mut headers, false);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["anthropic-beta"]);
        let mut headers = before;
        strip_request_for_route(&mut headers, true);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["anthropic-beta", "api-key", "authorization", "x-api-key"]
        );
        // A credential `Connection` names goes even when credentials stay.
        let mut headers = map(&[("connection", "x-api-key"), ("x-api-key", "k")]);
        strip_request_for_route(&mut headers, true);
        assert!(headers.is_empty());
    }

    #[test]
    fn response_drops_hop_headers_and_set_cookie_only() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authentication-info", "x"),
            ("set-cookie", "__cf_bm=abc; path=/"),
            ("x-hop", "1"),
            ("request-id", "req_1"),
            ("retry-after", "2"),
            ("content-type", "application/json"),
        ]);
        strip_response(&mut headers);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "request-id", "retry-after"]);
    }

    #[test]
    fn the_usual_keep_alive_goes_with_its_connection() {
        let mut headers = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("x-keep", "1"),
        ]);
        strip_request_for_route(&mut headers, true);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-keep"], "1");
        // Nothing hop-by-hop: nothing changes.
        let before = map(&[("content-type", "application/json"), ("x-api-key", "k")]);
        let mut after = before.clone();
        strip_request_for_route(&mut after, true);
        strip_response(&mut after);
        assert_eq!(after, before);
    }

    #[test]
    fn odd_connection_values_remove_nothing_else() {
        let mut headers = map(&[("connection", ",,, \t,bad name,x/y"), ("x-keep", "1")]);
        strip_request_for_route(&mut headers, true);
        assert!(headers.get("connection").is_none());
        assert_eq!(headers["x-keep"], "1");
    }
}
