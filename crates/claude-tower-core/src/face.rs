use std::fmt;

/// Which error surface a route speaks.
///
/// The same failure looks different on each route: Anthropic direct answers
/// `{"type":"error","error":{"type":"rate_limit_error",..}}` with
/// `retry-after` in integer seconds and 529 for overload; Azure AI Foundry
/// answers `{"error":{"code":"429",..}}`, with `Retry-After` as seconds or an
/// HTTP-date (and sometimes `retry-after-ms` / `x-ms-retry-after-ms`), and 503
/// for overload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Face {
    /// Anthropic direct (`https://api.anthropic.com`).
    Anthropic,
    /// Azure AI Foundry (`https://{resource}.services.ai.azure.com/anthropic`).
    Foundry,
}

impl Face {
    /// A short lowercase name: `"anthropic"` or `"foundry"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Face::Anthropic => "anthropic",
            Face::Foundry => "foundry",
        }
    }
}

impl fmt::Display for Face {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
