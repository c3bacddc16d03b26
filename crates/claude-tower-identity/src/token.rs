//! Checking a JWT: issuer, key, signature, times, audience, then policy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claude_tower_core::{AuthMethod, Caller};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::credential::KeyHash;
use crate::jwks::{KeySource, Lookup, VerifyKey};
use crate::rejection::{Rejection, RejectionKind};

/// One accepted issuer (`iss` value) and where its keys come from.
pub(crate) struct Issuer {
    pub(crate) iss: Box<str>,
    pub(crate) source: Arc<KeySource>,
    /// For an Entra issuer: the tenant whose tokens it signs (`tid`).
    pub(crate) tenant: Option<Box<str>>,
    /// One validation per allowed algorithm: jsonwebtoken wants the
    /// algorithms of one validation to share the key's family.
    validations: Vec<(Algorithm, Validation)>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("iss", &self.iss)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    pub(crate) fn new(
        iss: &str,
        source: Arc<KeySource>,
        tenant: Option<&str>,
        rules: &Rules,
    ) -> Self {
        let validations = rules
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&[iss]);
                v.set_audience(&rules.audiences);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.leeway = rules.leeway.as_secs();
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        Self {
            iss: iss.into(),
            source,
            tenant: tenant.map(Into::into),
            validations,
        }
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
    }
}

/// What every token must satisfy, whoever issued it.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) allowed_tenants: Vec<String>,
    pub(crate) required_roles: Vec<String>,
    pub(crate) required_groups: Vec<String>,
    pub(crate) allowed_apps: Vec<String>,
}

/// The claims a [`Caller`] is made from.
#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing one is reported by the validation
    // (as a missing claim), not by serde (as a malformed token).
    exp: Option<u64>,
    iss: Option<String>,
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    azp: Option<String>,
    appid: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

/// The outcome of the part of a check that never waits.
pub(crate) enum Step {
    Done(Result<Caller, Rejection>),
    /// The token's key is not cached: wait for its issuer's keys.
    Fetch(PendingToken),
}

/// A token whose check goes on after a key fetch. Owns what it needs.
pub(crate) struct PendingToken {
    token: Box<str>,
    hash: KeyHash,
    alg: Algorithm,
    kid: Box<str>,
    issuer: Arc<Issuer>,
}

impl fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingToken")
            .field("issuer", &self.issuer.iss)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Checks JWTs against the configured issuers and rules.
pub(crate) struct Verifier {
    issuers: HashMap<Box<str>, Arc<Issuer>>,
    rules: Rules,
    cache: TokenCache,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn decode_segment<T: for<'de> Deserialize<'de>>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Verifier {
    pub(crate) fn new(issuers: Vec<Issuer>, rules: Rules, cache_capacity: usize) -> Self {
        Self {
            issuers: issuers
                .into_iter()
                .map(|i| (i.iss.clone(), Arc::new(i)))
                .collect(),
            rules,
            cache: TokenCache::new(cache_capacity),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Every distinct key source (Entra's two issuers of a tenant share one).
    pub(crate) fn sources(&self) -> Vec<Arc<KeySource>> {
        let mut sources: Vec<Arc<KeySource>> = Vec::new();
        for issuer in self.issuers.values() {
            if !sources.iter().any(|s| Arc::ptr_eq(s, &issuer.source)) {
                sources.push(issuer.source.clone());
            }
        }
        sources
    }

    /// Everything that can be decided without waiting: a cached token, a
    /// malformed one, one whose key is cached.
    pub(crate) fn check(&self, token: &str, hash: KeyHash) -> Step {
        if let Some(caller) = self.cache.get(&hash, unix_now()) {
            return Step::Done(Ok(caller));
        }
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
            return Step::Done(Err(RejectionKind::MalformedToken.into()));
        };
        let Some(header) = decode_segment::<Header>(header) else {
            return Step::Done(Err(RejectionKind::MalformedToken.into()));
        };
        let alg = match header.alg.parse::<Algorithm>() {
            Ok(alg) if self.rules.algorithms.contains(&alg) => alg,
            _ => return Step::Done(Err(RejectionKind::AlgorithmNotAllowed.into())),
        };
        let Some(kid) = header.kid else {
            return Step::Done(Err(RejectionKind::MissingKeyId.into()));
        };
        let Some(claims) = decode_segment::<IssuerOnly>(payload) else {
            return Step::Done(Err(RejectionKind::MalformedToken.into()));
        };
        let Some(iss) = claims.iss else {
            return Step::Done(Err(RejectionKind::MissingClaim.into()));
        };
        let Some(issuer) = self.issuers.get(iss.as_str()) else {
            return Step::Done(Err(RejectionKind::UnknownIssuer.into()));
        };
        match issuer.source.lookup(&kid) {
            Lookup::Found(key) => Step::Done(self.verify(token, hash, alg, issuer, &key)),
            Lookup::Unknown => Step::Done(Err(RejectionKind::UnknownKey.into())),
            Lookup::Unavailable(wait) => Step::Done(Err(Rejection::unavailable(wait))),
            Lookup::Wait => Step::Fetch(PendingToken {
                token: token.into(),
                hash,
                alg,
                kid: kid.into(),
                issuer: issuer.clone(),
            }),
        }
    }

    /// Waits for the pending token's key (one shared fetch), then checks it.
    pub(crate) async fn finish(&self, pending: PendingToken) -> Result<Caller, Rejection> {
        let key = pending.issuer.source.clone().wait_for(&pending.kid).await?;
        // Many callers may have waited with the same token: the first one
        // through put it in the cache.
        if let Some(caller) = self.cache.get(&pending.hash, unix_now()) {
            return Ok(caller);
        }
        self.verify(
            &pending.token,
            pending.hash,
            pending.alg,
            &pending.issuer,
            &key,
        )
    }

    fn verify(
        &self,
        token: &str,
        hash: KeyHash,
        alg: Algorithm,
        issuer: &Issuer,
        key: &VerifyKey,
    ) -> Result<Caller, Rejection> {
        let (true, Some(validation)) = (key.accepts(alg), issuer.validation(alg)) else {
            return Err(RejectionKind::BadSignature.into());
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), validation)
            .map_err(|e| Rejection::new(kind_of(e.kind())))?
            .claims;
        let now = unix_now();
        let Some(exp) = claims.exp else {
            return Err(RejectionKind::MissingClaim.into());
        };
        if exp.saturating_sub(now) > self.rules.max_lifetime.as_secs() {
            return Err(RejectionKind::LifetimeTooLong.into());
        }
        let caller = self.authorize(claims, issuer)?;
        self.cache.insert(hash, (caller.clone(), exp), now);
        Ok(caller)
    }

    /// Turns verified claims into a caller, then applies the policy (403s).
    fn authorize(&self, claims: Claims, issuer: &Issuer) -> Result<Caller, Rejection> {
        let rules = &self.rules;
        let tenant_ok = |tid: Option<&str>| match (&issuer.tenant, tid) {
            (Some(want), Some(tid)) => **want == *tid,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !tenant_ok(claims.tid.as_deref())
            || (!rules.allowed_tenants.is_empty()
                && !claims
                    .tid
                    .as_ref()
                    .is_some_and(|t| rules.allowed_tenants.contains(t)))
        {
            return Err(RejectionKind::TenantNotAllowed.into());
        }
        let any_of = |required: &[String], held: &[String]| {
            required.is_empty() || held.iter().any(|h| required.contains(h))
        };
        if !any_of(&rules.required_roles, &claims.roles) {
            return Err(RejectionKind::MissingRole.into());
        }
        if !any_of(&rules.required_groups, &claims.groups) {
            return Err(RejectionKind::MissingGroup.into());
        }
        if !rules.allowed_apps.is_empty() {
            let app = claims.azp.as_ref().or(claims.appid.as_ref());
            if !app.is_some_and(|a| rules.allowed_apps.contains(a)) {
                return Err(RejectionKind::ClientAppNotAllowed.into());
            }
        }

        let Some(id) = claims.oid.or(claims.sub) else {
            return Err(RejectionKind::MissingClaim.into());
        };
        let mut caller = Caller::new(id, AuthMethod::Token)
            .with_issuer(claims.iss.unwrap_or_else(|| issuer.iss.to_string()))
            .with_groups(claims.groups)
            .with_roles(claims.roles);
        if let Some(name) = claims.upn.or(claims.preferred_username).or(claims.name) {
            caller = caller.with_display_name(name);
        }
        if let Some(tid) = claims.tid {
            caller = caller.with_tenant(tid);
        }
        Ok(caller)
    }
}

fn kind_of(kind: &ErrorKind) -> RejectionKind {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidKeyFormat => RejectionKind::BadSignature,
        ErrorKind::ExpiredSignature => RejectionKind::Expired,
        ErrorKind::ImmatureSignature => RejectionKind::NotYetValid,
        ErrorKind::InvalidAudience => RejectionKind::WrongAudience,
        ErrorKind::InvalidIssuer => RejectionKind::UnknownIssuer,
        ErrorKind::MissingRequiredClaim(_) => RejectionKind::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            RejectionKind::AlgorithmNotAllowed
        }
        _ => RejectionKind::MalformedToken,
    }
}

// === TokenCache ===

/// Validated tokens by SHA-256 of the token, until their `exp`.
///
/// Only the hash is kept, so the cache holds no credential; a hit costs one
/// hash and one map read instead of a signature check.
struct TokenCache {
    entries: RwLock<HashMap<KeyHash, (Caller, u64)>>,
    capacity: usize,
}

impl TokenCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    fn get(&self, hash: &KeyHash, now: u64) -> Option<Caller> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.get(hash) {
            Some((caller, exp)) if *exp > now => Some(caller.clone()),
            _ => None,
        }
    }

    fn insert(&self, hash: KeyHash, (caller, exp): (Caller, u64), now: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, exp)| *exp > now);
        }
        if entries.len() >= self.capacity {
            // Still full of live tokens: drop an arbitrary sixteenth, so the
            // sweep above runs once per many inserts, not on each.
            let drop: Vec<KeyHash> = entries
                .keys()
                .take((self.capacity / 16).max(1))
                .copied()
                .collect();
            for k in drop {
                entries.remove(&k);
            }
        }
        entries.insert(hash, (caller, exp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_forgets_expired_tokens() {
        let cache = TokenCache::new(32);
        let caller = Caller::new("u", AuthMethod::Token);
        for i in 0..100u8 {
            cache.insert([i; 32], (caller.clone(), 1_000), 10);
            assert!(cache.entries.read().unwrap().len() <= 32);
        }
        assert!(cache.get(&[99; 32], 999).is_some());
        assert!(cache.get(&[99; 32], 1_000).is_none());
        cache.insert([200; 32], (caller, 5_000), 2_000);
        assert_eq!(cache.entries.read().unwrap().len(), 1);
    }
}
