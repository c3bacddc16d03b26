use std::fmt;
use std::sync::Arc;

/// Who is calling: the identity an authentication layer established for a
/// request, carried as a request extension.
///
/// An identity layer (`claude-tower-identity`) inserts it; usage metering and
/// quotas read it without depending on how it was established. Cloning is a
/// reference count increment.
///
/// ```
/// use claude_tower_core::{AuthMethod, Caller};
///
/// let caller = Caller::new("6f1c0e2a-0000-4000-8000-000000000001", AuthMethod::Token)
///     .with_display_name("ada@contoso.com")
///     .with_tenant("72f988bf-0000-4000-8000-000000000000")
///     .with_groups(["claude-users"])
///     .with_roles(["Claude.Use"]);
/// assert_eq!(caller.id(), "6f1c0e2a-0000-4000-8000-000000000001");
/// assert!(caller.in_group("claude-users"));
/// assert!(caller.has_role("Claude.Use"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Caller(Arc<Inner>);

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    id: Box<str>,
    method: AuthMethod,
    display_name: Option<Box<str>>,
    tenant: Option<Box<str>>,
    issuer: Option<Box<str>>,
    groups: Box<[Box<str>]>,
    roles: Box<[Box<str>]>,
}

/// How a [`Caller`] authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A signed token (a JWT from Entra ID or another OpenID Connect issuer).
    Token,
    /// A client key the gateway holds (hashed).
    ClientKey,
}

impl AuthMethod {
    /// A stable lower-case name for logs and metrics: `token`, `client_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::ClientKey => "client_key",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Caller ===

impl Caller {
    /// A caller with the stable id `id` (Entra `oid`, else `sub`, else a
    /// client key's name), authenticated by `method`.
    pub fn new(id: impl Into<Box<str>>, method: AuthMethod) -> Self {
        Self(Arc::new(Inner {
            id: id.into(),
            method,
            display_name: None,
            tenant: None,
            issuer: None,
            groups: Box::new([]),
            roles: Box::new([]),
        }))
    }

    /// A human-readable name (`upn`, `preferred_username`, `name`).
    pub fn with_display_name(mut self, name: impl Into<Box<str>>) -> Self {
        Arc::make_mut(&mut self.0).display_name = Some(name.into());
        self
    }

    /// The tenant (Entra `tid`).
    pub fn with_tenant(mut self, tenant: impl Into<Box<str>>) -> Self {
        Arc::make_mut(&mut self.0).tenant = Some(tenant.into());
        self
    }

    /// The token's issuer (`iss`).
    pub fn with_issuer(mut self, issuer: impl Into<Box<str>>) -> Self {
        Arc::make_mut(&mut self.0).issuer = Some(issuer.into());
        self
    }

    /// The groups the caller belongs to (Entra `groups` object ids, or names).
    pub fn with_groups<I, G>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: Into<Box<str>>,
    {
        Arc::make_mut(&mut self.0).groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// The app roles granted to the caller (Entra `roles`).
    pub fn with_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<Box<str>>,
    {
        Arc::make_mut(&mut self.0).roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The stable id: the key quotas and metrics are kept under.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// How the caller authenticated.
    pub fn method(&self) -> AuthMethod {
        self.0.method
    }

    /// A human-readable name, when the credential carried one.
    pub fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }

    /// The tenant, when the credential carried one.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// The issuer of the caller's token.
    pub fn issuer(&self) -> Option<&str> {
        self.0.issuer.as_deref()
    }

    /// The caller's groups.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.groups.iter().map(|g| &**g)
    }

    /// The caller's roles.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.roles.iter().map(|r| &**r)
    }

    /// Whether the caller is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.0.groups.iter().any(|g| &**g == group)
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.iter().any(|r| &**r == role)
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No secret is ever stored here; ids and names are fine in logs.
        f.debug_struct("Caller")
            .field("id", &self.0.id)
            .field("method", &self.0.method)
            .field("display_name", &self.0.display_name)
            .field("tenant", &self.0.tenant)
            .field("groups", &self.0.groups.len())
            .field("roles", &self.0.roles)
            .finish()
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field_and_clones_share() {
        let caller = Caller::new("u1", AuthMethod::ClientKey)
            .with_display_name("Ada")
            .with_issuer("https://issuer.example")
            .with_groups(["g1", "g2"])
            .with_roles(["r1"]);
        let clone = caller.clone();
        assert_eq!(clone, caller);
        assert_eq!(caller.method(), AuthMethod::ClientKey);
        assert_eq!(caller.display_name(), Some("Ada"));
        assert_eq!(caller.issuer(), Some("https://issuer.example"));
        assert_eq!(caller.tenant(), None);
        assert_eq!(caller.groups().collect::<Vec<_>>(), ["g1", "g2"]);
        assert!(caller.in_group("g2") && !caller.in_group("g3"));
        assert!(caller.has_role("r1") && !caller.has_role("r2"));
        assert_eq!(caller.to_string(), "u1");
    }
}
