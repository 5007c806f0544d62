//! `deploy --bundle`: the offline bundle, verified here, staged on the bootstrap node under
//! `/var/lib/metalk8s/bundles/<version>/` with `current` pointing at it; and which bundle
//! is staged there, for the planner (`metalk8s_plan::StagedBundle`).
//!
//! Staging is resumable and never exposes half a bundle: files go to `<version>.partial`,
//! are checked there with `sha256sum -c` against the manifest, and the directory is renamed
//! into place only then; `current` moves last, atomically (a new link renamed over it). A
//! version already staged with the same manifest bytes is not uploaded again, once its
//! staged files are found to still match the manifest (otherwise it is staged again).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use metalk8s_bundle::{MANIFEST_FILE, Manifest, SIGNATURE_FILE, VerifiedBundle};
use metalk8s_model::repository as repo;
use metalk8s_plan::{BundleBinary, BundleImage, StagedBundle};
use metalk8s_transport::{Command, Host, quote};
use sha2::{Digest, Sha256};

use super::OpsError;

/// The bundle given to `deploy`, not yet checked.
#[derive(Clone, Debug)]
pub struct BundleSource {
    /// A bundle directory or `.tar.zst`.
    pub path: PathBuf,
    /// The trusted public key: 64 hex digits or a file holding them.
    pub public_key: String,
}

/// A verified bundle directory on this machine (an archive is unpacked into `_scratch`).
struct LocalBundle {
    dir: PathBuf,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    _scratch: Option<tempfile::TempDir>,
}

/// What the planner needs to know of a bundle.
pub fn staged_bundle(manifest: &Manifest) -> StagedBundle {
    StagedBundle {
        version: manifest.version.clone(),
        dir: repo::bundle_dir(&manifest.version),
        images: manifest
            .images()
            .into_iter()
            .map(|image| BundleImage {
                name: image.name.to_owned(),
                tag: image.tag.to_owned(),
            })
            .collect(),
        packages: manifest.packages().into_iter().map(str::to_owned).collect(),
        binaries: manifest
            .binaries()
            .into_iter()
            .map(|binary| BundleBinary {
                name: binary.name.to_owned(),
                version: binary.version.to_owned(),
                sha256: binary.sha256.to_owned(),
            })
            .collect(),
        kubernetes_version: manifest.kubernetes_version().map(str::to_owned),
    }
}

/// Verifies `source` here, then stages it on the bootstrap node (a dry run only says what
/// it would stage) and returns what is staged.
pub async fn stage(
    bootstrap: &Arc<dyn Host>,
    source: &BundleSource,
    dry_run: bool,
) -> Result<StagedBundle, OpsError> {
    let source = source.clone();
    let local = tokio::task::spawn_blocking(move || verified_locally(&source))
        .await
        .map_err(|error| OpsError::local(format!("bundle verification: {error}")))??;
    check_manifest(&local.manifest)?;
    let staged = staged_bundle(&local.manifest);
    let manifest_sha256 = hex::encode(Sha256::digest(&local.manifest_bytes));
    let remote_sha256 = run(
        bootstrap.as_ref(),
        &format!(
            "sha256sum {}/{MANIFEST_FILE} 2>/dev/null | cut -d' ' -f1; true",
            staged.dir
        ),
    )
    .await?;
    let already = remote_sha256.trim() == manifest_sha256;
    if dry_run {
        eprintln!(
            "bundle {}: {} on {}",
            staged.version,
            if already {
                format!("already staged in {}", staged.dir)
            } else {
                format!(
                    "would be staged in {} ({} files)",
                    staged.dir,
                    local.manifest.artifacts.len() + 2
                )
            },
            bootstrap.name()
        );
        return Ok(staged);
    }
    // The same manifest staged: its files are checked where they are, and staged again
    // when one was changed or lost since (a corrupted file would otherwise stay).
    let intact = if already {
        match files_match(bootstrap.as_ref(), &staged.dir, &local.manifest).await? {
            Ok(()) => true,
            Err(problem) => {
                eprintln!(
                    "bundle {}: the files staged on {} differ from its manifest ({problem}): staging it again",
                    staged.version,
                    bootstrap.name()
                );
                false
            }
        }
    } else {
        false
    };
    if intact {
        eprintln!(
            "bundle {}: already staged on {}",
            staged.version,
            bootstrap.name()
        );
    } else {
        upload(bootstrap.as_ref(), &local, &staged).await?;
    }
    run(
        bootstrap.as_ref(),
        &format!(
            "ln -sfn {version} {current}.new && mv -T {current}.new {current}",
            version = staged.version,
            current = repo::CURRENT_BUNDLE
        ),
    )
    .await?;
    Ok(staged)
}

/// The bundle `current` points at on the bootstrap node, if any.
pub async fn read_staged(bootstrap: &dyn Host) -> Result<Option<StagedBundle>, OpsError> {
    let output = bootstrap
        .run(
            &Command::new(format!(
                "test -L {current} || exit 3; cat {current}/{MANIFEST_FILE}",
                current = repo::CURRENT_BUNDLE
            ))
            .as_root(),
        )
        .await?;
    if output.status == 3 {
        return Ok(None);
    }
    if !output.success() {
        return Err(OpsError::on_node(format!(
            "{}: cannot read the staged bundle's manifest {}/{MANIFEST_FILE}: {}",
            bootstrap.name(),
            repo::CURRENT_BUNDLE,
            output.stderr_text().trim()
        )));
    }
    let manifest = Manifest::from_json(&output.stdout).map_err(|error| {
        OpsError::on_node(format!(
            "{}: the staged bundle's manifest is unreadable: {error}",
            bootstrap.name()
        ))
    })?;
    // Read back from the node, unsigned: checked as strictly as a bundle about to be
    // staged, since its names end up in units, paths and commands.
    check_manifest(&manifest).map_err(|error| OpsError::OnNode {
        message: format!(
            "{}: the staged bundle's manifest {}/{MANIFEST_FILE} is refused: {error}",
            bootstrap.name(),
            repo::CURRENT_BUNDLE
        ),
        help: Some(
            "stage a bundle again with `metalk8s deploy --bundle … --bundle-key …`".to_owned(),
        ),
    })?;
    Ok(Some(staged_bundle(&manifest)))
}

/// What the deploy takes from a manifest into unit files, paths and commands, held to
/// narrow shapes: the version names a directory; artifact paths are relative, without
/// `..`, of characters a shell word needs no quoting for (a package's epoch is `%3a` in
/// its file name); images and binaries have valid names and tags (the manifest
/// parser already refuses `..` and an invalid Kubernetes version). A signed bundle cannot
/// smuggle a shell word or a path out of its directory through any of them.
fn check_manifest(manifest: &Manifest) -> Result<(), OpsError> {
    check_version(&manifest.version)?;
    let refuse = |what: String| {
        OpsError::Invalid {
            message: format!("bundle {}: {what}", manifest.version),
            help: Some(
                "rebuild the bundle with `metalk8s bundle build` from a spec that names only plain files, images and versions".to_owned(),
            ),
        }
    };
    for artifact in &manifest.artifacts {
        let plain = artifact
            .path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~@:=%-/".contains(c));
        let climbs = artifact
            .path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
        if !plain || climbs || artifact.path.starts_with('/') {
            return Err(refuse(format!(
                "artifact path {:?} is not a plain relative path",
                artifact.path
            )));
        }
    }
    for image in manifest.images() {
        if !metalk8s_model::oci::is_repository_name(image.name)
            || !metalk8s_model::oci::is_tag(image.tag)
        {
            return Err(refuse(format!(
                "image {:?}:{:?} is not a valid name and tag",
                image.name, image.tag
            )));
        }
    }
    for binary in manifest.binaries() {
        let plain = !binary.name.is_empty()
            && binary
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !binary.name.starts_with('.');
        if !plain {
            return Err(refuse(format!(
                "binary name {:?} is not a plain file name",
                binary.name
            )));
        }
    }
    Ok(())
}

/// The version names a directory: nothing that could climb out of the bundles directory.
fn check_version(version: &str) -> Result<(), OpsError> {
    let valid = !version.is_empty()
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~-".contains(c));
    if valid && version != "current" {
        Ok(())
    } else {
        Err(OpsError::invalid(format!(
            "bundle version {version:?} cannot name a directory on the bootstrap node"
        )))
    }
}

fn verified_locally(source: &BundleSource) -> Result<LocalBundle, OpsError> {
    let key = metalk8s_bundle::public_key_from_hex_or_file(&source.public_key)?;
    let verify = |path: &Path| -> Result<VerifiedBundle, OpsError> {
        metalk8s_bundle::verify_bundle(path, &key).map_err(|error| {
            OpsError::invalid(format!(
                "bundle {} does not verify: {}",
                source.path.display(),
                metalk8s_model::report::error_chain(&error)
            ))
        })
    };
    let verified = verify(&source.path)?;
    let (dir, scratch) = if source.path.is_dir() {
        (source.path.clone(), None)
    } else {
        // Unpacked only once the archive verified; the copy is verified again, as what is
        // uploaded is the copy.
        let scratch = tempfile::tempdir().map_err(|error| {
            OpsError::local(format!("cannot make a scratch directory: {error}"))
        })?;
        metalk8s_bundle::unpack(&source.path, scratch.path()).map_err(|error| {
            OpsError::local(format!(
                "cannot unpack bundle {}: {}",
                source.path.display(),
                metalk8s_model::report::error_chain(&error)
            ))
        })?;
        verify(scratch.path())?;
        (scratch.path().to_owned(), Some(scratch))
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&manifest_path).map_err(|error| {
        OpsError::local(format!("cannot read {}: {error}", manifest_path.display()))
    })?;
    Ok(LocalBundle {
        dir,
        manifest: verified.manifest,
        manifest_bytes,
        _scratch: scratch,
    })
}

async fn upload(
    host: &dyn Host,
    local: &LocalBundle,
    staged: &StagedBundle,
) -> Result<(), OpsError> {
    let partial = format!("{}.partial", staged.dir);
    let mut directories: Vec<String> = local
        .manifest
        .artifacts
        .iter()
        .filter_map(|artifact| {
            let (parent, _) = artifact.path.rsplit_once('/')?;
            Some(quote(&format!("{partial}/{parent}")))
        })
        .collect();
    directories.sort();
    directories.dedup();
    run(
        host,
        &format!(
            "rm -rf {partial} && mkdir -p -m 0755 {} {partial} && chmod 0755 {}",
            repo::BUNDLES_DIR,
            repo::BUNDLES_DIR
        ),
    )
    .await?;
    for chunk in directories.chunks(200) {
        run(host, &format!("mkdir -p {}", chunk.join(" "))).await?;
    }
    let total = local.manifest.artifacts.len();
    eprintln!(
        "bundle {}: uploading {total} files to {}:{}",
        staged.version,
        host.name(),
        staged.dir
    );
    for artifact in &local.manifest.artifacts {
        let contents = std::fs::read(local.dir.join(&artifact.path))
            .map_err(|error| OpsError::local(format!("cannot read {}: {error}", artifact.path)))?;
        put(
            host,
            &format!("{partial}/{}", artifact.path),
            &contents,
            artifact.kind.mode(),
        )
        .await?;
    }
    let signature = std::fs::read(local.dir.join(SIGNATURE_FILE))
        .map_err(|error| OpsError::local(format!("cannot read {SIGNATURE_FILE}: {error}")))?;
    put(
        host,
        &format!("{partial}/{SIGNATURE_FILE}"),
        &signature,
        0o644,
    )
    .await?;
    put(
        host,
        &format!("{partial}/{MANIFEST_FILE}"),
        &local.manifest_bytes,
        0o644,
    )
    .await?;
    // Every file checked where it landed, then the directory renamed into place.
    if let Err(problem) = files_match(host, &partial, &local.manifest).await? {
        return Err(OpsError::on_node(format!(
            "{}: the staged bundle does not match its manifest: {problem}",
            host.name()
        )));
    }
    run(
        host,
        &format!(
            "rm -rf {dir} && mv {partial} {dir}",
            partial = quote(&partial),
            dir = quote(&staged.dir)
        ),
    )
    .await?;
    Ok(())
}

/// Whether every artifact of `manifest` is in `dir` on `host` with its size and sha256
/// (`sha256sum -c`): `Err` says which are not.
async fn files_match(
    host: &dyn Host,
    dir: &str,
    manifest: &Manifest,
) -> Result<Result<(), String>, OpsError> {
    let mut sums = String::new();
    for artifact in &manifest.artifacts {
        sums.push_str(&format!("{}  {}\n", artifact.sha256, artifact.path));
    }
    let check = Command::new(format!(
        "cd {dir} && sha256sum --quiet --strict -c -",
        dir = quote(dir)
    ))
    .as_root()
    .stdin(sums.into_bytes());
    let output = host.run(&check).await?;
    Ok(if output.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            output.stdout_text().trim(),
            output.stderr_text().trim()
        ))
    })
}

async fn put(host: &dyn Host, path: &str, contents: &[u8], mode: u32) -> Result<(), OpsError> {
    host.upload(path, contents, mode, true)
        .await
        .map_err(|error| {
            OpsError::on_node(format!(
                "cannot upload {path} to {}: {}",
                host.name(),
                metalk8s_model::report::error_chain(&error)
            ))
        })
}

/// Runs `script` as root on `host`; its standard output, or a failure naming the host.
async fn run(host: &dyn Host, script: &str) -> Result<String, OpsError> {
    let output = host.run(&Command::new(script).as_root()).await?;
    if !output.success() {
        return Err(OpsError::on_node(format!(
            "{}: `{script}` failed: {}",
            host.name(),
            output.stderr_text().trim()
        )));
    }
    Ok(output.stdout_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_could_escape_the_bundles_directory_are_refused() {
        for good in ["1.0.0", "2024.1-rc1", "1.0+build~1"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "..", "../x", "a/b", ".hidden", "current", "a b"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    /// A manifest with one artifact at `path`, one image and one binary as given.
    fn manifest_with(path: &str, image: (&str, &str), binary: &str, kubernetes: &str) -> Manifest {
        let json = serde_json::json!({
            "apiVersion": "metalk8s.io/v1alpha1", "kind": "BundleManifest", "version": "1.2.3",
            "kubernetesVersion": kubernetes, "created": "2026-01-01T00:00:00Z",
            "components": [{"name": image.0, "version": image.1, "origin": "x"},
                           {"name": binary, "version": "1.0.0", "origin": "y"}],
            "artifacts": [{"path": path, "kind": "deb", "sha256": "00", "size": 1},
                          {"path": format!("images/{}/index.json", image.0), "kind": "ociLayout", "sha256": "00", "size": 1},
                          {"path": format!("bin/{binary}"), "kind": "binary", "sha256": "00", "size": 1}],
        });
        Manifest::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    #[test]
    fn a_manifest_cannot_smuggle_a_shell_word_or_a_path_into_the_deploy() {
        // (`..` in a path is refused by the manifest parser itself.)
        let good = manifest_with(
            "debs/conntrack_1%3a1.4.7-1+b2_amd64.deb",
            ("coredns/coredns", "v1.13.1"),
            "kubelet",
            "1.36.4",
        );
        assert!(check_manifest(&good).is_ok());
        for (manifest, why) in [
            (
                manifest_with("images/a;reboot/x", ("pause", "3.9"), "kubelet", "1.36.4"),
                "artifact path",
            ),
            (
                manifest_with("debs/x.deb", ("pause", "3.9$(id)"), "kubelet", "1.36.4"),
                "image",
            ),
            (
                manifest_with("debs/x.deb", ("pause", "3.9"), "kube let", "1.36.4"),
                "artifact path",
            ),
        ] {
            let error = check_manifest(&manifest).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(why), "{why}: {text}");
            assert!(miette::Diagnostic::help(&error).is_some(), "{why}: no hint");
        }
    }

    #[test]
    fn the_planner_learns_the_version_images_packages_and_binaries_of_the_manifest() {
        let manifest = Manifest::from_json(
            br#"{"apiVersion":"metalk8s.io/v1alpha1","kind":"BundleManifest","version":"1.2.3",
            "kubernetesVersion":"1.36.4","created":"2026-01-01T00:00:00Z",
            "components":[{"name":"pause","version":"3.9","origin":"x"},
              {"name":"kubelet","version":"1.36.4","origin":"y"}],
            "artifacts":[{"path":"bin/kubelet","kind":"binary","sha256":"ab12","size":1},
              {"path":"debs/runc_1.1.5_amd64.deb","kind":"deb","sha256":"00","size":1},
              {"path":"images/pause/index.json","kind":"ociLayout","sha256":"00","size":1}]}"#,
        )
        .unwrap();
        let staged = staged_bundle(&manifest);
        assert_eq!(staged.version, "1.2.3");
        assert_eq!(staged.dir, "/var/lib/metalk8s/bundles/1.2.3");
        assert_eq!(staged.packages, ["runc"]);
        assert_eq!(
            staged.images,
            [BundleImage {
                name: "pause".to_owned(),
                tag: "3.9".to_owned()
            }]
        );
        assert_eq!(
            staged.binaries,
            [BundleBinary {
                name: "kubelet".to_owned(),
                version: "1.36.4".to_owned(),
                sha256: "ab12".to_owned(),
            }]
        );
        assert_eq!(staged.kubernetes_version.as_deref(), Some("1.36.4"));
    }

    /// A tiny signed bundle (one local binary) built here, with its public key.
    fn tiny_bundle(dir: &Path) -> BundleSource {
        std::fs::write(dir.join("tool"), b"#!/bin/sh\necho tool\n").unwrap();
        let spec = metalk8s_bundle::parse_spec(
            "apiVersion: metalk8s.io/v1alpha1\nkind: BundleSpec\nversion: 0.1.0-test\n\
             binaries:\n  - name: tool\n    version: 1.0.0\n    path: tool\n",
            &dir.join("bundle.yaml"),
            dir,
        )
        .unwrap();
        let key = metalk8s_bundle::generate_signing_key().unwrap();
        let public_key = metalk8s_bundle::public_key_to_hex(&key.verifying_key());
        let options = metalk8s_bundle::BuildOptions {
            out: dir.join("bundle"),
            cache: dir.join("cache"),
            signing_key: key,
            created: time::OffsetDateTime::UNIX_EPOCH,
            force: false,
        };
        metalk8s_bundle::build_bundle(&spec, &options, &metalk8s_bundle::Silent).unwrap();
        BundleSource {
            path: dir.join("bundle"),
            public_key,
        }
    }

    /// A bundle whose manifest is already staged is not uploaded again; `current` is
    /// still pointed at it.
    #[tokio::test]
    async fn an_already_staged_bundle_is_not_uploaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let source = tiny_bundle(dir.path());
        let manifest = std::fs::read(source.path.join(MANIFEST_FILE)).unwrap();
        let staged_sha = hex::encode(Sha256::digest(&manifest));
        let host = Arc::new(
            metalk8s_transport::fake::RecordingHost::new("node1")
                .on(
                    "sha256sum /var/lib/metalk8s/bundles/0.1.0-test/manifest.json",
                    metalk8s_transport::Output::ok(format!("{staged_sha}\n")),
                )
                .otherwise(metalk8s_transport::Output::ok("")),
        );
        let bootstrap: Arc<dyn Host> = host.clone();
        // (Every staged file hashes right: the fake answers the check with success.)
        let staged = stage(&bootstrap, &source, false)
            .await
            .unwrap_or_else(|error| panic!("{:?}", miette::Report::new(error)));
        assert_eq!(staged.version, "0.1.0-test");
        assert!(host.uploads().is_empty(), "{:?}", host.uploads());
        let scripts = host.scripts();
        assert!(
            scripts.iter().any(|s| s.contains("ln -sfn 0.1.0-test")),
            "{scripts:#?}"
        );

        // The same manifest, but a staged file changed since: staged again.
        let corrupted = Arc::new(
            metalk8s_transport::fake::RecordingHost::new("node1")
                .on(
                    "sha256sum /var/lib/metalk8s/bundles/0.1.0-test/manifest.json",
                    metalk8s_transport::Output::ok(format!("{staged_sha}\n")),
                )
                .on(
                    "cd /var/lib/metalk8s/bundles/0.1.0-test && sha256sum",
                    metalk8s_transport::Output::failed(1, "sha256sum: bin/tool: FAILED"),
                )
                .otherwise(metalk8s_transport::Output::ok("")),
        );
        let bootstrap: Arc<dyn Host> = corrupted.clone();
        stage(&bootstrap, &source, false).await.unwrap();
        assert!(
            corrupted
                .uploads()
                .iter()
                .any(|u| u.path.ends_with("bin/tool")),
            "{:?}",
            corrupted.uploads()
        );

        // Anything else on the node: the bundle is uploaded.
        let other = Arc::new(
            metalk8s_transport::fake::RecordingHost::new("node1")
                .otherwise(metalk8s_transport::Output::ok("")),
        );
        let bootstrap: Arc<dyn Host> = other.clone();
        let _ = stage(&bootstrap, &source, false).await;
        assert!(!other.uploads().is_empty(), "{:?}", other.scripts());
    }
}
