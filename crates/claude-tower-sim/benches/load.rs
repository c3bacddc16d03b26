//! Placeholder; the loopback load bench lands in a later commit.

fn main() {}
