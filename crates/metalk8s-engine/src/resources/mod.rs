//! One module per kind of resource.

use metalk8s_model::plan::Resource;

use crate::resource::Apply;

/// The implementation of a desired state.
pub fn implementation(resource: &Resource) -> Box<dyn Apply + '_> {
    let _ = resource;
    todo!("each resource kind is implemented in its own module")
}
