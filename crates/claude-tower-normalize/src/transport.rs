//! Turning an inner service's error into a [`ClaudeError`].
//!
//! Decided by walking the error's [`source`](std::error::Error::source) chain
//! and downcasting, as linkerd does, never by matching message text:
//!
//! - a [`ClaudeError`] anywhere in the chain (Auth's credential failures)
//!   passes through as it is;
//! - `tower::timeout::error::Elapsed`, `hyper::Error::is_timeout` or an
//!   `io::ErrorKind::TimedOut` is [`Timeout`](ErrorClass::Timeout);
//! - everything else is [`Transport`](ErrorClass::Transport): connection
//!   refused, reset or aborted, a connection closed before a response, a
//!   failed connect. Those are named in the message; the original error is
//!   kept as the [`source`](std::error::Error::source).
//!
//! With no response there is no status: the error's
//! [`response_status`](ClaudeError::response_status) is the class's default
//! (502 or 504).

use std::error::Error as StdError;
use std::io;

use claude_tower_core::{ClaudeError, ErrorClass};
use tower::BoxError;

/// Classifies an inner service's error as [`Transport`](ErrorClass::Transport)
/// or [`Timeout`](ErrorClass::Timeout); a [`ClaudeError`] in the chain
/// passes through unchanged.
///
/// The route is left for the caller, as with [`classify`](crate::classify).
///
/// ```
/// use claude_tower_core::ErrorClass;
/// use claude_tower_normalize::transport_error;
/// use std::io;
///
/// let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connect failed");
/// let err = transport_error(Box::new(refused));
/// assert_eq!(err.class(), ErrorClass::Transport);
/// assert_eq!(err.message(), "connection refused");
///
/// let late = io::Error::new(io::ErrorKind::TimedOut, "deadline");
/// assert_eq!(transport_error(Box::new(late)).class(), ErrorClass::Timeout);
/// ```
pub fn transport_error(err: BoxError) -> ClaudeError {
    let err = match err.downcast::<ClaudeError>() {
        Ok(claude) => return *claude,
        Err(err) => err,
    };
    if let Some(claude) = find::<ClaudeError>(&*err) {
        return claude.clone();
    }
    let (class, message) = describe(&*err);
    ClaudeError::new(class, message).with_boxed_source(err)
}

fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| {
        let e: &'a (dyn StdError + 'static) = *e;
        e.source()
    })
}

fn find<'a, E: StdError + 'static>(
    err: &'a (dyn StdError + Send + Sync + 'static),
) -> Option<&'a E> {
    chain(err).find_map(|e| e.downcast_ref::<E>())
}

/// The class and a short message for the most telling error in the chain.
/// A timeout anywhere in the chain wins over everything else.
fn describe(err: &(dyn StdError + Send + Sync + 'static)) -> (ErrorClass, &'static str) {
    let mut found: Option<&'static str> = None;
    for e in chain(err) {
        if let Some(timeout) = timeout(e) {
            return (ErrorClass::Timeout, timeout);
        }
        if found.is_none() {
            found = transport(e);
        }
    }
    (ErrorClass::Transport, found.unwrap_or("transport error"))
}

fn timeout(e: &(dyn StdError + 'static)) -> Option<&'static str> {
    if e.is::<tower::timeout::error::Elapsed>() {
        return Some("request timed out");
    }
    if let Some(io) = e.downcast_ref::<io::Error>()
        && io.kind() == io::ErrorKind::TimedOut
    {
        return Some("timed out");
    }
    #[cfg(feature = "hyper")]
    if let Some(h) = e.downcast_ref::<hyper::Error>()
        && h.is_timeout()
    {
        return Some("timed out");
    }
    None
}

fn transport(e: &(dyn StdError + 'static)) -> Option<&'static str> {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused => Some("connection refused"),
            io::ErrorKind::ConnectionReset => Some("connection reset"),
            io::ErrorKind::ConnectionAborted => Some("connection aborted"),
            io::ErrorKind::BrokenPipe => Some("connection broken"),
            io::ErrorKind::NotConnected => Some("not connected"),
            io::ErrorKind::UnexpectedEof => Some("connection closed before a response"),
            io::ErrorKind::AddrNotAvailable | io::ErrorKind::HostUnreachable => {
                Some("host unreachable")
            }
            io::ErrorKind::NetworkUnreachable | io::ErrorKind::NetworkDown => {
                Some("network unreachable")
            }
            _ => None,
        };
    }
    #[cfg(feature = "hyper")]
    {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() {
                return Some("connection closed before a response");
            }
            if h.is_canceled() {
                return Some("request canceled");
            }
            return None;
        }
        if let Some(c) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && c.is_connect()
        {
            return Some("connect failed");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// A wrapper error with a source, as client libraries build them.
    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    fn io(kind: io::ErrorKind) -> BoxError {
        Box::new(io::Error::new(kind, "x"))
    }

    #[test]
    fn io_kinds() {
        let cases = [
            (
                io::ErrorKind::ConnectionRefused,
                ErrorClass::Transport,
                "connection refused",
            ),
            (
                io::ErrorKind::ConnectionReset,
                ErrorClass::Transport,
                "connection reset",
            ),
            (
                io::ErrorKind::UnexpectedEof,
                ErrorClass::Transport,
                "connection closed before a response",
            ),
            (io::ErrorKind::TimedOut, ErrorClass::Timeout, "timed out"),
            (
                io::ErrorKind::Other,
                ErrorClass::Transport,
                "transport error",
            ),
        ];
        for (kind, class, message) in cases {
            let err = transport_error(io(kind));
            assert_eq!(err.class(), class, "{kind:?}");
            assert_eq!(err.message(), message);
            assert_eq!(err.status(), None);
            let source = err.source().expect("source kept");
            assert_eq!(
                source.downcast_ref::<io::Error>().map(io::Error::kind),
                Some(kind)
            );
        }
    }

    #[test]
    fn walks_the_chain() {
        let err = transport_error(Box::new(Wrapped(Box::new(Wrapped(io(
            io::ErrorKind::ConnectionReset,
        ))))));
        assert_eq!(err.class(), ErrorClass::Transport);
        assert_eq!(err.message(), "connection reset");
        // A timeout deeper in the chain wins over a reset above it.
        let err = transport_error(Box::new(Wrapped(Box::new(
            tower::timeout::error::Elapsed::new(),
        ))));
        assert_eq!(err.class(), ErrorClass::Timeout);
        assert_eq!(err.response_status(), http::StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn claude_errors_pass_through() {
        let auth =
            ClaudeError::new(ErrorClass::Auth, "token request failed").with_code("credential");
        let err = transport_error(Box::new(auth.clone()));
        assert_eq!(err.class(), ErrorClass::Auth);
        assert_eq!(err.code(), Some("credential"));
        let err = transport_error(Box::new(Wrapped(Box::new(auth))));
        assert_eq!(err.class(), ErrorClass::Auth);
        assert_eq!(err.message(), "token request failed");
    }

    #[test]
    fn plain_strings_are_transport() {
        let err = transport_error("something odd".into());
        assert_eq!(err.class(), ErrorClass::Transport);
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("something odd")
        );
    }
}
