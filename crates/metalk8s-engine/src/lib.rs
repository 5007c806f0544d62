//! The engine: how a plan becomes reality on hosts.
//!
//! In DESIGN.md's picture it sits between the planner and the transport:
//! - [`resource`] defines how one desired state is observed, compared and applied through
//!   the `Host` trait, and [`resources`] implements it for every kind of resource;
//! - [`runner`] runs one host's steps in order, with `after` dependencies and watchers;
//! - [`agent`] ships the binary to nodes and runs the steps there, streaming events;
//! - [`executor`] runs a whole plan: phases as barriers, hosts in parallel or in batches;
//! - [`journal`] and [`lock`] make runs resumable and one-at-a-time.

pub mod agent;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod poll;
pub mod report;
pub mod resource;
pub mod resources;
pub mod runner;
