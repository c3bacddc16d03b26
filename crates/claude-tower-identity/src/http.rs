//! A small HTTP client for OpenID discovery and JWKS documents: GET only,
//! bounded in size and time, `https` except on a loopback host.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::jwks::{FetchError, FetchFuture, FetchKeys, KeySet};

/// The most bytes read from a discovery document.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// The most bytes read from a JWKS document (Entra's is about 10 KiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Whether `uri` may be fetched: `https`, or `http` to a loopback host
/// (tests and local identity providers).
pub(crate) fn allowed_scheme(uri: &Uri) -> bool {
    match uri.scheme_str() {
        Some("https") => uri.host().is_some(),
        Some("http") => uri.host().is_some_and(is_loopback),
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The client shared by every issuer of one layer.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: HttpsClient,
    timeout: Duration,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// rustls with aws-lc-rs and the platform's verifier, HTTP/1.1.
    pub(crate) fn new(timeout: Duration) -> Result<Self, std::io::Error> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self { client, timeout })
    }

    /// GETs `uri` and returns its body: status 200, at most `limit` bytes,
    /// all within the client's timeout.
    async fn get(&self, uri: &Uri, limit: usize) -> Result<Bytes, FetchError> {
        let fail = |what: &str| FetchError(format!("GET {uri}: {what}"));
        let request = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| fail(&e.to_string()))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(&e.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(fail(&format!("status {}", response.status())));
            }
            if response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|len| len > limit as u64)
            {
                return Err(fail(&format!("larger than {limit} bytes")));
            }
            Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| fail(&e.to_string()))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| fail(&format!("no answer within {:?}", self.timeout)))?
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Fetches an issuer's keys: discovery, then its `jwks_uri`.
pub(crate) struct DiscoveryFetcher {
    pub(crate) client: HttpClient,
    /// The `issuer` the discovery document must name.
    pub(crate) issuer: String,
    pub(crate) discovery: Uri,
}

impl DiscoveryFetcher {
    pub(crate) fn new(client: HttpClient, issuer: &str) -> Result<Self, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Uri = url
            .parse()
            .map_err(|_| format!("`{issuer}` is not a URL"))?;
        if !allowed_scheme(&discovery) {
            return Err(format!(
                "`{issuer}` must be an https URL (http only on a loopback host)"
            ));
        }
        Ok(Self {
            client,
            issuer: issuer.to_owned(),
            discovery,
        })
    }

    async fn run(self: Arc<Self>) -> Result<KeySet, FetchError> {
        let body = self
            .client
            .get(&self.discovery, MAX_DISCOVERY_BYTES)
            .await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            FetchError(format!("{}: not a discovery document: {e}", self.discovery))
        })?;
        if doc.issuer != self.issuer {
            return Err(FetchError(format!(
                "{}: names issuer `{}`, expected `{}`",
                self.discovery, doc.issuer, self.issuer
            )));
        }
        let jwks: Uri = doc
            .jwks_uri
            .parse()
            .ok()
            .filter(allowed_scheme)
            .ok_or_else(|| FetchError(format!("{}: unusable jwks_uri", self.discovery)))?;
        let body = self.client.get(&jwks, MAX_JWKS_BYTES).await?;
        KeySet::parse(&body).map_err(|e| FetchError(format!("{jwks}: {e}")))
    }
}

impl FetchKeys for DiscoveryFetcher {
    fn fetch(self: Arc<Self>) -> FetchFuture {
        Box::pin(self.run())
    }

    fn describe(&self) -> &str {
        &self.issuer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "https://login.microsoftonline.com/x/v2.0",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://[::1]:9/",
        ] {
            assert!(allowed_scheme(&ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "http://login.microsoftonline.com/",
            "http://10.0.0.1/",
            "ftp://localhost/",
            "/relative",
        ] {
            assert!(!allowed_scheme(&bad.parse().unwrap()), "{bad}");
        }
    }
}
