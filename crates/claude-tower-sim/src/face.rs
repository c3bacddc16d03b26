//! How each face shapes its answers: error envelopes, ids and headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use claude_tower_core::{ErrorClass, Face, headers};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use crate::body::SimBody;
use crate::fault::{RetryHint, Step};

/// The ids one request was given.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    /// Anthropic's `request-id` (`req_sim_...`); Foundry's backend also sends one on success.
    pub(crate) anthropic: String,
    /// Azure's `apim-request-id` / `x-ms-request-id` (uuid-shaped).
    pub(crate) azure: String,
}

impl Ids {
    pub(crate) fn new(n: u64) -> Self {
        Self {
            anthropic: format!("req_sim_{n:016x}"),
            azure: format!(
                "{:08x}-0000-4000-8000-{:012x}",
                n >> 48,
                n & 0xffff_ffff_ffff
            ),
        }
    }

    /// The id the request log keeps for `face`.
    pub(crate) fn primary(&self, face: Face) -> &str {
        match face {
            Face::Anthropic => &self.anthropic,
            Face::Foundry => &self.azure,
        }
    }
}

/// Adds the ids and fixed headers every answer of `face` carries.
pub(crate) fn stamp(face: Face, ids: &Ids, success: bool, h: &mut HeaderMap) {
    match face {
        Face::Anthropic => {
            insert(h, headers::REQUEST_ID, &ids.anthropic);
            h.insert(
                "anthropic-ratelimit-requests-limit",
                HeaderValue::from_static("4000"),
            );
            h.insert(
                "anthropic-ratelimit-requests-remaining",
                HeaderValue::from_static("3999"),
            );
        }
        Face::Foundry => {
            insert(h, headers::APIM_REQUEST_ID, &ids.azure);
            insert(h, headers::X_MS_REQUEST_ID, &ids.azure);
            if success {
                // The Anthropic backend behind Foundry hands out its own id too.
                insert(h, headers::REQUEST_ID, &ids.anthropic);
            }
        }
    }
}

fn insert(h: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[derive(Serialize)]
struct AnthropicEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicInner<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
struct AnthropicInner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct AzureEnvelope<'a> {
    error: AzureInner<'a>,
}

#[derive(Serialize)]
struct AzureInner<'a> {
    code: &'a str,
    message: &'a str,
}

/// An error as `face` renders it.
///
/// `code` is the Azure `error.code` (Foundry) and is ignored on the Anthropic
/// face, whose `error.type` follows the status
/// ([`ErrorClass::anthropic_error_type`]) unless `anthropic_type` is given.
#[derive(Debug)]
pub(crate) struct Failure<'a> {
    pub(crate) status: StatusCode,
    pub(crate) message: &'a str,
    pub(crate) code: Option<&'a str>,
    pub(crate) anthropic_type: Option<&'a str>,
}

impl<'a> Failure<'a> {
    pub(crate) fn new(status: u16, message: &'a str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
            code: None,
            anthropic_type: None,
        }
    }

    pub(crate) fn code(mut self, code: &'a str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn anthropic_type(mut self, kind: &'a str) -> Self {
        self.anthropic_type = Some(kind);
        self
    }

    pub(crate) fn render(&self, face: Face, ids: &Ids) -> Response<SimBody> {
        let body = match face {
            Face::Anthropic => {
                let kind = self.anthropic_type.unwrap_or_else(|| {
                    ErrorClass::from_status(self.status)
                        .map(|c| c.anthropic_error_type(self.status))
                        .unwrap_or("api_error")
                });
                serde_json::to_vec(&AnthropicEnvelope {
                    kind: "error",
                    error: AnthropicInner {
                        kind,
                        message: self.message,
                    },
                    request_id: &ids.anthropic,
                })
            }
            Face::Foundry => {
                let status_code = self.status.as_u16().to_string();
                serde_json::to_vec(&AzureEnvelope {
                    error: AzureInner {
                        code: self.code.unwrap_or(&status_code),
                        message: self.message,
                    },
                })
            }
        };
        let mut res = Response::new(SimBody::full(Bytes::from(body.unwrap_or_default())));
        *res.status_mut() = self.status;
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        stamp(face, ids, false, h);
        res
    }
}

/// The answer to a fault step that fails the request on its own
/// (`None` for steps that answer normally, stream, or reset).
pub(crate) fn fault_response(
    step: Step,
    face: Face,
    ids: &Ids,
    model: &str,
) -> Option<Response<SimBody>> {
    let res = match (step, face) {
        (Step::RateLimited(hint), _) => return Some(rate_limited(hint, face, ids)),
        (Step::Status(s), Face::Anthropic) => {
            let msg = match s {
                529 | 503 => "Overloaded",
                500 => "Internal server error",
                502 => "Bad gateway",
                504 => "Request timed out",
                400 => "Invalid request (simulated)",
                401 => "invalid x-api-key",
                403 => "Your API key does not have permission to use the specified resource.",
                _ => "Simulated failure",
            };
            Failure::new(s, msg).render(face, ids)
        }
        (Step::Status(s), Face::Foundry) => {
            let (code, msg) = match s {
                503 | 529 => (
                    None,
                    "The service is temporarily unable to process your request. Please try again later.",
                ),
                500 => (None, "The server had an error while processing your request."),
                502 => (None, "Bad gateway."),
                504 => (None, "The operation was timeout."),
                400 => (None, "Invalid request (simulated)."),
                401 => (None, UNAUTHORIZED_KEY_FOUNDRY),
                403 => (
                    Some("PermissionDenied"),
                    "The principal lacks the required data action to perform this operation.",
                ),
                _ => (None, "Simulated failure."),
            };
            let mut f = Failure::new(s, msg);
            f.code = code;
            f.render(face, ids)
        }
        (Step::DeploymentNotFound, Face::Anthropic) => {
            let msg = format!("model: {model}");
            Failure::new(404, &msg).render(face, ids)
        }
        (Step::DeploymentNotFound, Face::Foundry) => Failure::new(
            404,
            "The API deployment for this resource does not exist. If you created the deployment \
             within the last 5 minutes, please wait a moment and try again.",
        )
        .code("DeploymentNotFound")
        .render(face, ids),
        (Step::TransientAuth, Face::Anthropic) => {
            Failure::new(401, "invalid x-api-key").render(face, ids)
        }
        (Step::TransientAuth, Face::Foundry) => Failure::new(
            401,
            "Failed to authenticate to the model endpoint. This is usually transient; please retry.",
        )
        .code("invalid_model_endpoint_authentication")
        .render(face, ids),
        _ => return None,
    };
    Some(res)
}

/// The overload error a non-streaming `stream-error` step answers with.
pub(crate) fn overloaded(face: Face, ids: &Ids) -> Response<SimBody> {
    match face {
        Face::Anthropic => Failure::new(529, "Overloaded").render(face, ids),
        Face::Foundry => fault_response(Step::Status(503), face, ids, "")
            .unwrap_or_else(|| Failure::new(503, "Overloaded").render(face, ids)),
    }
}

fn rate_limited(hint: RetryHint, face: Face, ids: &Ids) -> Response<SimBody> {
    let wait = match hint {
        RetryHint::None => None,
        RetryHint::Seconds(d) | RetryHint::Date(d) => Some(d),
        RetryHint::Millis(ms) | RetryHint::XMsMillis(ms) => Some(Duration::from_millis(ms)),
    };
    let mut res = match face {
        Face::Anthropic => Failure::new(
            429,
            "This request would exceed your organization's rate limit (simulated). Please retry later.",
        )
        .render(face, ids),
        Face::Foundry => {
            let msg = match wait {
                Some(d) => format!(
                    "Requests to the Anthropic Messages API under the current AIServices pricing tier have \
                     exceeded the call rate limit. Please retry after {} seconds.",
                    d.as_secs_f64().ceil() as u64
                ),
                None => "Requests to the Anthropic Messages API under the current AIServices pricing tier \
                         have exceeded the call rate limit. Please retry later."
                    .to_owned(),
            };
            Failure::new(429, &msg).render(face, ids)
        }
    };
    let h = res.headers_mut();
    let value = match hint {
        RetryHint::None => return res,
        RetryHint::Seconds(d) => (headers::RETRY_AFTER, seconds_text(d)),
        RetryHint::Date(d) => (headers::RETRY_AFTER, http_date_after(d)),
        RetryHint::Millis(ms) => (headers::RETRY_AFTER_MS, ms.to_string()),
        RetryHint::XMsMillis(ms) => (headers::X_MS_RETRY_AFTER_MS, ms.to_string()),
    };
    insert(h, value.0, &value.1);
    res
}

fn seconds_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

/// An HTTP-date at least `d` from now (rounded up to the whole second, since
/// the format has no fractions).
fn http_date_after(d: Duration) -> String {
    let target = SystemTime::now() + d;
    let nanos = target
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let target = if nanos > 0 {
        target + Duration::from_nanos(u64::from(1_000_000_000 - nanos))
    } else {
        target
    };
    httpdate::fmt_http_date(target)
}

/// Foundry's 401 for a wrong key.
pub(crate) const UNAUTHORIZED_KEY_FOUNDRY: &str = "Access denied due to invalid subscription key or wrong API endpoint. \
     Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";
/// Foundry's 401 for no credential at all.
pub(crate) const MISSING_KEY_FOUNDRY: &str = "Access denied due to missing subscription key. \
     Make sure to include subscription key when making requests to an API.";
/// Foundry's 401 for a bad Entra token.
pub(crate) const UNAUTHORIZED_TOKEN_FOUNDRY: &str = "Unauthorized. Access token is missing, invalid, \
     audience is incorrect (https://cognitiveservices.azure.com/ or https://ai.azure.com/), or have expired.";
/// Anthropic's 401 for a wrong key.
pub(crate) const UNAUTHORIZED_KEY_ANTHROPIC: &str = "invalid x-api-key";
/// Anthropic's 401 for no key.
pub(crate) const MISSING_KEY_ANTHROPIC: &str = "x-api-key header is required";
