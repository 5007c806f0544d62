//! Building a host's steps: readable ids derived from what a step manages, and checks that
//! each id is used once and that a step only depends on steps before it (the engine runs
//! them in order).

use metalk8s_model::plan::{
    CommandResource, DirectoryResource, FetchResource, FileResource, Resource, ServiceResource,
    Step,
};

/// A step's id and the desired state it manages.
pub(crate) type Planned = (String, Resource);

/// The steps of one host, in the order they run.
#[derive(Default)]
pub(crate) struct Steps {
    steps: Vec<Step>,
}

impl Steps {
    /// Appends a step and returns its id, for the `after` and `watch` of later steps.
    pub fn add(&mut self, step: Planned) -> String {
        self.add_with(step, &[], &[])
    }

    /// Appends a step that runs once the `after` steps succeeded and reacts when one of
    /// the `watch` steps changed.
    pub fn add_with(
        &mut self,
        (id, resource): Planned,
        after: &[&String],
        watch: &[&String],
    ) -> String {
        assert!(!self.has(&id), "step `{id}` planned twice");
        for earlier in after.iter().chain(watch) {
            assert!(
                self.has(earlier),
                "step `{id}` refers to `{earlier}`, not planned before it"
            );
        }
        self.steps.push(Step {
            id: id.clone(),
            resource,
            after: after.iter().map(|id| (*id).clone()).collect(),
            watch: watch.iter().map(|id| (*id).clone()).collect(),
        });
        id
    }

    /// [`Steps::add`], unless a step with the same id is already planned (a directory two
    /// parts of a host plan both need): then the id of that step.
    pub fn add_once(&mut self, step: Planned) -> String {
        if self.has(&step.0) {
            return step.0;
        }
        self.add(step)
    }

    fn has(&self, id: &str) -> bool {
        self.steps.iter().any(|step| step.id == id)
    }

    pub fn into_vec(self) -> Vec<Step> {
        self.steps
    }
}

/// Content of a configuration file metalk8s owns, with the header that tells whoever
/// opens it not to edit it by hand. `comment` is the file format's comment marker.
pub(crate) fn managed_content(comment: &str, body: &str) -> String {
    format!(
        "{comment} Managed by metalk8s: changes made here are overwritten by the next deploy.\n{body}"
    )
}

/// A resource that manages one named thing, with the id it derives from that
/// ([`Resource::natural_id`]).
pub(crate) fn named(resource: Resource) -> Planned {
    let id = resource
        .natural_id()
        .expect("named() is given resources that manage one named thing");
    (id, resource)
}

pub(crate) fn file(path: &str, content: String, mode: u32) -> Planned {
    named(Resource::File(FileResource {
        path: path.to_owned(),
        content,
        mode,
        owner: "root".to_owned(),
        group: "root".to_owned(),
        secret: false,
    }))
}

/// A file of the bundle fetched from the bootstrap repository (`url`, from
/// [`metalk8s_model::repository::file_url`]) and placed at `path` once it hashes to
/// `sha256`, downloaded by the agent at `agent_path` (`Inputs::agent_path`).
pub(crate) fn fetch(agent_path: &str, path: &str, url: String, sha256: &str, mode: u32) -> Planned {
    named(Resource::Fetch(FetchResource {
        url,
        sha256: sha256.to_owned(),
        path: path.to_owned(),
        mode,
        agent: agent_path.to_owned(),
    }))
}

pub(crate) fn directory(path: &str, mode: u32, group: &str) -> Planned {
    named(Resource::Directory(DirectoryResource {
        path: path.to_owned(),
        mode,
        owner: "root".to_owned(),
        group: group.to_owned(),
    }))
}

pub(crate) fn service(unit: &str, enabled: bool) -> Planned {
    named(Resource::Service(ServiceResource {
        name: unit.to_owned(),
        enabled,
        running: true,
    }))
}

/// A command that runs only when a step it watches changed.
pub(crate) fn reaction(name: &str, command: &str) -> Planned {
    (
        format!("command/{name}"),
        Resource::Command(CommandResource {
            command: command.to_owned(),
            creates: None,
            unless: None,
            only_on_watch: true,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_file_is_known_by_its_path() {
        let (id, resource) = fetch(
            "/var/lib/metalk8s/agent/metalk8s-0123",
            "/usr/local/bin/kubelet",
            "https://10.0.0.1:8443/files/kubelet".to_owned(),
            "ab12",
            0o755,
        );
        assert_eq!(id, "fetch/usr/local/bin/kubelet");
        let Resource::Fetch(fetch) = resource else {
            panic!("{resource:?}")
        };
        assert_eq!(fetch.agent, "/var/lib/metalk8s/agent/metalk8s-0123");
        assert_eq!(fetch.mode, 0o755);
    }
}
