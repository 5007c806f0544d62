//! How a build tells the operator what it is doing. The binary draws bars on a terminal
//! and prints plain lines otherwise; tests pass [`Silent`].

/// Receives the build's progress. Called from the building thread only.
pub trait Progress {
    /// A step worth a line of its own ("resolving packages with APT", "image pause: …").
    fn step(&self, message: &str);
    /// A transfer of `total` bytes (when known) begins, `already` of them being in the
    /// download cache from an earlier, interrupted run.
    fn transfer(&self, label: &str, total: Option<u64>, already: u64) -> Box<dyn Transfer + '_>;
}

/// One transfer in flight.
pub trait Transfer {
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

/// Progress that shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _message: &str) {}

    fn transfer(&self, _label: &str, _total: Option<u64>, _already: u64) -> Box<dyn Transfer + '_> {
        Box::new(Silent)
    }
}

impl Transfer for Silent {
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}
