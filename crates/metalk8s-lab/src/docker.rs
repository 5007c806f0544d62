//! The docker CLI calls the lab needs, each failing with the object it was about.

use std::process::Command;

use ipnet::{IpNet, Ipv4Net};

use crate::cmd;
use crate::error::{CommandError, LabError};
use crate::layout::LABEL;

fn docker() -> Command {
    Command::new("docker")
}

/// Checks that the docker CLI is installed and its daemon answers.
pub(crate) fn check_daemon() -> Result<(), LabError> {
    cmd::require(
        "docker",
        "install it with `apt-get install -y docker.io` and start `dockerd`",
    )?;
    cmd::run(docker().args(["version", "--format", "{{.Server.Version}}"]))
        .map(drop)
        .map_err(|source| LabError::DockerNotRunning { source })
}

/// Whether a failure only says the object is already gone, which removal treats as done.
fn is_missing(error: &CommandError) -> bool {
    let stderr = error.stderr();
    stderr.contains("No such") || stderr.contains("not found")
}

pub(crate) fn image_exists(image: &str) -> Result<bool, LabError> {
    match cmd::run(docker().args(["image", "inspect", "--format", "{{.Id}}", image])) {
        Ok(_) => Ok(true),
        Err(error) if is_missing(&error) => Ok(false),
        Err(error) => Err(LabError::docker(format!("image {image}"))(error)),
    }
}

/// The kinds of docker objects a lab creates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Container,
    Network,
    Volume,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Network => "network",
            Kind::Volume => "volume",
        }
    }
}

/// Names of the objects of `kind` labelled as belonging to `lab`.
pub(crate) fn labelled(kind: Kind, lab: &str) -> Result<Vec<String>, LabError> {
    let filter = format!("label={LABEL}={lab}");
    let mut command = docker();
    match kind {
        // `docker ps` knows `.Names`, the others `.Name`.
        Kind::Container => command.args(["ps", "--all", "--format", "{{.Names}}"]),
        Kind::Network => command.args(["network", "ls", "--format", "{{.Name}}"]),
        Kind::Volume => command.args(["volume", "ls", "--format", "{{.Name}}"]),
    };
    command.args(["--filter", &filter]);
    let output = cmd::run(&mut command)
        .map_err(LabError::docker(format!("{}s of lab {lab}", kind.noun())))?;
    Ok(output.lines().map(str::to_owned).collect())
}

/// Removes objects, treating one already gone as removed.
pub(crate) fn remove(kind: Kind, name: &str) -> Result<(), LabError> {
    let mut command = docker();
    match kind {
        Kind::Container => command.args(["rm", "--force", "--volumes", name]),
        Kind::Network => command.args(["network", "rm", name]),
        Kind::Volume => command.args(["volume", "rm", "--force", name]),
    };
    match cmd::run(&mut command) {
        Ok(_) => Ok(()),
        Err(error) if is_missing(&error) => Ok(()),
        Err(error) => Err(LabError::docker(format!("{} {name}", kind.noun()))(error)),
    }
}

/// Subnets of every docker network, which a new lab network must not overlap.
pub(crate) fn network_subnets() -> Result<Vec<IpNet>, LabError> {
    let names = cmd::run(docker().args(["network", "ls", "--format", "{{.Name}}"]))
        .map_err(LabError::docker("networks"))?;
    let mut subnets = Vec::new();
    for name in names.lines() {
        let format = "{{range .IPAM.Config}}{{.Subnet}} {{end}}";
        // A network removed since the listing (a parallel `down`) simply has no subnet.
        match cmd::run(docker().args(["network", "inspect", "--format", format, name])) {
            Ok(output) => subnets.extend(
                output
                    .split_whitespace()
                    .filter_map(|subnet| subnet.parse::<IpNet>().ok()),
            ),
            Err(error) if is_missing(&error) => {}
            Err(error) => return Err(LabError::docker(format!("network {name}"))(error)),
        }
    }
    Ok(subnets)
}

/// Outcome of trying to create a network on a subnet.
pub(crate) enum NetworkCreation {
    Created,
    /// Another network took an overlapping subnet first.
    SubnetTaken,
}

/// A bridge network on `subnet`; with `mtu`, its bridge and every container's interface
/// on it get that MTU.
pub(crate) fn create_network(
    name: &str,
    subnet: Ipv4Net,
    gateway: std::net::Ipv4Addr,
    lab: &str,
    mtu: Option<u32>,
) -> Result<NetworkCreation, LabError> {
    let mut command = docker();
    command.args(["network", "create"]);
    if let Some(mtu) = mtu {
        command.args(["--opt", &format!("com.docker.network.driver.mtu={mtu}")]);
    }
    let result = cmd::run(command.args([
        "--driver",
        "bridge",
        "--subnet",
        &subnet.to_string(),
        "--gateway",
        &gateway.to_string(),
        "--label",
        &format!("{LABEL}={lab}"),
        name,
    ]));
    match result {
        Ok(_) => Ok(NetworkCreation::Created),
        Err(error) if error.stderr().contains("overlaps") => Ok(NetworkCreation::SubnetTaken),
        Err(error) => Err(LabError::docker(format!("network {name}"))(error)),
    }
}

/// Attaches a container to one more network with a fixed address. Done to a running
/// container, the interface comes in next (`eth1`); done before the start, docker would
/// attach the networks in no fixed order.
pub(crate) fn connect(
    network: &str,
    container: &str,
    ip: std::net::Ipv4Addr,
) -> Result<(), LabError> {
    cmd::run(docker().args([
        "network",
        "connect",
        "--ip",
        &ip.to_string(),
        network,
        container,
    ]))
    .map(drop)
    .map_err(LabError::docker(format!(
        "container {container} on network {network}"
    )))
}

pub(crate) fn create_volume(name: &str, lab: &str) -> Result<(), LabError> {
    cmd::run(docker().args([
        "volume",
        "create",
        "--label",
        &format!("{LABEL}={lab}"),
        name,
    ]))
    .map(drop)
    .map_err(LabError::docker(format!("volume {name}")))
}

/// `docker create` with the given arguments (everything between `create` and the image).
pub(crate) fn create_container(
    name: &str,
    options: &[String],
    image: &str,
    command: &[&str],
) -> Result<(), LabError> {
    let mut docker = docker();
    docker
        .args(["create", "--name", name])
        .args(options)
        .arg(image)
        .args(command);
    cmd::run(&mut docker)
        .map(drop)
        .map_err(LabError::docker(format!("container {name}")))
}

/// Copies a host file into a container, which may not be started yet.
pub(crate) fn copy_into(
    container: &str,
    source: &std::path::Path,
    target: &str,
) -> Result<(), LabError> {
    cmd::run(
        docker()
            .arg("cp")
            .arg(source)
            .arg(format!("{container}:{target}")),
    )
    .map(drop)
    .map_err(LabError::docker(format!("container {container}")))
}

pub(crate) fn start(container: &str) -> Result<(), LabError> {
    cmd::run(docker().args(["start", container]))
        .map(drop)
        .map_err(LabError::docker(format!("container {container}")))
}

/// `docker exec container command…`, to be run by the caller.
pub(crate) fn exec(container: &str, command: &[&str]) -> Command {
    let mut docker = docker();
    docker.args(["exec", container]).args(command);
    docker
}

/// The container's state (`running`, `exited`…), or `None` when it does not exist.
pub(crate) fn container_state(container: &str) -> Result<Option<String>, LabError> {
    match cmd::run(docker().args([
        "inspect",
        "--type",
        "container",
        "--format",
        "{{.State.Status}}",
        container,
    ])) {
        Ok(state) => Ok(Some(state)),
        Err(error) if is_missing(&error) => Ok(None),
        Err(error) => Err(LabError::docker(format!("container {container}"))(error)),
    }
}

/// Imports a root filesystem tarball as an image that boots systemd.
pub(crate) fn import(
    tarball: &std::path::Path,
    image: &str,
    recipe_hash: &str,
) -> Result<(), CommandError> {
    cmd::run(
        docker()
            .arg("import")
            .args(["--change", r#"CMD ["/lib/systemd/systemd"]"#])
            // systemd adapts itself to running in a container when told so.
            .args(["--change", "ENV container=docker"])
            // Not the lab label: the image is shared by all labs and outlives them.
            .args([
                "--change",
                &format!("LABEL metalk8s.lab.image={recipe_hash}"),
            ])
            .arg(tarball)
            .arg(image),
    )
    .map(drop)
}
