use http::{HeaderMap, HeaderValue};

use crate::headers;

/// Every request id either platform hands out for one response.
///
/// Support tickets need both Anthropic's and Azure's ids, so all are kept:
/// `request-id` (Anthropic), `apim-request-id` and `x-ms-request-id` (Azure),
/// and `x-request-id` (proxies).
///
/// ```
/// use claude_tower_core::RequestIds;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("apim-request-id", "0f3c".parse().unwrap());
/// headers.insert("x-ms-request-id", "9a1b".parse().unwrap());
/// let ids = RequestIds::from_headers(&headers);
/// assert_eq!(ids.primary(), Some("0f3c"));
/// assert_eq!(ids.to_string(), "apim-request-id=0f3c x-ms-request-id=9a1b");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestIds {
    request_id: Option<HeaderValue>,
    apim_request_id: Option<HeaderValue>,
    x_ms_request_id: Option<HeaderValue>,
    x_request_id: Option<HeaderValue>,
}

impl RequestIds {
    /// Reads every known request id header (the first value of each, as
    /// [`HeaderMap::get`] would).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // One pass over the names, most turned away by their length, costs
        // less than four hashed lookups of names that are not standard
        // headers (a response carries one or two of the four).
        let mut ids = Self::default();
        for (name, value) in headers {
            let slot = match name.as_str().len() {
                10 if *name == headers::REQUEST_ID => &mut ids.request_id,
                12 if *name == headers::X_REQUEST_ID => &mut ids.x_request_id,
                15 if *name == headers::APIM_REQUEST_ID => &mut ids.apim_request_id,
                15 if *name == headers::X_MS_REQUEST_ID => &mut ids.x_ms_request_id,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        ids
    }

    /// Sets Anthropic's `request-id`, e.g. from an error body's `request_id`.
    pub fn with_request_id(mut self, value: HeaderValue) -> Self {
        self.request_id = Some(value);
        self
    }

    /// Anthropic's `request-id`.
    pub fn request_id(&self) -> Option<&str> {
        as_str(&self.request_id)
    }

    /// Azure API Management's `apim-request-id`.
    pub fn apim_request_id(&self) -> Option<&str> {
        as_str(&self.apim_request_id)
    }

    /// Azure's `x-ms-request-id`.
    pub fn x_ms_request_id(&self) -> Option<&str> {
        as_str(&self.x_ms_request_id)
    }

    /// A proxy's `x-request-id`.
    pub fn x_request_id(&self) -> Option<&str> {
        as_str(&self.x_request_id)
    }

    /// The id to quote first: Anthropic's, then APIM's, then Azure's, then a proxy's.
    pub fn primary(&self) -> Option<&str> {
        self.iter().next().map(|(_, v)| v)
    }

    /// Whether no id is known.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Each known id with its header name, in [`primary`](Self::primary) order.
    /// Ids that are not visible ASCII are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        [
            ("request-id", &self.request_id),
            ("apim-request-id", &self.apim_request_id),
            ("x-ms-request-id", &self.x_ms_request_id),
            ("x-request-id", &self.x_request_id),
        ]
        .into_iter()
        .filter_map(|(name, value)| as_str(value).map(|v| (name, v)))
    }

    /// Copies every known id onto `headers` (e.g. a locally rendered response).
    pub fn write_to(&self, headers: &mut HeaderMap) {
        let pairs = [
            (headers::REQUEST_ID, &self.request_id),
            (headers::APIM_REQUEST_ID, &self.apim_request_id),
            (headers::X_MS_REQUEST_ID, &self.x_ms_request_id),
            (headers::X_REQUEST_ID, &self.x_request_id),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
    }
}

fn as_str(value: &Option<HeaderValue>) -> Option<&str> {
    value.as_ref().and_then(|v| v.to_str().ok())
}

impl std::fmt::Display for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (name, value) in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers `pairs`, in order (a repeated name appends).
    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for &(name, value) in pairs {
            h.append(name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn keeps_every_id() {
        let h = headers(&[
            ("request-id", "req_1"),
            ("apim-request-id", "apim"),
            ("x-ms-request-id", "ms"),
            ("x-request-id", "proxy"),
        ]);
        let ids = RequestIds::from_headers(&h);
        assert_eq!(ids.primary(), Some("req_1"));
        assert_eq!(ids.iter().count(), 4);
        let mut out = HeaderMap::new();
        ids.write_to(&mut out);
        assert_eq!(out, h);
    }

    #[test]
    fn reads_like_get_among_other_headers() {
        // Names as long as the ids' names, and a repeated id: the first
        // value counts, as with `HeaderMap::get`.
        let h = headers(&[
            ("user-agent", "ua"),
            ("content-length", "1"),
            ("x-ratelimit-foo", "9"),
            ("x-request-id", "first"),
            ("x-request-id", "second"),
            ("x-ms-request-id", "ms"),
        ]);
        let ids = RequestIds::from_headers(&h);
        assert_eq!(ids.request_id(), None);
        assert_eq!(ids.apim_request_id(), None);
        assert_eq!(ids.x_ms_request_id(), Some("ms"));
        assert_eq!(ids.x_request_id(), Some("first"));
        assert_eq!(ids.primary(), Some("ms"));
    }

    #[test]
    fn empty_and_opaque_values() {
        assert!(RequestIds::default().is_empty());
        let mut h = HeaderMap::new();
        h.insert("request-id", HeaderValue::from_bytes(b"\xff").unwrap());
        let ids = RequestIds::from_headers(&h);
        assert!(ids.is_empty(), "non-ASCII ids are not quoted");
        assert_eq!(ids.to_string(), "");
    }
}
