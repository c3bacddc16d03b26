//! Finding the credential in a request, and client keys.

use std::fmt;

use aws_lc_rs::digest;
use claude_tower_core::headers::{API_KEY, X_API_KEY};
use claude_tower_core::{AuthMethod, Caller};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use subtle::{Choice, ConstantTimeEq};

use crate::rejection::RejectionKind;

/// The longest credential read. Entra tokens with a full `groups` claim stay
/// well under 16 KiB (past 200 groups Entra sends an overage claim instead);
/// anything longer is refused before it is decoded.
pub(crate) const MAX_CREDENTIAL_LEN: usize = 32 * 1024;

/// A credential taken from the request, borrowed from its headers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// Looks like a JWT: three base64url segments.
    Token(&'a str),
    /// Anything else: checked against the client keys.
    Key(&'a str),
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Key(_) => f.write_str("Key(<redacted>)"),
        }
    }
}

/// The request's credential: `Authorization: Bearer` first, then
/// `x-api-key`, then `api-key`. Claude Code's `apiKeyHelper` value arrives
/// in both `Authorization` and `x-api-key`; they are the same value, and the
/// bearer one is read.
pub(crate) fn extract(headers: &HeaderMap) -> Result<Credential<'_>, RejectionKind> {
    let mut bad_authorization = false;
    if let Some(value) = headers.get(AUTHORIZATION) {
        match header_str(value).and_then(bearer) {
            Some(v) => return classify(v),
            // Another scheme (Basic...) or junk: a key header may still serve.
            None => bad_authorization = true,
        }
    }
    // NOTE: by `HeaderName`: a `&str` name is parsed again on every lookup.
    for name in [&X_API_KEY, &API_KEY] {
        if let Some(value) = headers.get(name) {
            let v = header_str(value).ok_or(RejectionKind::MalformedHeader)?;
            return classify(v.trim());
        }
    }
    Err(if bad_authorization {
        RejectionKind::MalformedHeader
    } else {
        RejectionKind::Missing
    })
}

/// The header as text. `HeaderValue::to_str` walks the bytes one by one;
/// UTF-8 validation has an ASCII fast path, and matters for 2 KiB tokens on
/// every request. Control characters cannot be in a `HeaderValue`; other
/// non-ASCII text simply matches no key and decodes as no token.
fn header_str(value: &http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn classify(value: &str) -> Result<Credential<'_>, RejectionKind> {
    if value.is_empty() {
        return Err(RejectionKind::Missing);
    }
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(RejectionKind::TooLarge);
    }
    if is_jwt_shaped(value) {
        Ok(Credential::Token(value))
    } else {
        Ok(Credential::Key(value))
    }
}

/// Two dots, and a first segment opening a JSON object (`eyJ` is `{"`
/// encoded). Client keys (`sk-...`, random strings) never look like that.
/// The characters themselves are checked when the segments are decoded;
/// this runs on every request, so it stays one vectorised pass.
fn is_jwt_shaped(value: &str) -> bool {
    let mut dots = memchr::memchr_iter(b'.', value.as_bytes());
    value.starts_with("eyJ")
        && dots.next().is_some()
        && dots.next().is_some()
        && dots.next().is_none()
}

pub(crate) type KeyHash = [u8; 32];

pub(crate) fn sha256(bytes: &[u8]) -> KeyHash {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A hash as four words: `subtle` compares a `u64` in one constant-time
/// step, a `[u8]` one byte (and one optimisation barrier) at a time.
type Words = [u64; 4];

fn words(hash: &KeyHash) -> Words {
    let mut out = [0; 4];
    for (word, chunk) in out.iter_mut().zip(hash.chunks_exact(8)) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    out
}

/// Named client keys, held as SHA-256 hashes only.
#[derive(Clone, Default)]
pub(crate) struct ClientKeys {
    keys: Vec<(Words, Caller)>,
}

impl ClientKeys {
    pub(crate) fn insert(&mut self, name: &str, key: &str) {
        let caller = Caller::new(name, AuthMethod::ClientKey);
        self.keys.push((words(&sha256(key.as_bytes())), caller));
    }

    /// The caller whose key hashes to `hash`. Every stored hash is compared, in
    /// constant time, so the time taken says nothing about which key (or
    /// how much of one) matched.
    pub(crate) fn check_hash(&self, hash: &KeyHash) -> Option<Caller> {
        let presented = words(hash);
        let mut found = None;
        for (stored, caller) in &self.keys {
            let equal = stored
                .iter()
                .zip(&presented)
                .fold(Choice::from(1), |eq, (a, b)| eq & a.ct_eq(b));
            if bool::from(equal) {
                found = Some(caller);
            }
        }
        found.cloned()
    }
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(_, c)| c.id()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

    #[test]
    fn finds_the_credential_in_each_header() {
        let h = headers(&[("authorization", &format!("Bearer {JWT}"))]);
        assert_eq!(extract(&h), Ok(Credential::Token(JWT)));
        let h = headers(&[("authorization", "bearer  sk-1 ")]);
        assert_eq!(extract(&h), Ok(Credential::Key("sk-1")));
        let h = headers(&[("x-api-key", "sk-2")]);
        assert_eq!(extract(&h), Ok(Credential::Key("sk-2")));
        let h = headers(&[("api-key", JWT)]);
        assert_eq!(extract(&h), Ok(Credential::Token(JWT)));
        // Claude Code's apiKeyHelper: the same value twice.
        let h = headers(&[("authorization", "Bearer sk-3"), ("x-api-key", "sk-3")]);
        assert_eq!(extract(&h), Ok(Credential::Key("sk-3")));
        // A Basic header does not hide an x-api-key.
        let h = headers(&[("authorization", "Basic Zm9v"), ("x-api-key", "sk-4")]);
        assert_eq!(extract(&h), Ok(Credential::Key("sk-4")));
    }

    #[test]
    fn refuses_missing_and_malformed() {
        assert_eq!(extract(&HeaderMap::new()), Err(RejectionKind::Missing));
        let h = headers(&[("authorization", "Basic Zm9v")]);
        assert_eq!(extract(&h), Err(RejectionKind::MalformedHeader));
        let h = headers(&[("authorization", "Bearer")]);
        assert_eq!(extract(&h), Err(RejectionKind::MalformedHeader));
        let h = headers(&[("authorization", "Bearer   ")]);
        assert_eq!(extract(&h), Err(RejectionKind::MalformedHeader));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(extract(&h), Err(RejectionKind::MalformedHeader));
        let big = "a".repeat(MAX_CREDENTIAL_LEN + 1);
        let h = headers(&[("x-api-key", &big)]);
        assert_eq!(extract(&h), Err(RejectionKind::TooLarge));
    }

    #[test]
    fn jwt_shape() {
        assert!(is_jwt_shaped(JWT));
        assert!(!is_jwt_shaped("sk-ant-api03-abc"));
        assert!(!is_jwt_shaped("eyJ.a.b.c"));
        assert!(!is_jwt_shaped("eyJa.b"));
    }

    #[test]
    fn client_keys_match_by_hash() {
        let mut keys = ClientKeys::default();
        keys.insert("alice", "k-alice");
        keys.insert("bob", "k-bob");
        assert_eq!(keys.check_hash(&sha256(b"k-bob")).unwrap().id(), "bob");
        assert_eq!(
            keys.check_hash(&sha256(b"k-alice")).unwrap().method(),
            AuthMethod::ClientKey
        );
        assert!(keys.check_hash(&sha256(b"k-carol")).is_none());
        assert!(keys.check_hash(&sha256(b"")).is_none());
        assert_eq!(format!("{keys:?}"), r#"["alice", "bob"]"#);
    }
}
