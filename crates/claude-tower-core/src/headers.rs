//! Header names both routes use, in one place so every layer spells them alike.

use http::HeaderName;

/// `retry-after`: seconds (integer or decimal) or an HTTP-date.
pub const RETRY_AFTER: HeaderName = http::header::RETRY_AFTER;
/// `retry-after-ms`: milliseconds (Foundry, and the canonical header we write).
pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
/// `x-ms-retry-after-ms`: milliseconds (Azure).
pub const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
/// `x-should-retry: true|false`: the server's override of "retry this route".
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// `request-id`: Anthropic's request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// `apim-request-id`: Azure API Management's request id.
pub const APIM_REQUEST_ID: HeaderName = HeaderName::from_static("apim-request-id");
/// `x-ms-request-id`: Azure's request id.
pub const X_MS_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
/// `x-request-id`: a generic proxy request id.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `anthropic-version`, required by both routes.
pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
/// `anthropic-beta`: comma-separated beta flags.
pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
/// The API version both routes speak.
pub const ANTHROPIC_VERSION_VALUE: &str = "2023-06-01";

/// `x-api-key`: the key header of Anthropic direct, also accepted by Foundry.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// `api-key`: Azure's key header.
pub const API_KEY: HeaderName = HeaderName::from_static("api-key");
/// `authorization`: `Bearer <token>` (Entra ID on Foundry).
pub const AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;

/// Every header that may carry a credential. Auth removes all of them from an
/// inbound request before injecting the route's own.
pub const CREDENTIAL_HEADERS: [HeaderName; 3] = [X_API_KEY, API_KEY, AUTHORIZATION];
