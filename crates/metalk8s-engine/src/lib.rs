//! The engine: how a plan becomes reality on hosts.
//!
//! In DESIGN.md's picture it sits between the planner and the transport. [`resource`]
//! defines how one desired state is observed, compared and applied through the `Host`
//! trait; [`resources`] implements it for every kind of `metalk8s_model::plan::Resource`.

pub mod resource;
pub mod resources;
