//! The clinic reference application.

fn main() {}
