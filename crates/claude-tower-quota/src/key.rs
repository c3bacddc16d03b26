//! Which bucket a request is counted in.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

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
///
/// A key carries its hash, computed once when it is built: a request's key
/// is looked up twice (check and settle), each time to pick a shard and a
/// slot in it. The hash is SipHash under a key random per process (std's
/// `RandomState`), as a `HashMap`'s is: ids come from clients.
#[derive(Clone)]
pub struct QuotaKey {
    text: Arc<str>,
    hash: u64,
}

/// The process's hashing key for [`QuotaKey`]s.
static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

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
        Self::new(Arc::from("global"))
    }

    fn new(text: Arc<str>) -> Self {
        let hash = HASHER.hash_one(&*text);
        Self { text, hash }
    }

    fn build(kind: &str, id: &str) -> Self {
        let plain = !id.is_empty()
            && id.len() <= MAX_PLAIN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+=-".contains(&b));
        if plain {
            Self::new(joined(kind, ':', id))
        } else {
            let digest = sha1_smol::Sha1::from(id.as_bytes()).digest();
            Self::new(Arc::from(format!("{kind}#{digest}")))
        }
    }

    /// A key read back from a store, as it was stored.
    #[cfg(feature = "redis")]
    pub(crate) fn from_stored(s: &str) -> Self {
        Self::new(Arc::from(s))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The hash the key carries (see the type's docs).
    pub(crate) fn carried_hash(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for QuotaKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for QuotaKey {}

impl Hash for QuotaKey {
    /// The carried hash: the stores' maps take it as it is, hashing
    /// nothing again.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for QuotaKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QuotaKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Debug for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
    fn a_key_carries_one_hash_for_one_text() {
        let a = QuotaKey::caller("ada");
        let b = QuotaKey::caller("ada");
        assert_eq!(a, b);
        assert_eq!(a.carried_hash(), b.carried_hash());
        assert_ne!(a, QuotaKey::header("ada"), "the kind is part of the key");
        assert_ne!(a, QuotaKey::caller("bob"));
        assert!(
            QuotaKey::caller("ada") < QuotaKey::caller("bob"),
            "ordered by text"
        );
        let mut map = crate::store::KeyMap::default();
        for i in 0..1_000 {
            map.insert(QuotaKey::caller(&format!("u{i}")), i);
        }
        assert_eq!(map.len(), 1_000);
        assert_eq!(map.get(&QuotaKey::caller("u417")), Some(&417));
        assert_eq!(map.get(&QuotaKey::header("u417")), None);
    }

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
