//! Conversions between the `http` types the tower stack speaks and reqwest's
//! own, shared by the transport service and the middleware.

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, ReplayBody};
use http::header::HOST;
use http::{Extensions, Uri};
use reqwest::{ResponseBuilderExt, Url};

/// The URL a request is sent to.
///
/// With a base URL, the request URI's path and query are appended to the
/// base's path (`https://r.services.ai.azure.com/anthropic` +
/// `/v1/messages?beta=true`), whatever scheme and authority the URI had.
/// Without one, the URI must be absolute.
pub(crate) fn target_url(uri: &Uri, base: Option<&Url>) -> Result<Url, ClaudeError> {
    match base {
        Some(base) => Ok(rebase(base, uri.path(), uri.query())),
        None if uri.scheme().is_some() && uri.authority().is_some() => Url::parse(&uri.to_string())
            .map_err(|e| {
                ClaudeError::new(
                    ErrorClass::RouteUnavailable,
                    "request URI is not a valid URL",
                )
                .with_source(e)
            }),
        None => Err(ClaudeError::new(
            ErrorClass::RouteUnavailable,
            "request URI is not absolute and no base URL is set",
        )),
    }
}

/// `base` with `path` appended to its path and `query` as its query.
pub(crate) fn rebase(base: &Url, path: &str, query: Option<&str>) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let path = if path.starts_with('/') || path.is_empty() {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}/{path}")
    };
    url.set_path(&path);
    url.set_query(query);
    url.set_fragment(None);
    url
}

/// Turns a request of the tower stack into one reqwest can send to `url`.
///
/// Extensions travel with the request, so a per-request timeout set on the
/// caller's `reqwest::RequestBuilder` still applies. A `Host` header is
/// dropped: reqwest addresses the request by its URL and writes the right one.
pub(crate) fn into_reqwest(
    request: http::Request<ReplayBody>,
    url: &Url,
) -> Result<reqwest::Request, ClaudeError> {
    let (mut parts, body) = request.into_parts();
    parts.uri = url.as_str().parse::<Uri>().map_err(|e| {
        ClaudeError::new(ErrorClass::RouteUnavailable, "route URL is not a valid URI")
            .with_source(e)
    })?;
    parts.headers.remove(HOST);
    let body: Bytes = body.into_bytes();
    let request = http::Request::from_parts(parts, body);
    reqwest::Request::try_from(request).map_err(classify_reqwest_error)
}

/// Turns reqwest's response into an `http` one, keeping its URL so that a
/// `reqwest::Response` rebuilt from it reports the URL that answered.
pub(crate) fn from_reqwest(response: reqwest::Response) -> http::Response<reqwest::Body> {
    let url = response.url().clone();
    let mut response = http::Response::<reqwest::Body>::from(response);
    remember_url(response.extensions_mut(), url);
    response
}

/// Records `url` where `reqwest::Response::from(http::Response)` looks for
/// it. reqwest keeps that extension type private and only sets it through
/// `ResponseBuilderExt::url`, so it is made on an empty builder and moved.
pub(crate) fn remember_url(extensions: &mut Extensions, url: Url) {
    if let Ok(carrier) = http::Response::builder().url(url).body(()) {
        extensions.extend(carrier.into_parts().0.extensions);
    }
}

/// Classifies a reqwest error: a timeout is [`ErrorClass::Timeout`], a
/// request reqwest could not build (a header or URL it refuses) is
/// [`ErrorClass::RouteUnavailable`] (this route cannot send it; another may),
/// and everything else is [`ErrorClass::Transport`], named from the most
/// telling error in its source chain. The reqwest error is kept as the
/// [`source`](std::error::Error::source), so `is_timeout` and `is_connect`
/// stay reachable.
pub(crate) fn classify_reqwest_error(err: reqwest::Error) -> ClaudeError {
    if err.is_timeout() {
        ClaudeError::new(ErrorClass::Timeout, "request timed out").with_source(err)
    } else if err.is_builder() {
        ClaudeError::new(
            ErrorClass::RouteUnavailable,
            "reqwest could not build the request",
        )
        .with_source(err)
    } else if err.is_connect() {
        ClaudeError::new(ErrorClass::Transport, "connect failed").with_source(err)
    } else {
        claude_tower_normalize::transport_error(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn rebases_path_and_query_on_the_base_path() {
        let base = url("https://res.services.ai.azure.com/anthropic");
        let uri: Uri = "/v1/messages?beta=true".parse().unwrap();
        assert_eq!(
            target_url(&uri, Some(&base)).unwrap().as_str(),
            "https://res.services.ai.azure.com/anthropic/v1/messages?beta=true"
        );
        let base = url("https://api.anthropic.com/");
        let uri: Uri = "http://gateway.local:8080/v1/messages".parse().unwrap();
        assert_eq!(
            target_url(&uri, Some(&base)).unwrap().as_str(),
            "https://api.anthropic.com/v1/messages"
        );
    }

    #[test]
    fn without_a_base_the_uri_must_be_absolute() {
        let uri: Uri = "https://api.anthropic.com/v1/messages".parse().unwrap();
        assert_eq!(
            target_url(&uri, None).unwrap().as_str(),
            "https://api.anthropic.com/v1/messages"
        );
        let err = target_url(&"/v1/messages".parse().unwrap(), None).unwrap_err();
        assert_eq!(err.class(), ErrorClass::RouteUnavailable);
        assert!(!err.retryable());
    }

    #[test]
    fn converts_requests_keeping_headers_and_dropping_host() {
        let request = http::Request::post("/v1/messages")
            .header("x-api-key", "k")
            .header("host", "gateway.local")
            .body(ReplayBody::from("{}"))
            .unwrap();
        let target = url("http://127.0.0.1:9/v1/messages");
        let request = into_reqwest(request, &target).unwrap();
        assert_eq!(request.url(), &target);
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.headers()["x-api-key"], "k");
        assert!(request.headers().get("host").is_none());
        assert_eq!(
            request.body().and_then(reqwest::Body::as_bytes),
            Some(&b"{}"[..])
        );
    }

    #[test]
    fn keeps_the_url_of_a_response() {
        let response = http::Response::new(reqwest::Body::from("ok"));
        let (mut parts, body) = response.into_parts();
        remember_url(&mut parts.extensions, url("http://127.0.0.1:9/x"));
        let response = reqwest::Response::from(http::Response::from_parts(parts, body));
        assert_eq!(response.url().as_str(), "http://127.0.0.1:9/x");
    }
}
