//! One module per kind of resource.
//!
//! Every resource observes with one command (a probe script whose output is cut into
//! named sections, see `shell`), so that a converged host is checked quickly; `apply`
//! reads again and does only what that fresh reading calls for, so it is safe on an
//! observation that has gone stale. Everything runs as root. What a host cannot provide
//! at all is `ResourceError::Unsupported` (kernel modules and kernel parameters in a
//! container); a desired state that cannot be valid is `ResourceError::Invalid`.

mod command;
mod directory;
mod fetch;
mod file;
mod fstab;
mod hostname;
mod hosts;
mod kernel_module;
mod mount;
mod packages;
mod service;
mod shell;
mod swap;
mod sysctl;
mod unit;
mod user;

use metalk8s_model::plan::Resource;

use crate::resource::Apply;

pub use fetch::{FETCHED_DIR, FetchRecord, record_path};

/// The implementation of a desired state.
pub fn implementation(resource: &Resource) -> Box<dyn Apply + '_> {
    match resource {
        Resource::File(file) => Box::new(file::File(file)),
        Resource::Directory(directory) => Box::new(directory::Directory(directory)),
        Resource::Packages(packages) => Box::new(packages::Packages(packages)),
        Resource::Service(service) => Box::new(service::Service(service)),
        Resource::Unit(unit) => Box::new(unit::Unit(unit)),
        Resource::Sysctl(sysctl) => Box::new(sysctl::Sysctl(sysctl)),
        Resource::KernelModule(module) => Box::new(kernel_module::KernelModule(module)),
        Resource::SwapOff(_) => Box::new(swap::SwapOff),
        Resource::Mount(mount) => Box::new(mount::Mount(mount)),
        Resource::Hostname(hostname) => Box::new(hostname::Hostname(hostname)),
        Resource::HostsEntries(entries) => Box::new(hosts::HostsEntries(entries)),
        Resource::User(user) => Box::new(user::User(user)),
        Resource::Group(group) => Box::new(user::Group(group)),
        Resource::Command(command) => Box::new(command::Command(command)),
        Resource::Fetch(fetch) => Box::new(fetch::Fetch(fetch)),
    }
}
