//! The work behind commands that combine several crates (connect, gather, plan, execute).

pub mod deploy;
pub mod session;
