use std::fmt;
use std::sync::Arc;

/// A route's name, such as `"anthropic"` or `"foundry-eastus2"`.
///
/// Carried in extensions, spans and error messages; cloning it is a reference
/// count increment.
///
/// ```
/// use claude_tower_core::RouteId;
///
/// let id = RouteId::new("foundry-eastus2");
/// assert_eq!(id.as_str(), "foundry-eastus2");
/// assert_eq!(id, "foundry-eastus2");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(Arc<str>);

impl RouteId {
    /// Creates a route id from a name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The route's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RouteId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RouteId {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for RouteId {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl PartialEq<str> for RouteId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RouteId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_name() {
        let a = RouteId::new(String::from("anthropic"));
        let b = a.clone();
        assert_eq!(a, b);
        assert_eq!(b.to_string(), "anthropic");
        assert_eq!(format!("{b:?}"), "\"anthropic\"");
    }
}
