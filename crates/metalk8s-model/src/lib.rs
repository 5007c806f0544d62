//! The vocabulary of metalk8s: the inventory an operator writes, the facts gathered from
//! hosts, and the reports produced from them.
//!
//! This crate sits at the bottom of the layer picture in DESIGN.md. It holds plain data
//! types with their serde and JSON Schema shapes and the pure helpers that interpret them
//! (sizes, role queries, defaults); it never touches a file, a socket or a process.

pub mod etcd;
pub mod facts;
pub mod inventory;
pub mod network;
pub mod oci;
pub mod phase;
pub mod plan;
pub mod report;
pub mod repository;
pub mod size;

pub use facts::Facts;
pub use inventory::Inventory;
pub use phase::PhaseName;
pub use size::ByteSize;
