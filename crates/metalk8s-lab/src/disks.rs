//! Spare disks: sparse files on the host attached as loop devices, which docker then
//! passes into a node as /dev/vdb, /dev/vdc… (real block devices there).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::cmd;
use crate::error::LabError;

/// Creates a sparse file of `size` bytes (no space used until written) and attaches it.
pub(crate) fn create_and_attach(file: &Path, size: u64) -> Result<PathBuf, LabError> {
    let backing = File::create(file).map_err(LabError::io("create", file))?;
    backing
        .set_len(size)
        .map_err(LabError::io("resize", file))?;
    drop(backing);
    let device = cmd::run(Command::new("losetup").args(["--find", "--show"]).arg(file)).map_err(
        |source| LabError::Disk {
            file: file.to_owned(),
            source,
        },
    )?;
    Ok(PathBuf::from(device))
}

/// A loop device and the file behind it.
#[derive(Debug, PartialEq)]
pub(crate) struct Attached {
    pub device: PathBuf,
    pub backing_file: PathBuf,
}

#[derive(Deserialize)]
struct LosetupList {
    loopdevices: Vec<LosetupDevice>,
}

#[derive(Deserialize)]
struct LosetupDevice {
    name: String,
    #[serde(rename = "back-file")]
    back_file: Option<String>,
}

/// Loop devices whose backing file lies under `dir`, found from the kernel's own list so
/// that disks of a lab whose state file is lost are still detached.
pub(crate) fn attached_under(dir: &Path) -> Result<Vec<Attached>, LabError> {
    let output =
        cmd::run(Command::new("losetup").args(["--list", "--json"])).map_err(|source| {
            LabError::Disk {
                file: dir.to_owned(),
                source,
            }
        })?;
    Ok(parse_losetup(&output, dir))
}

fn parse_losetup(json: &str, dir: &Path) -> Vec<Attached> {
    // No loop device at all prints nothing rather than an empty list.
    let Ok(list) = serde_json::from_str::<LosetupList>(json) else {
        return Vec::new();
    };
    list.loopdevices
        .into_iter()
        .filter_map(|device| {
            // The kernel appends " (deleted)" once the file is gone.
            let file = device.back_file?;
            let file = PathBuf::from(file.trim_end_matches(" (deleted)"));
            file.starts_with(dir).then(|| Attached {
                device: PathBuf::from(device.name),
                backing_file: file,
            })
        })
        .collect()
}

/// Detaches a loop device. Still in use (a container being torn down), the kernel frees it
/// as soon as the last user goes.
pub(crate) fn detach(attached: &Attached) -> Result<(), LabError> {
    cmd::run(
        Command::new("losetup")
            .arg("--detach")
            .arg(&attached.device),
    )
    .map(drop)
    .map_err(|source| LabError::Disk {
        file: attached.backing_file.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_devices_backed_by_files_of_the_lab_are_listed() {
        let json = r#"{"loopdevices": [
            {"name": "/dev/loop0", "back-file": "/labs/demo/disks/node1-vdb.img"},
            {"name": "/dev/loop1", "back-file": "/labs/demo2/disks/node1-vdb.img"},
            {"name": "/dev/loop2", "back-file": "/labs/demo/disks/node2-vdb.img (deleted)"},
            {"name": "/dev/loop3", "back-file": null}
        ]}"#;
        let found = parse_losetup(json, Path::new("/labs/demo/disks"));
        assert_eq!(
            found,
            [
                Attached {
                    device: "/dev/loop0".into(),
                    backing_file: "/labs/demo/disks/node1-vdb.img".into(),
                },
                Attached {
                    device: "/dev/loop2".into(),
                    backing_file: "/labs/demo/disks/node2-vdb.img".into(),
                },
            ]
        );
        assert!(parse_losetup("", Path::new("/labs/demo")).is_empty());
    }
}
