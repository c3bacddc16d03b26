//! [`AuthLayer`]: a route's endpoint and credential, as a tower layer.

use std::sync::Arc;

use claude_tower_core::RouteId;
use tower_layer::Layer;

use crate::{Auth, Credential, Endpoint};

/// Applies [`Auth`] to a service: strip inbound credentials, move the
/// request onto `endpoint`, set `anthropic-version`, inject `credential`.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    pub(crate) config: Arc<AuthConfig>,
}

#[derive(Debug)]
pub(crate) struct AuthConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) credential: Credential,
    pub(crate) route: Option<RouteId>,
}

impl AuthLayer {
    /// A layer sending to `endpoint` with `credential`.
    pub fn new(endpoint: Endpoint, credential: Credential) -> Self {
        Self {
            config: Arc::new(AuthConfig {
                endpoint,
                credential,
                route: None,
            }),
        }
    }

    /// Names the route in the errors this layer makes.
    pub fn with_route(self, route: RouteId) -> Self {
        let config = Arc::unwrap_or_clone(self.config);
        Self {
            config: Arc::new(AuthConfig {
                route: Some(route),
                ..config
            }),
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }

    /// The credential requests carry.
    pub fn credential(&self) -> &Credential {
        &self.config.credential
    }
}

impl Clone for AuthConfig {
    fn clone(&self) -> Self {
        Self {
            endpoint: self.endpoint.clone(),
            credential: self.credential.clone(),
            route: self.route.clone(),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
