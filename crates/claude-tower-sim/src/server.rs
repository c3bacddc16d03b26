//! The HTTP side: routing, auth, fault steps and the answers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
use claude_tower_core::{Face, headers};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::{self, SimBody};
use crate::config::SimConfig;
use crate::face::{self, Failure, Ids};
use crate::fault::{FaultScript, FaultScriptError, Queue, Step};
use crate::log::{Credential, RecordedRequest, RequestLog};
use crate::messages::{Answer, Ending, Endpoint, MessagesRequest, input_tokens};
use crate::tls::ConnectionCounters;

/// The header that asks for about N bytes of streamed text.
pub(crate) const STREAM_BYTES: &str = "x-sim-stream-bytes";
/// Largest `x-sim-stream-bytes` honoured (1 GiB).
const MAX_STREAM_BYTES: usize = 1 << 30;

/// The error a service returns to make hyper drop the connection (`reset`).
#[derive(Debug)]
pub(crate) struct SimulatedReset;

impl fmt::Display for SimulatedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for SimulatedReset {}

#[derive(Debug)]
struct State {
    anthropic: Queue,
    foundry: Queue,
    log: RequestLog,
}

/// What every connection shares.
pub(crate) struct Shared {
    anthropic_key: Option<String>,
    foundry_key: Option<String>,
    foundry_token: Option<String>,
    body_limit: usize,
    state: Mutex<State>,
    next_id: AtomicU64,
    pub(crate) connections: ConnectionCounters,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(config: &SimConfig, script: &FaultScript) -> Self {
        Self {
            anthropic_key: config.anthropic_key.clone(),
            foundry_key: config.foundry_key.clone(),
            foundry_token: config.foundry_token.clone(),
            body_limit: config.body_limit,
            state: Mutex::new(State {
                anthropic: Queue::new(script.steps(Face::Anthropic)),
                foundry: Queue::new(script.steps(Face::Foundry)),
                log: RequestLog::new(config.log_capacity),
            }),
            next_id: AtomicU64::new(1),
            connections: ConnectionCounters::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the simulator down: the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_faults(&self, script: &str) -> Result<(), FaultScriptError> {
        let script = FaultScript::parse(script)?;
        let mut state = self.state();
        state.anthropic = Queue::new(script.steps(Face::Anthropic));
        state.foundry = Queue::new(script.steps(Face::Foundry));
        Ok(())
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.state().log.snapshot()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.state().log.dropped()
    }

    pub(crate) fn reset(&self) {
        let mut state = self.state();
        state.anthropic = Queue::default();
        state.foundry = Queue::default();
        state.log.clear();
    }

    fn next_step(&self, face: Face) -> Step {
        let mut state = self.state();
        match face {
            Face::Anthropic => state.anthropic.next(face),
            Face::Foundry => state.foundry.next(face),
        }
    }

    fn record(&self, record: RecordedRequest) {
        self.state().log.push(record);
    }
}

/// Serves one request.
pub(crate) async fn handle<B>(
    shared: &Shared,
    req: Request<B>,
) -> Result<Response<SimBody>, SimulatedReset>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path();
    let route = match (req.method(), path) {
        (&Method::POST, "/v1/messages") => Some((Face::Anthropic, Endpoint::Messages)),
        (&Method::POST, "/v1/messages/count_tokens") => {
            Some((Face::Anthropic, Endpoint::CountTokens))
        }
        (&Method::POST, "/anthropic/v1/messages") => Some((Face::Foundry, Endpoint::Messages)),
        (&Method::POST, "/anthropic/v1/messages/count_tokens") => {
            Some((Face::Foundry, Endpoint::CountTokens))
        }
        _ => None,
    };
    if let Some((face, endpoint)) = route {
        return api(shared, face, endpoint, req).await;
    }
    if path.starts_with("/_sim/") {
        return Ok(control(shared, req).await);
    }
    let face = if path.starts_with("/anthropic/") {
        Face::Foundry
    } else {
        Face::Anthropic
    };
    let ids = Ids::new(shared.next_id.fetch_add(1, Ordering::Relaxed));
    let mut record = Record::new(face, &req, &ids, 0);
    let res = match face {
        Face::Anthropic => Failure::new(404, "Not Found").render(face, &ids),
        Face::Foundry => Failure::new(404, "Resource not found").render(face, &ids),
    };
    record.status = res.status().as_u16();
    shared.record(record.finish(None));
    Ok(res)
}

/// The `/_sim/*` control endpoints.
async fn control<B>(shared: &Shared, req: Request<B>) -> Response<SimBody>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let text = |status: StatusCode, body: String| {
        let mut res = Response::new(SimBody::full(body));
        *res.status_mut() = status;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    };
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/_sim/requests") => {
            let (records, dropped) = (shared.requests(), shared.dropped());
            let mut res = Response::new(SimBody::full(
                serde_json::to_vec(&records).unwrap_or_default(),
            ));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res.headers_mut().insert("x-sim-dropped", dropped.into());
            res
        }
        (Method::POST, "/_sim/faults") => {
            let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable body\n".into()),
            };
            let script = String::from_utf8_lossy(&body);
            match shared.set_faults(script.trim()) {
                Ok(()) => text(StatusCode::NO_CONTENT, String::new()),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        (Method::POST, "/_sim/reset") => {
            shared.reset();
            text(StatusCode::NO_CONTENT, String::new())
        }
        (Method::GET, "/_sim/health") => text(StatusCode::OK, "ok\n".into()),
        (Method::GET, "/_sim/connections") => {
            let stats = shared.connections.snapshot();
            json_response(serde_json::to_vec(&stats).unwrap_or_default())
        }
        _ => text(StatusCode::NOT_FOUND, "unknown simulator endpoint\n".into()),
    }
}

/// A record being filled in while a request is served.
struct Record {
    inner: RecordedRequest,
    status: u16,
}

impl Record {
    fn new<B>(face: Face, req: &Request<B>, ids: &Ids, body_len: usize) -> Self {
        let h = req.headers();
        let text = |name: &http::HeaderName| {
            h.get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Self {
            inner: RecordedRequest {
                route: face,
                path: req.uri().path().to_owned(),
                query: req.uri().query().map(str::to_owned),
                model: None,
                stream: false,
                credential: Credential::None,
                credentials_present: credentials_present(h),
                accepted: false,
                anthropic_version: text(&headers::ANTHROPIC_VERSION),
                anthropic_beta: text(&headers::ANTHROPIC_BETA),
                step: "-".to_owned(),
                status: 0,
                body_len,
                request_id: ids.primary(face).to_owned(),
            },
            status: 0,
        }
    }

    fn finish(mut self, step: Option<Step>) -> RecordedRequest {
        self.inner.status = self.status;
        if let Some(step) = step {
            self.inner.step = step.to_string();
        }
        self.inner
    }
}

fn credentials_present(h: &HeaderMap) -> Vec<Credential> {
    let mut out = Vec::new();
    if h.contains_key(headers::X_API_KEY) {
        out.push(Credential::XApiKey);
    }
    if h.contains_key(headers::API_KEY) {
        out.push(Credential::ApiKey);
    }
    if h.contains_key(headers::AUTHORIZATION) {
        out.push(Credential::Bearer);
    }
    out
}

/// Why a credential was refused.
enum AuthFailure {
    Missing,
    WrongKey,
    WrongToken,
}

/// Checks the credential as `face` does. Anthropic looks at `x-api-key` only;
/// Foundry takes the first of `x-api-key`, `api-key`, `Authorization: Bearer`.
fn check_auth(shared: &Shared, face: Face, h: &HeaderMap) -> (Credential, Result<(), AuthFailure>) {
    let key_ok = |v: &HeaderValue, expected: &Option<String>| match expected {
        Some(e) => v.as_bytes() == e.as_bytes(),
        None => !v.as_bytes().trim_ascii().is_empty(),
    };
    match face {
        Face::Anthropic => match h.get(headers::X_API_KEY) {
            None => (Credential::None, Err(AuthFailure::Missing)),
            Some(v) if key_ok(v, &shared.anthropic_key) => (Credential::XApiKey, Ok(())),
            Some(_) => (Credential::XApiKey, Err(AuthFailure::WrongKey)),
        },
        Face::Foundry => {
            for (name, kind) in [
                (headers::X_API_KEY, Credential::XApiKey),
                (headers::API_KEY, Credential::ApiKey),
            ] {
                if let Some(v) = h.get(name) {
                    let ok = key_ok(v, &shared.foundry_key);
                    return (
                        kind,
                        if ok {
                            Ok(())
                        } else {
                            Err(AuthFailure::WrongKey)
                        },
                    );
                }
            }
            match h.get(headers::AUTHORIZATION) {
                None => (Credential::None, Err(AuthFailure::Missing)),
                Some(v) => {
                    let token = v
                        .to_str()
                        .ok()
                        .and_then(|s| {
                            s.strip_prefix("Bearer ")
                                .or_else(|| s.strip_prefix("bearer "))
                        })
                        .map(str::trim);
                    let ok = match (token, &shared.foundry_token) {
                        (Some(t), Some(expected)) => t == expected,
                        (Some(t), None) => !t.is_empty(),
                        (None, _) => false,
                    };
                    (
                        Credential::Bearer,
                        if ok {
                            Ok(())
                        } else {
                            Err(AuthFailure::WrongToken)
                        },
                    )
                }
            }
        }
    }
}

fn auth_failure(face: Face, failure: AuthFailure, ids: &Ids) -> Response<SimBody> {
    let message = match (face, failure) {
        (Face::Anthropic, AuthFailure::Missing) => face::MISSING_KEY_ANTHROPIC,
        (Face::Anthropic, _) => face::UNAUTHORIZED_KEY_ANTHROPIC,
        (Face::Foundry, AuthFailure::Missing) => face::MISSING_KEY_FOUNDRY,
        (Face::Foundry, AuthFailure::WrongKey) => face::UNAUTHORIZED_KEY_FOUNDRY,
        (Face::Foundry, AuthFailure::WrongToken) => face::UNAUTHORIZED_TOKEN_FOUNDRY,
    };
    Failure::new(401, message).render(face, ids)
}

/// A Messages or count_tokens request on one face.
async fn api<B>(
    shared: &Shared,
    face: Face,
    endpoint: Endpoint,
    req: Request<B>,
) -> Result<Response<SimBody>, SimulatedReset>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let ids = Ids::new(shared.next_id.fetch_add(1, Ordering::Relaxed));
    let mut record = Record::new(face, &req, &ids, 0);
    let (credential, auth) = check_auth(shared, face, req.headers());
    record.inner.credential = credential;
    record.inner.accepted = auth.is_ok();
    let stream_bytes = req
        .headers()
        .get(STREAM_BYTES)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|n| n.min(MAX_STREAM_BYTES));

    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        Failure::new(413, "Request exceeds the maximum allowed number of bytes.")
            .anthropic_type("request_too_large")
            .render(face, &ids)
    };
    if declared.is_some_and(|n| n > shared.body_limit as u64) {
        let res = too_large();
        record.status = 413;
        shared.record(record.finish(None));
        return Ok(res);
    }
    let body = match Limited::new(req.into_body(), shared.body_limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let res = too_large();
            record.status = 413;
            shared.record(record.finish(None));
            return Ok(res);
        }
        // The client went away mid-body: nobody to answer.
        Err(_) => return Err(SimulatedReset),
    };
    record.inner.body_len = body.len();
    let parsed = MessagesRequest::parse(&body);
    if let Ok(p) = &parsed {
        record.inner.model = p.model.clone();
        record.inner.stream = p.stream.unwrap_or(false);
    }

    if let Err(failure) = auth {
        let res = auth_failure(face, failure, &ids);
        record.status = res.status().as_u16();
        shared.record(record.finish(None));
        return Ok(res);
    }
    if record.inner.anthropic_version.is_none() {
        let res = Failure::new(400, "anthropic-version: header is required").render(face, &ids);
        record.status = 400;
        shared.record(record.finish(None));
        return Ok(res);
    }

    let step = shared.next_step(face);
    let model = record.inner.model.clone().unwrap_or_default();
    let gap = match step {
        Step::Reset => {
            shared.record(record.finish(Some(step)));
            return Err(SimulatedReset);
        }
        Step::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Step::SlowStream(d) => Some(d),
        _ => None,
    };
    if let Some(res) = face::fault_response(step, face, &ids, &model) {
        record.status = res.status().as_u16();
        shared.record(record.finish(Some(step)));
        return Ok(res);
    }

    let request = match parsed.and_then(|p| p.validate(endpoint).map(|()| p)) {
        Ok(p) => p,
        Err(message) => {
            let res = Failure::new(400, &message).render(face, &ids);
            record.status = 400;
            shared.record(record.finish(Some(step)));
            return Ok(res);
        }
    };

    let streaming = request.stream.unwrap_or(false) && endpoint == Endpoint::Messages;
    let mut res = match endpoint {
        Endpoint::CountTokens => {
            let count = serde_json::json!({"input_tokens": input_tokens(body.len())});
            json_response(serde_json::to_vec(&count).unwrap_or_default())
        }
        Endpoint::Messages
            if matches!(step, Step::StreamError | Step::StreamErrorEarly) && !streaming =>
        {
            let res = face::overloaded(face, &ids);
            record.status = res.status().as_u16();
            shared.record(record.finish(Some(step)));
            return Ok(res);
        }
        Endpoint::Messages => {
            let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let answer = Answer {
                message_id: format!("msg_sim_{n:016x}"),
                model,
                input_tokens: input_tokens(body.len()),
                text: match stream_bytes {
                    Some(bytes) if streaming => body::filler(bytes),
                    _ => crate::body::TextSource::Words(&body::DEFAULT_WORDS),
                },
                tool: request
                    .tool_to_call()
                    .map(|name| (format!("toolu_sim_{n:016x}"), name)),
            };
            if streaming {
                let ending = match step {
                    Step::StreamError => Ending::ErrorAfterContent,
                    Step::StreamErrorEarly => Ending::ErrorBeforeContent,
                    _ => Ending::Complete,
                };
                let sse = answer.stream(ending, gap);
                let mut res = Response::new(SimBody::Sse(Box::new(sse)));
                let h = res.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                res
            } else {
                json_response(answer.message_json())
            }
        }
    };
    face::stamp(face, &ids, true, res.headers_mut());
    record.status = 200;
    shared.record(record.finish(Some(step)));
    Ok(res)
}

fn json_response(body: Vec<u8>) -> Response<SimBody> {
    let mut res = Response::new(SimBody::full(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
