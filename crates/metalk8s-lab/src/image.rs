//! The node image: a Debian 12 root filesystem made by debootstrap and prepared by
//! `node-setup.sh`, cached as a tarball and imported into docker as
//! `metalk8s-lab-node:<recipe hash>`.
//!
//! No image can be pulled here, so the image is built from Debian's package registry. The
//! build takes minutes; its tarball is kept so an image deleted from docker comes back in
//! seconds, and the tag names the recipe so a changed recipe never reuses a stale image.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{FlockOperation, flock};
use sha2::{Digest, Sha256};

use crate::error::LabError;
use crate::{cmd, docker, paths};

/// Everything that decides the content of the node image.
pub(crate) struct Recipe {
    suite: &'static str,
    mirror: &'static str,
    packages: &'static [&'static str],
    setup_script: &'static str,
}

/// A minimal Debian 12 server: what an operator's freshly installed machine would have,
/// plus the tools the tests reach for. Kubernetes' own packages are left to `deploy`.
pub(crate) const RECIPE: Recipe = Recipe {
    suite: "bookworm",
    mirror: "http://deb.debian.org/debian",
    packages: &[
        "systemd",
        "systemd-sysv",
        "dbus",
        "openssh-server",
        "sudo",
        "iproute2",
        "iputils-ping",
        "procps",
        "util-linux",
        "kmod",
        "e2fsprogs",
        "xfsprogs",
        "lvm2",
        "ca-certificates",
        "python3",
        "curl",
        "gnupg",
        "apt-transport-https",
        "iptables",
        "less",
        "zstd",
        "xz-utils",
    ],
    setup_script: include_str!("node-setup.sh"),
};

impl Recipe {
    /// A digest of the whole recipe; any change to it gives a new image.
    pub fn hash(&self) -> String {
        let mut digest = Sha256::new();
        for part in [
            self.suite,
            self.mirror,
            &self.packages.join(","),
            self.setup_script,
        ] {
            digest.update(part.as_bytes());
            // A separator, so moving text from one part to the next changes the hash.
            digest.update([0]);
        }
        hex::encode(&digest.finalize()[..8])
    }

    pub fn image(&self) -> String {
        format!("metalk8s-lab-node:{}", self.hash())
    }
}

/// Makes sure the node image exists in docker and returns its name: imported from the
/// cached tarball when there is one, built with debootstrap otherwise.
pub(crate) fn ensure(recipe: &Recipe, progress: &dyn Fn(&str)) -> Result<String, LabError> {
    let image = recipe.image();
    if docker::image_exists(&image)? {
        return Ok(image);
    }
    let cache = paths::cache_dir();
    fs::create_dir_all(&cache).map_err(LabError::io("create", &cache))?;
    let _lock = CacheLock::acquire(&cache, progress)?;
    // Another process may have made the image while this one waited for the lock.
    if docker::image_exists(&image)? {
        return Ok(image);
    }
    let tarball = cache.join(format!("rootfs-{}.tar", recipe.hash()));
    if !tarball.exists() {
        build_tarball(recipe, &cache, &tarball, progress)?;
    }
    progress(&format!("importing {image} from {}", tarball.display()));
    docker::import(&tarball, &image, &recipe.hash()).map_err(|source| LabError::ImageImport {
        image: image.clone(),
        tarball: tarball.clone(),
        source,
    })?;
    Ok(image)
}

/// Exclusive hold on the cache, so parallel `up` calls (tests) never build or import into
/// it at the same time. Released when dropped, or when the process dies.
struct CacheLock {
    _file: File,
}

impl CacheLock {
    fn acquire(cache: &Path, progress: &dyn Fn(&str)) -> Result<CacheLock, LabError> {
        let path = cache.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LabError::io("open", &path))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            progress("waiting for another metalk8s process that is building the lab node image");
            flock(&file, FlockOperation::LockExclusive)
                .map_err(|errno| LabError::io("lock", &path)(errno.into()))?;
        }
        Ok(CacheLock { _file: file })
    }
}

fn build_tarball(
    recipe: &Recipe,
    cache: &Path,
    tarball: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    cmd::require(
        "debootstrap",
        "install it with `apt-get install -y debootstrap`",
    )?;
    let hash = recipe.hash();
    let image = recipe.image();
    let work = cache.join(format!("build-{hash}"));
    let log = cache.join(format!("build-{hash}.log"));
    let failed = |source| LabError::ImageBuild {
        image: image.clone(),
        log: log.clone(),
        source,
    };
    progress(&format!(
        "building the lab node image {image} with debootstrap: first time only, this takes a few minutes (log: {})",
        log.display()
    ));
    // Leftovers of an interrupted build are unusable: start again from nothing.
    remove_tree(&work).map_err(failed)?;
    let _ = fs::remove_file(&log);
    fs::create_dir_all(&work).map_err(LabError::io("create", &work))?;
    let rootfs = work.join("rootfs");

    let debs = cache.join("debs");
    fs::create_dir_all(&debs).map_err(LabError::io("create", &debs))?;
    cmd::run_logged(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            // Kept across builds so a changed recipe does not download everything again.
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(format!("--include={}", recipe.packages.join(",")))
            .args([recipe.suite, &rootfs.display().to_string(), recipe.mirror]),
        &log,
    )
    .map_err(failed)?;

    progress("preparing the node root filesystem (sshd, masked units, apt sources)");
    let script = rootfs.join("tmp/metalk8s-lab-setup.sh");
    fs::write(&script, recipe.setup_script).map_err(LabError::io("write", &script))?;
    cmd::run_logged(
        Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/sh", "/tmp/metalk8s-lab-setup.sh"]),
        &log,
    )
    .map_err(failed)?;
    fs::remove_file(&script).map_err(LabError::io("remove", &script))?;

    // Written aside and renamed, so a tarball in the cache is always complete.
    let partial = tarball.with_extension("tar.partial");
    cmd::run_logged(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
        &log,
    )
    .map_err(failed)?;
    fs::rename(&partial, tarball).map_err(LabError::io("rename", &partial))?;
    remove_tree(&work).map_err(failed)?;
    remove_stale_files(cache, &hash);
    Ok(())
}

/// Removes a build directory. An interrupted debootstrap can leave /proc or /sys mounted
/// inside it: those are unmounted first, and `rm --one-file-system` guarantees nothing
/// of the host is ever deleted through a mount that remained.
fn remove_tree(dir: &Path) -> Result<(), crate::error::CommandError> {
    if !dir.exists() {
        return Ok(());
    }
    for mount in mounts_under(dir).into_iter().rev() {
        let _ = cmd::run(Command::new("umount").arg("--lazy").arg(&mount));
    }
    cmd::run(
        Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(dir),
    )
    .map(drop)
}

/// Mount points at or below `dir`, parents first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(escaped.replace("\\040", " ")))
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// Tarballs and build logs of older recipes are never used again; a tarball is several
/// hundred MB.
fn remove_stale_files(cache: &Path, hash: &str) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let built = (name.starts_with("rootfs-") && name.ends_with(".tar"))
            || (name.starts_with("build-") && name.ends_with(".log"));
        if built && !name.contains(hash) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_hash_is_stable_and_names_the_image() {
        assert_eq!(RECIPE.hash(), RECIPE.hash());
        assert_eq!(RECIPE.hash().len(), 16);
        assert!(RECIPE.image().starts_with("metalk8s-lab-node:"));
    }

    #[test]
    fn recipe_hash_changes_with_the_setup_script() {
        let changed = Recipe {
            setup_script: "true",
            ..RECIPE
        };
        assert_ne!(changed.hash(), RECIPE.hash());
    }
}
