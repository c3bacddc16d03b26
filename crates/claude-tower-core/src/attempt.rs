use crate::RouteId;

/// Which attempt on which route produced a response.
///
/// Retry sets it on each re-sent request and on the final response; the
/// gateway turns it into response headers. `number` counts from 1: the first
/// send is attempt 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attempt {
    route: RouteId,
    number: u32,
}

impl Attempt {
    /// The first attempt on `route`.
    pub fn first(route: RouteId) -> Self {
        Self { route, number: 1 }
    }

    /// Attempt `number` (counting from 1) on `route`.
    pub fn new(route: RouteId, number: u32) -> Self {
        Self {
            route,
            number: number.max(1),
        }
    }

    /// The route the attempt was sent to.
    pub fn route(&self) -> &RouteId {
        &self.route
    }

    /// The attempt's number on its route, counting from 1.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The attempt after this one on the same route.
    pub fn next(&self) -> Self {
        Self {
            route: self.route.clone(),
            number: self.number.saturating_add(1),
        }
    }

    /// Whether this is a retry rather than the first send.
    pub fn is_retry(&self) -> bool {
        self.number > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_one() {
        let first = Attempt::first(RouteId::new("anthropic"));
        assert!(!first.is_retry());
        let second = first.next();
        assert_eq!(second.number(), 2);
        assert!(second.is_retry());
        assert_eq!(second.route(), "anthropic");
        assert_eq!(Attempt::new(RouteId::new("x"), 0).number(), 1);
    }
}
