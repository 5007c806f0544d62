//! The planner: turns the inventory and the facts of every host into a [`Plan`]. Pure: no
//! I/O, so plans for fixture inventories are snapshot-tested.

pub use metalk8s_model::plan::Plan;
