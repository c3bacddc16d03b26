//! What the layer accepts: issuers, audiences, keys, and the policy.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::{Deserialize, Deserializer};

/// Entra's public cloud: where v2 tokens and metadata come from.
pub const ENTRA_LOGIN: &str = "https://login.microsoftonline.com";
/// Entra's public cloud: the host in v1 tokens' `iss`.
pub const ENTRA_STS: &str = "https://sts.windows.net";
/// The audiences Claude Code's `DefaultAzureCredential` asks Entra tokens
/// for (scopes `https://cognitiveservices.azure.com/.default` and
/// `https://ai.azure.com/.default`), used when none are configured.
pub const ENTRA_DEFAULT_AUDIENCES: [&str; 2] = [
    "https://cognitiveservices.azure.com",
    "https://ai.azure.com",
];

/// The environment variables [`IdentityConfig::from_lookup`] reads.
pub const ENV_VARIABLES: [&str; 5] = [
    "CLAUDE_TOWER_ENTRA_TENANT_ID",
    "CLAUDE_TOWER_OIDC_ISSUER",
    "CLAUDE_TOWER_OIDC_AUDIENCE",
    "CLAUDE_TOWER_REQUIRED_ROLES",
    "CLAUDE_TOWER_CLIENT_KEYS",
];

/// A client key as configured: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The identity layer's settings: from the environment
/// ([`from_lookup`](Self::from_lookup)), an `[identity]` section of a config
/// file (serde), or code (`with_*`).
///
/// ```toml
/// [identity]
/// entra_tenant_ids = ["72f988bf-86f1-41af-91ab-2d7cd011db47"]
/// issuers = ["https://idp.example.com/realms/dev"]
/// audiences = ["https://cognitiveservices.azure.com", "claude-gateway"]
/// required_roles = ["Claude.Use"]
/// clock_skew_secs = 60
/// [identity.client_keys]
/// ci-bot = "k-3f1c..."
/// ```
///
/// Unset numbers keep their defaults: 60 s clock skew, tokens living at most
/// 24 h, 10,000 cached tokens, keys refreshed hourly, an unknown `kid`
/// re-fetching at most every 5 minutes, fetches bounded to 10 s.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(alias = "entra_tenant_id", deserialize_with = "one_or_many")]
    entra_tenant_ids: Vec<String>,
    #[serde(alias = "oidc_issuers", deserialize_with = "one_or_many")]
    issuers: Vec<String>,
    #[serde(alias = "audience", deserialize_with = "one_or_many")]
    audiences: Vec<String>,
    allowed_tenants: Vec<String>,
    required_roles: Vec<String>,
    required_groups: Vec<String>,
    allowed_client_apps: Vec<String>,
    algorithms: Vec<String>,
    #[serde(deserialize_with = "named_keys")]
    client_keys: Vec<(String, Secret)>,
    clock_skew_secs: u64,
    max_token_lifetime_secs: u64,
    token_cache_size: usize,
    key_refresh_secs: u64,
    key_refetch_secs: u64,
    fetch_timeout_secs: u64,
    entra_login: String,
    entra_sts: String,
    #[serde(skip)]
    pub(crate) fixed_keys: Vec<(String, String)>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            entra_tenant_ids: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            allowed_tenants: Vec::new(),
            required_roles: Vec::new(),
            required_groups: Vec::new(),
            allowed_client_apps: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            client_keys: Vec::new(),
            clock_skew_secs: 60,
            max_token_lifetime_secs: 24 * 3600,
            token_cache_size: 10_000,
            key_refresh_secs: 3600,
            key_refetch_secs: 300,
            fetch_timeout_secs: 10,
            entra_login: ENTRA_LOGIN.into(),
            entra_sts: ENTRA_STS.into(),
            fixed_keys: Vec::new(),
        }
    }
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("entra_tenant_ids", &self.entra_tenant_ids)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("allowed_tenants", &self.allowed_tenants)
            .field("required_roles", &self.required_roles)
            .field("required_groups", &self.required_groups)
            .field("allowed_client_apps", &self.allowed_client_apps)
            .field("algorithms", &self.algorithms)
            .field(
                "client_keys",
                &self.client_keys.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("clock_skew_secs", &self.clock_skew_secs)
            .field("max_token_lifetime_secs", &self.max_token_lifetime_secs)
            .field("token_cache_size", &self.token_cache_size)
            .finish_non_exhaustive()
    }
}

/// A setting the identity layer cannot work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIdentityConfig {
    setting: &'static str,
    problem: String,
}

impl InvalidIdentityConfig {
    pub(crate) fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }

    /// The setting at fault: an environment variable name, or a config key.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for InvalidIdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for InvalidIdentityConfig {}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `name=key,...`; a bare key is named `key-N` (its 1-based position). A
/// key ending in `=` padding stays whole unless it is named.
fn parse_client_keys(value: &str) -> Result<Vec<(String, Secret)>, InvalidIdentityConfig> {
    let mut keys = Vec::new();
    for (i, entry) in list(value).into_iter().enumerate() {
        let named = entry.split_once('=').filter(|(name, key)| {
            !name.is_empty() && !key.is_empty() && !key.bytes().all(|b| b == b'=')
        });
        let (name, key) = match named {
            Some((name, key)) => (name.trim().to_owned(), key.trim().to_owned()),
            None => (format!("key-{}", i + 1), entry),
        };
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidIdentityConfig::new(
                "CLAUDE_TOWER_CLIENT_KEYS",
                format!("client key name `{name}` must be visible ASCII"),
            ));
        }
        keys.push((name, Secret(key)));
    }
    Ok(keys)
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => list(&s),
        OneOrMany::Many(v) => v,
    })
}

fn named_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Secret)>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    Ok(map.into_iter().map(|(n, k)| (n, Secret(k))).collect())
}

impl IdentityConfig {
    /// Reads the settings through `lookup` — `|name| std::env::var(name).ok()`
    /// for the process environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `CLAUDE_TOWER_ENTRA_TENANT_ID` | comma list of Entra tenant ids: both issuer forms of each, Entra's default audiences |
    /// | `CLAUDE_TOWER_OIDC_ISSUER` | comma list of OpenID Connect issuer URLs (`https`, or `http` on loopback) |
    /// | `CLAUDE_TOWER_OIDC_AUDIENCE` | comma list of accepted audiences (replaces Entra's defaults) |
    /// | `CLAUDE_TOWER_REQUIRED_ROLES` | comma list: a token must carry one of these roles |
    /// | `CLAUDE_TOWER_CLIENT_KEYS` | `name=key,...`; a bare key is named `key-N` |
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, InvalidIdentityConfig> {
        Self::default().merge_lookup(lookup)
    }

    /// These settings (from a config file, say), with every variable
    /// [`from_lookup`](Self::from_lookup) knows that is set replacing its
    /// counterpart.
    pub fn merge_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, InvalidIdentityConfig> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("CLAUDE_TOWER_ENTRA_TENANT_ID") {
            self.entra_tenant_ids = list(&v);
        }
        if let Some(v) = get("CLAUDE_TOWER_OIDC_ISSUER") {
            self.issuers = list(&v);
        }
        if let Some(v) = get("CLAUDE_TOWER_OIDC_AUDIENCE") {
            self.audiences = list(&v);
        }
        if let Some(v) = get("CLAUDE_TOWER_REQUIRED_ROLES") {
            self.required_roles = list(&v);
        }
        if let Some(v) = get("CLAUDE_TOWER_CLIENT_KEYS") {
            self.client_keys = parse_client_keys(&v)?;
        }
        Ok(self)
    }

    /// Whether any way to authenticate is configured. A gateway listening
    /// off loopback refuses to start without one.
    pub fn is_configured(&self) -> bool {
        !self.entra_tenant_ids.is_empty()
            || !self.issuers.is_empty()
            || !self.client_keys.is_empty()
            || !self.fixed_keys.is_empty()
    }

    /// Accepts Entra ID tokens of `tenant_id` (a GUID), in both issuer forms.
    pub fn with_entra_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.entra_tenant_ids.push(tenant_id.into());
        self
    }

    /// Accepts tokens of the OpenID Connect issuer `issuer`, keys found by
    /// discovery at `{issuer}/.well-known/openid-configuration`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens of `issuer` signed with the keys of the JWKS document
    /// `jwks` (JSON), never fetched: for identity providers the gateway
    /// cannot reach, and tests.
    pub fn with_issuer_keys(mut self, issuer: impl Into<String>, jwks: impl Into<String>) -> Self {
        self.fixed_keys.push((issuer.into(), jwks.into()));
        self
    }

    /// Adds an accepted audience. Setting any replaces Entra's defaults.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Only tokens whose `tid` is one of these tenants (adds one).
    pub fn with_allowed_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.allowed_tenants.push(tenant.into());
        self
    }

    /// A token must carry at least one of the required roles (adds one).
    pub fn with_required_role(mut self, role: impl Into<String>) -> Self {
        self.required_roles.push(role.into());
        self
    }

    /// A token must carry at least one of the required groups (adds one).
    pub fn with_required_group(mut self, group: impl Into<String>) -> Self {
        self.required_groups.push(group.into());
        self
    }

    /// A token's client application (`azp`, else `appid`) must be one of
    /// these (adds one).
    pub fn with_allowed_client_app(mut self, app: impl Into<String>) -> Self {
        self.allowed_client_apps.push(app.into());
        self
    }

    /// The signing algorithms accepted (default `RS256`, `ES256`). RSA
    /// (`RS*`, `PS*`) and ECDSA (`ES256`, `ES384`) only: `none` and HMAC are
    /// refused at construction.
    pub fn with_algorithms<I, A>(mut self, algorithms: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        self.algorithms = algorithms.into_iter().map(Into::into).collect();
        self
    }

    /// A client key named `name` (its caller id).
    pub fn with_client_key(mut self, name: impl Into<String>, key: impl Into<String>) -> Self {
        self.client_keys.push((name.into(), Secret(key.into())));
        self
    }

    /// How far `exp` and `nbf` may be off the local clock (default 60 s).
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew_secs = skew.as_secs();
        self
    }

    /// The furthest ahead an `exp` may lie (default 24 h): a token "valid
    /// until 9999" is refused rather than trusted, and cached, for ever.
    pub fn with_max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime_secs = lifetime.as_secs();
        self
    }

    /// How many validated tokens are remembered (default 10,000; 0 turns
    /// the cache off).
    pub fn with_token_cache_size(mut self, entries: usize) -> Self {
        self.token_cache_size = entries;
        self
    }

    /// How old fetched keys get before a background refresh (default 1 h).
    pub fn with_key_refresh_interval(mut self, every: Duration) -> Self {
        self.key_refresh_secs = every.as_secs();
        self
    }

    /// How often an unknown `kid` may fetch the keys again (default 5 min).
    pub fn with_key_refetch_interval(mut self, every: Duration) -> Self {
        self.key_refetch_secs = every.as_secs();
        self
    }

    /// The bound on one discovery + JWKS fetch (default 10 s).
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout_secs = timeout.as_secs();
        self
    }

    /// Entra's hosts for a national cloud, or a local stand-in: `login` is
    /// where v2 issuers and metadata live
    /// (`https://login.microsoftonline.us`), `sts` the host in v1 issuers.
    pub fn with_entra_authority(
        mut self,
        login: impl Into<String>,
        sts: impl Into<String>,
    ) -> Self {
        self.entra_login = login.into();
        self.entra_sts = sts.into();
        self
    }

    // === read by a gateway's `check` (nothing secret) ===

    /// The Entra tenant ids accepted.
    pub fn entra_tenant_ids(&self) -> &[String] {
        &self.entra_tenant_ids
    }

    /// The OpenID Connect issuers accepted (besides Entra's).
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The client keys' names (their caller ids); never the keys.
    pub fn client_key_names(&self) -> impl Iterator<Item = &str> {
        self.client_keys.iter().map(|(name, _)| name.as_str())
    }

    // === read by the layer ===

    pub(crate) fn client_keys(&self) -> &[(String, Secret)] {
        &self.client_keys
    }

    pub(crate) fn generic_issuers(&self) -> &[String] {
        &self.issuers
    }

    /// Each tenant with its (v2, v1) issuer strings. Tenant ids must be GUIDs:
    /// Entra's metadata and tokens name the tenant by id, never by domain.
    pub(crate) fn entra_issuers(
        &self,
    ) -> Result<Vec<(String, String, String)>, InvalidIdentityConfig> {
        let login = self.entra_login.trim_end_matches('/');
        let sts = self.entra_sts.trim_end_matches('/');
        self.entra_tenant_ids
            .iter()
            .map(|tid| {
                if !is_guid(tid) {
                    return Err(InvalidIdentityConfig::new(
                        "CLAUDE_TOWER_ENTRA_TENANT_ID",
                        format!("`{tid}` is not a tenant id (a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47)"),
                    ));
                }
                Ok((
                    tid.to_ascii_lowercase(),
                    format!("{login}/{}/v2.0", tid.to_ascii_lowercase()),
                    format!("{sts}/{}/", tid.to_ascii_lowercase()),
                ))
            })
            .collect()
    }

    /// The audiences accepted: those configured, else Entra's defaults when
    /// a tenant is configured.
    pub fn audiences(&self) -> Vec<String> {
        if self.audiences.is_empty() && !self.entra_tenant_ids.is_empty() {
            ENTRA_DEFAULT_AUDIENCES
                .iter()
                .map(|a| (*a).to_owned())
                .collect()
        } else {
            self.audiences.clone()
        }
    }

    pub(crate) fn algorithms(&self) -> Result<Vec<Algorithm>, InvalidIdentityConfig> {
        let bad = |problem: String| InvalidIdentityConfig::new("algorithms", problem);
        let mut out = Vec::new();
        for name in &self.algorithms {
            let alg = name
                .parse::<Algorithm>()
                .map_err(|_| bad(format!("`{name}` is not a signing algorithm")))?;
            match alg.family() {
                AlgorithmFamily::Rsa => {}
                AlgorithmFamily::Ec if matches!(alg, Algorithm::ES256 | Algorithm::ES384) => {}
                _ => {
                    return Err(bad(format!(
                        "`{name}` is not accepted: only RSA (RS*, PS*) and ECDSA (ES256, ES384) verify with a public key"
                    )));
                }
            }
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        if out.is_empty() {
            return Err(bad("no algorithm allowed".into()));
        }
        Ok(out)
    }

    /// Only tokens of these tenants (empty: any).
    pub fn allowed_tenants(&self) -> &[String] {
        &self.allowed_tenants
    }
    /// A token must carry one of these roles.
    pub fn required_roles(&self) -> &[String] {
        &self.required_roles
    }
    /// A token must carry one of these groups.
    pub fn required_groups(&self) -> &[String] {
        &self.required_groups
    }
    pub(crate) fn allowed_client_apps(&self) -> &[String] {
        &self.allowed_client_apps
    }
    pub(crate) fn clock_skew(&self) -> Duration {
        Duration::from_secs(self.clock_skew_secs)
    }
    pub(crate) fn max_token_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_token_lifetime_secs)
    }
    pub(crate) fn token_cache_size(&self) -> usize {
        self.token_cache_size
    }
    pub(crate) fn key_refresh(&self) -> Duration {
        Duration::from_secs(self.key_refresh_secs)
    }
    pub(crate) fn key_refetch(&self) -> Duration {
        Duration::from_secs(self.key_refetch_secs)
    }
    pub(crate) fn fetch_timeout(&self) -> Duration {
        Duration::from_secs(self.fetch_timeout_secs.max(1))
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_every_variable() {
        let c = IdentityConfig::from_lookup(lookup(&[
            ("CLAUDE_TOWER_ENTRA_TENANT_ID", &format!("{TID}, ")),
            (
                "CLAUDE_TOWER_OIDC_ISSUER",
                "https://a.example,https://b.example",
            ),
            ("CLAUDE_TOWER_OIDC_AUDIENCE", "api://claude"),
            ("CLAUDE_TOWER_REQUIRED_ROLES", "Claude.Use"),
            (
                "CLAUDE_TOWER_CLIENT_KEYS",
                "alice=k1, k2 ,bob=k3,c2VjcmV0==,x==",
            ),
        ]))
        .unwrap();
        assert_eq!(c.entra_tenant_ids, [TID]);
        assert_eq!(c.issuers, ["https://a.example", "https://b.example"]);
        assert_eq!(c.audiences(), ["api://claude"]);
        assert_eq!(c.required_roles, ["Claude.Use"]);
        let names: Vec<_> = c.client_keys.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["alice", "key-2", "bob", "key-4", "key-5"]);
        assert_eq!(c.client_keys[3].1, Secret("c2VjcmV0==".into()));
        assert!(c.is_configured());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("k1") && !debug.contains("c2VjcmV0"),
            "{debug}"
        );
    }

    #[test]
    fn entra_tenant_gives_both_issuers_and_default_audiences() {
        let c = IdentityConfig::default().with_entra_tenant(TID.to_uppercase());
        let issuers = c.entra_issuers().unwrap();
        assert_eq!(
            issuers,
            [(
                TID.to_owned(),
                format!("https://login.microsoftonline.com/{TID}/v2.0"),
                format!("https://sts.windows.net/{TID}/"),
            )]
        );
        assert_eq!(c.audiences(), ENTRA_DEFAULT_AUDIENCES);
        let bad = IdentityConfig::default().with_entra_tenant("contoso.onmicrosoft.com");
        assert_eq!(
            bad.entra_issuers().unwrap_err().setting(),
            "CLAUDE_TOWER_ENTRA_TENANT_ID"
        );
        assert!(!IdentityConfig::default().is_configured());
    }

    #[test]
    fn algorithms_never_allow_hmac_or_none() {
        let c = IdentityConfig::default();
        assert_eq!(
            c.algorithms().unwrap(),
            [Algorithm::RS256, Algorithm::ES256]
        );
        for bad in ["HS256", "none", "EdDSA", "nope"] {
            let c = IdentityConfig::default().with_algorithms([bad]);
            assert!(c.algorithms().is_err(), "{bad}");
        }
        assert!(
            IdentityConfig::default()
                .with_algorithms(Vec::<String>::new())
                .algorithms()
                .is_err()
        );
    }

    #[test]
    fn deserializes_a_file_section() {
        let c: IdentityConfig = serde_json::from_value(serde_json::json!({
            "entra_tenant_id": TID,
            "issuers": ["https://idp.example"],
            "required_roles": ["Claude.Use"],
            "clock_skew_secs": 30,
            "client_keys": {"ci": "k-ci"},
        }))
        .unwrap();
        assert_eq!(c.entra_tenant_ids, [TID]);
        assert_eq!(c.clock_skew(), Duration::from_secs(30));
        assert_eq!(c.token_cache_size(), 10_000);
        assert_eq!(c.client_keys, [("ci".to_owned(), Secret("k-ci".into()))]);
        // The environment overrides the file.
        let c = c
            .merge_lookup(lookup(&[("CLAUDE_TOWER_CLIENT_KEYS", "other=k")]))
            .unwrap();
        assert_eq!(c.client_keys[0].0, "other");
        assert!(
            serde_json::from_value::<IdentityConfig>(serde_json::json!({"isuers": []})).is_err()
        );
    }
}
