//! The fault script: its grammar, its parser and the per-route queues of steps.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use claude_tower_core::Face;

/// How a `429` step tells the client when to come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryHint {
    /// No retry header at all (`429`).
    None,
    /// `retry-after: N` in seconds, integer or decimal (`429:2s`, `429:1.5s`).
    Seconds(Duration),
    /// `retry-after: <HTTP-date>` this far ahead (`429:date+2s`).
    Date(Duration),
    /// `retry-after-ms: N` (`429:ms1500`).
    Millis(u64),
    /// `x-ms-retry-after-ms: N` (`429:xms1500`).
    XMsMillis(u64),
}

/// One step of a fault script: how the simulator answers one request.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// Answer normally.
    Ok,
    /// 429 with the given retry hint.
    RateLimited(RetryHint),
    /// Answer with this error status (`529`, `503`, `500`, `502`, `504`, `400`, `401`, `403`).
    Status(u16),
    /// 404: Foundry `DeploymentNotFound`; Anthropic `not_found_error` for the model.
    DeploymentNotFound,
    /// Foundry 401 `invalid_model_endpoint_authentication`.
    TransientAuth,
    /// Drop the connection before any response.
    Reset,
    /// Wait this long (tokio time), then answer normally.
    Delay(Duration),
    /// 200 and a few events, then `event: error` (overloaded); non-streaming: the face's overload error.
    StreamError,
    /// 200, `message_start` and a `ping`, then `event: error` (overloaded) before any content;
    /// non-streaming: the face's overload error.
    StreamErrorEarly,
    /// A normal stream with this gap between events.
    SlowStream(Duration),
    /// A seeded random mix of retryable faults, each with probability `p` (never a step itself
    /// in the log: the drawn step is recorded).
    Random {
        /// Probability that a request gets a fault.
        p: f64,
        /// Seed of the generator.
        seed: u64,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Step::Ok => f.write_str("ok"),
            Step::RateLimited(RetryHint::None) => f.write_str("429"),
            Step::RateLimited(RetryHint::Seconds(d)) => write!(f, "429:{}s", secs(d)),
            Step::RateLimited(RetryHint::Date(d)) => write!(f, "429:date+{}s", secs(d)),
            Step::RateLimited(RetryHint::Millis(ms)) => write!(f, "429:ms{ms}"),
            Step::RateLimited(RetryHint::XMsMillis(ms)) => write!(f, "429:xms{ms}"),
            Step::Status(s) => write!(f, "{s}"),
            Step::DeploymentNotFound => f.write_str("404:deployment"),
            Step::TransientAuth => f.write_str("transient-auth"),
            Step::Reset => f.write_str("reset"),
            Step::Delay(d) => write!(f, "delay:{}ms", d.as_millis()),
            Step::StreamError => f.write_str("stream-error"),
            Step::StreamErrorEarly => f.write_str("stream-error:early"),
            Step::SlowStream(d) => write!(f, "slow-stream:{}ms", d.as_millis()),
            Step::Random { p, seed } => write!(f, "random(p={p},seed={seed})"),
        }
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{s}")
    }
}

/// A fault script that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultScriptError {
    message: String,
}

impl FaultScriptError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for FaultScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid fault script: {}", self.message)
    }
}

impl std::error::Error for FaultScriptError {}

/// A parsed fault script: the steps for each route, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultScript {
    /// Steps for the Anthropic face, with their repeat counts (`None` = forever).
    anthropic: Vec<(Step, Option<u64>)>,
    /// Steps for the Foundry face.
    foundry: Vec<(Step, Option<u64>)>,
}

impl FaultScript {
    /// Parses `anthropic=STEP,...;foundry=STEP,...` (see the crate docs).
    ///
    /// A part without `route=` applies to both routes. An empty script is valid
    /// and means "every request succeeds".
    pub fn parse(script: &str) -> Result<Self, FaultScriptError> {
        let mut out = FaultScript::default();
        for part in script.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (routes, steps) = match part.split_once('=') {
                // `random(p=..)` holds `=` too: only a plain word before `=` is a route.
                Some((route, steps)) if !route.contains('(') => {
                    let route = route.trim();
                    let face = match route.to_ascii_lowercase().as_str() {
                        "anthropic" => Face::Anthropic,
                        "foundry" => Face::Foundry,
                        _ => {
                            return Err(FaultScriptError::new(format!(
                                "unknown route `{route}` (expected `anthropic` or `foundry`)"
                            )));
                        }
                    };
                    (vec![face], steps)
                }
                _ => (vec![Face::Anthropic, Face::Foundry], part),
            };
            let parsed = parse_steps(steps)?;
            for face in routes {
                match face {
                    Face::Anthropic => out.anthropic.extend(parsed.iter().copied()),
                    Face::Foundry => out.foundry.extend(parsed.iter().copied()),
                }
            }
        }
        Ok(out)
    }

    /// The steps for `face`, with repeat counts (`None`: repeats forever).
    pub fn steps(&self, face: Face) -> &[(Step, Option<u64>)] {
        match face {
            Face::Anthropic => &self.anthropic,
            Face::Foundry => &self.foundry,
        }
    }
}

fn parse_steps(s: &str) -> Result<Vec<(Step, Option<u64>)>, FaultScriptError> {
    let mut out = Vec::new();
    for item in split_top_level(s) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (step, count) = match item.rsplit_once('*') {
            Some((step, n)) if !n.contains(')') => {
                let n: u64 = n
                    .trim()
                    .parse()
                    .map_err(|_| FaultScriptError::new(format!("bad repeat count in `{item}`")))?;
                (step.trim(), Some(n))
            }
            _ => (item, None),
        };
        let step = parse_step(step)?;
        let count = match (step, count) {
            (_, Some(n)) => Some(n),
            // A bare `random(..)` goes on forever; any other bare step happens once.
            (Step::Random { .. }, None) => None,
            (_, None) => Some(1),
        };
        if count != Some(0) {
            out.push((step, count));
        }
    }
    Ok(out)
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_step(s: &str) -> Result<Step, FaultScriptError> {
    let bad = || FaultScriptError::new(format!("unknown step `{s}`"));
    let lower = s.to_ascii_lowercase();
    let step = match lower.as_str() {
        "ok" => Step::Ok,
        "429" => Step::RateLimited(RetryHint::None),
        "529" | "503" | "500" | "502" | "504" | "400" | "401" | "403" => {
            Step::Status(lower.parse().map_err(|_| bad())?)
        }
        "404:deployment" => Step::DeploymentNotFound,
        "transient-auth" => Step::TransientAuth,
        "reset" => Step::Reset,
        "stream-error" => Step::StreamError,
        "stream-error:early" => Step::StreamErrorEarly,
        _ => {
            if let Some(hint) = lower.strip_prefix("429:") {
                Step::RateLimited(parse_hint(hint).ok_or_else(bad)?)
            } else if let Some(d) = lower.strip_prefix("delay:") {
                Step::Delay(parse_duration(d).ok_or_else(bad)?)
            } else if let Some(d) = lower.strip_prefix("slow-stream:") {
                Step::SlowStream(parse_duration(d).ok_or_else(bad)?)
            } else if let Some(args) = lower
                .strip_prefix("random(")
                .and_then(|a| a.strip_suffix(')'))
            {
                parse_random(args).ok_or_else(bad)?
            } else {
                return Err(bad());
            }
        }
    };
    Ok(step)
}

fn parse_hint(s: &str) -> Option<RetryHint> {
    if let Some(ms) = s.strip_prefix("xms") {
        return ms.parse().ok().map(RetryHint::XMsMillis);
    }
    if let Some(ms) = s.strip_prefix("ms") {
        return ms.parse().ok().map(RetryHint::Millis);
    }
    if let Some(d) = s.strip_prefix("date+") {
        return parse_seconds(d).map(RetryHint::Date);
    }
    parse_seconds(s).map(RetryHint::Seconds)
}

/// `2s`, `1.5s`: seconds with an `s` suffix.
fn parse_seconds(s: &str) -> Option<Duration> {
    let n: f64 = s.strip_suffix('s')?.parse().ok()?;
    (n.is_finite() && (0.0..=86_400.0).contains(&n)).then(|| Duration::from_secs_f64(n))
}

/// `300ms`, `2s`, `1.5s`.
fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        let ms: u64 = ms.parse().ok()?;
        return (ms <= 86_400_000).then(|| Duration::from_millis(ms));
    }
    parse_seconds(s)
}

fn parse_random(args: &str) -> Option<Step> {
    let mut p = None;
    let mut seed = 0;
    for kv in args.split(',') {
        let (k, v) = kv.split_once('=')?;
        match k.trim() {
            "p" => {
                let v: f64 = v.trim().parse().ok()?;
                if !(0.0..=1.0).contains(&v) {
                    return None;
                }
                p = Some(v);
            }
            "seed" => seed = v.trim().parse().ok()?,
            _ => return None,
        }
    }
    Some(Step::Random { p: p?, seed })
}

// === impl Queue ===

/// The live state of one route's script.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    steps: VecDeque<Live>,
}

#[derive(Debug)]
struct Live {
    step: Step,
    remaining: Option<u64>,
    rng: Option<fastrand::Rng>,
}

impl Queue {
    pub(crate) fn new(steps: &[(Step, Option<u64>)]) -> Self {
        let steps = steps
            .iter()
            .map(|&(step, remaining)| Live {
                step,
                remaining,
                rng: match step {
                    Step::Random { seed, .. } => Some(fastrand::Rng::with_seed(seed)),
                    _ => None,
                },
            })
            .collect();
        Self { steps }
    }

    /// Takes the step for the next request on `face`; `Ok` once the script has run out.
    pub(crate) fn next(&mut self, face: Face) -> Step {
        let Some(front) = self.steps.front_mut() else {
            return Step::Ok;
        };
        let step = match (front.step, front.rng.as_mut()) {
            (Step::Random { p, .. }, Some(rng)) => draw(rng, p, face),
            (step, _) => step,
        };
        if let Some(n) = front.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.steps.pop_front();
            }
        }
        step
    }
}

/// The retryable faults `random(..)` draws from, per face.
fn draw(rng: &mut fastrand::Rng, p: f64, face: Face) -> Step {
    if rng.f64() >= p {
        return Step::Ok;
    }
    let overloaded = match face {
        Face::Anthropic => 529,
        Face::Foundry => 503,
    };
    match rng.u8(0..7) {
        0 => Step::RateLimited(RetryHint::None),
        1 => Step::RateLimited(RetryHint::Millis(100)),
        2 => Step::Status(overloaded),
        3 => Step::Status(500),
        4 => Step::Status(502),
        5 => Step::Status(504),
        _ => match face {
            Face::Anthropic => Step::Reset,
            Face::Foundry => Step::TransientAuth,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step() {
        let script = "anthropic=ok,429,429:2s,429:1.5s,429:date+2s,429:ms1500,429:xms1500,529,503,500,502,504,400,401,403;\
                      foundry=404:deployment,transient-auth,reset,delay:300ms,stream-error,slow-stream:50ms,503*2,random(p=0.3,seed=7),stream-error:early*3";
        let s = FaultScript::parse(script).unwrap();
        let a: Vec<String> = s
            .steps(Face::Anthropic)
            .iter()
            .map(|(s, _)| s.to_string())
            .collect();
        assert_eq!(
            a.join(","),
            "ok,429,429:2s,429:1.5s,429:date+2s,429:ms1500,429:xms1500,529,503,500,502,504,400,401,403"
        );
        let f = s.steps(Face::Foundry);
        assert_eq!(f[6], (Step::Status(503), Some(2)));
        assert_eq!(f[7], (Step::Random { p: 0.3, seed: 7 }, None));
        assert_eq!(f[3].0, Step::Delay(Duration::from_millis(300)));
        assert_eq!(f[4].0, Step::StreamError);
        assert_eq!(f[8], (Step::StreamErrorEarly, Some(3)));
        assert_eq!(f[8].0.to_string(), "stream-error:early");
    }

    #[test]
    fn bare_steps_apply_to_both_routes() {
        let s = FaultScript::parse("429*2").unwrap();
        assert_eq!(s.steps(Face::Anthropic), s.steps(Face::Foundry));
        assert_eq!(s.steps(Face::Foundry).len(), 1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "x=429",
            "anthropic=418",
            "anthropic=429:soon",
            "foundry=503*x",
            "random(p=2)",
            "delay:forever",
            "random(q=1)",
        ] {
            assert!(FaultScript::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(FaultScript::parse("").unwrap(), FaultScript::default());
    }

    #[test]
    fn random_text_never_panics_the_parser() {
        let alphabet: Vec<char> = "anthropicfoundry=;,*()0123456789.:smxdelayrstok+-_ \u{e9}"
            .chars()
            .collect();
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let s: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            if let Ok(script) = FaultScript::parse(&s) {
                // Whatever parses renders back to steps that parse again.
                for face in [Face::Anthropic, Face::Foundry] {
                    for (step, _) in script.steps(face) {
                        assert!(parse_step(&step.to_string()).is_ok(), "{s:?} -> {step}");
                    }
                }
            }
        }
    }

    #[test]
    fn queue_consumes_then_succeeds() {
        let s = FaultScript::parse("anthropic=429*2,500").unwrap();
        let mut q = Queue::new(s.steps(Face::Anthropic));
        assert_eq!(q.next(Face::Anthropic), Step::RateLimited(RetryHint::None));
        assert_eq!(q.next(Face::Anthropic), Step::RateLimited(RetryHint::None));
        assert_eq!(q.next(Face::Anthropic), Step::Status(500));
        assert_eq!(q.next(Face::Anthropic), Step::Ok);
    }

    #[test]
    fn random_is_seeded_and_respects_p() {
        let s = FaultScript::parse("random(p=0.5,seed=7)*200").unwrap();
        let run = || {
            let mut q = Queue::new(s.steps(Face::Foundry));
            (0..201).map(|_| q.next(Face::Foundry)).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let faults = a[..200].iter().filter(|s| **s != Step::Ok).count();
        assert!((60..140).contains(&faults), "{faults}");
        assert_eq!(a[200], Step::Ok);
        let none = FaultScript::parse("random(p=0,seed=1)*50").unwrap();
        let mut q = Queue::new(none.steps(Face::Anthropic));
        assert!((0..50).all(|_| q.next(Face::Anthropic) == Step::Ok));
    }
}
