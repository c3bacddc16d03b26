//! wrap
/// help
pub const WRAP_HELP: &str = "";
