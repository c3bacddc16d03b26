//! Which bucket a request is counted in.

use std::fmt;
use std::sync::Arc;

use claude_tower_core::Caller;
use http::{HeaderMap, HeaderName};

/// The name a caller's buckets are kept under, in memory and in Redis.
///
/// Short ids of plain characters are kept as they are (`caller:ada@contoso.com`);
/// anything longer than 128 bytes, or holding characters outside
/// `A-Z a-z 0-9 . _ @ + = -`, is replaced by its SHA-1 (`caller#3f2a..`), so a
/// 10 KB id of odd characters costs 46 bytes and can never forge a Redis hash
/// tag (`{`, `}`). SHA-1 is enough here: merging two keys needs a collision
/// with a *given* id (a second preimage), which no one can compute.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaKey(Arc<str>);

const MAX_PLAIN: usize = 128;

/// `{kind}{separator}{id}` as one shared string, without the formatting
/// machinery `format!` runs (a key is built for every request).
fn joined(kind: &str, separator: char, id: &str) -> Arc<str> {
    let mut key = String::with_capacity(kind.len() + separator.len_utf8() + id.len());
    key.push_str(kind);
    key.push(separator);
    key.push_str(id);
    Arc::from(key)
}

impl QuotaKey {
    /// The key of caller id `id`.
    pub fn caller(id: &str) -> Self {
        Self::build("caller", id)
    }

    /// The key of a request whose key header says `value`.
    pub fn header(value: &str) -> Self {
        Self::build("header", value)
    }

    /// The one key of requests with neither a caller nor a key header.
    pub fn global() -> Self {
        Self(Arc::from("global"))
    }

    fn build(kind: &str, id: &str) -> Self {
        let plain = !id.is_empty()
            && id.len() <= MAX_PLAIN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+=-".contains(&b));
        if plain {
            Self(joined(kind, ':', id))
        } else {
            let digest = sha1_smol::Sha1::from(id.as_bytes()).digest();
            Self(Arc::from(format!("{kind}#{digest}")))
        }
    }

    /// A key read back from a store, as it was stored.
    #[cfg(feature = "redis")]
    pub(crate) fn from_stored(s: &str) -> Self {
        Self(Arc::from(s))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for QuotaKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a request's key is chosen: the `Caller` id (set by an identity layer)
/// when there is one, else the configured header's value when present, else
/// the one global key.
#[derive(Clone, Debug, Default)]
pub struct KeySource {
    header: Option<HeaderName>,
}

impl KeySource {
    /// Caller, else global.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caller, else `header`'s value, else global.
    pub fn with_header(mut self, header: HeaderName) -> Self {
        self.header = Some(header);
        self
    }

    /// Who the request counts against, borrowed: the key itself is only
    /// built (an allocation) when a policy limits it.
    pub(crate) fn id<'a>(&self, caller: Option<&'a Caller>, headers: &'a HeaderMap) -> Id<'a> {
        if let Some(c) = caller {
            return Id::Caller(c.id());
        }
        if let Some(v) = self
            .header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return Id::Header(v);
        }
        Id::Global
    }
}

/// A request's quota identity, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Id<'a> {
    Caller(&'a str),
    Header(&'a str),
    Global,
}

impl<'a> Id<'a> {
    /// The id policies are looked up by.
    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self {
            Id::Caller(id) | Id::Header(id) => Some(id),
            Id::Global => None,
        }
    }

    /// The store key.
    pub(crate) fn key(self) -> QuotaKey {
        match self {
            Id::Caller(id) => QuotaKey::caller(id),
            Id::Header(v) => QuotaKey::header(v),
            Id::Global => QuotaKey::global(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_core::AuthMethod;

    #[test]
    fn odd_and_long_ids_are_hashed() {
        assert_eq!(
            QuotaKey::caller("ada@contoso.com").as_str(),
            "caller:ada@contoso.com"
        );
        let odd: String = "{ä}\u{0}\n🦀".repeat(1_100);
        assert!(odd.len() > 10_000);
        let k = QuotaKey::caller(&odd);
        assert_eq!(k.as_str().len(), "caller#".len() + 40);
        assert!(!k.as_str().contains('{'));
        assert_ne!(k, QuotaKey::caller(&odd[..odd.len() - 4]));
        assert_ne!(QuotaKey::caller("x"), QuotaKey::header("x"));
        assert!(QuotaKey::caller("").as_str().starts_with("caller#"));
    }

    #[test]
    fn caller_then_header_then_global() {
        let src = KeySource::new().with_header(HeaderName::from_static("x-team"));
        let mut h = HeaderMap::new();
        let caller = Caller::new("u1", AuthMethod::Token);
        assert_eq!(src.id(Some(&caller), &h).key().as_str(), "caller:u1");
        assert_eq!(src.id(None, &h).key(), QuotaKey::global());
        h.insert("x-team", "blue".parse().unwrap());
        assert_eq!(src.id(None, &h), Id::Header("blue"));
        assert_eq!(KeySource::new().id(None, &h), Id::Global);
    }
}
