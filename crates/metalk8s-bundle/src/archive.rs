//! A bundle as one `.tar.zst` file.
//!
//! Written deterministically: `manifest.json`, `manifest.json.sig`, then every artifact in
//! manifest order; owner 0:0, no user names, mtime = the manifest's `created`, mode 0755
//! for `bin/` and 0644 otherwise, regular files only. The same bundle directory always
//! gives the same bytes.
//!
//! Read as a stream: entries are hashed as they pass, never written anywhere, and any
//! entry that is not a plain file or directory with a safe relative name is refused, as
//! is a name seen twice. A leading `./` (as `tar -C DIR .` writes) is accepted. [`unpack`]
//! applies the same checks to every entry before it writes it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tar::{EntryType, Header};

use crate::unpack::{EntryKind, classify};
use crate::walk::sha256_reader;
use crate::{ArtifactKind, BundleError, MANIFEST_FILE, Manifest, SIGNATURE_FILE};

/// zstd level of `bundle build`: fast, and most of a bundle is compressed already.
const ZSTD_LEVEL: i32 = 3;
/// Larger manifests or signatures are not read into memory.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
const MAX_SIGNATURE_BYTES: u64 = 4 << 10;

/// Writes the signed bundle in `dir`, described by `manifest`, as a `.tar.zst` stream.
pub fn write_archive(dir: &Path, manifest: &Manifest, out: impl Write) -> Result<(), BundleError> {
    let mtime = u64::try_from(manifest.created.unix_timestamp()).unwrap_or(0);
    let encoder = zstd::Encoder::new(out, ZSTD_LEVEL).map_err(BundleError::io(dir))?;
    let mut tar = tar::Builder::new(encoder);
    let entries = [MANIFEST_FILE, SIGNATURE_FILE]
        .into_iter()
        .map(|path| (path, 0o644))
        .chain(
            manifest
                .artifacts
                .iter()
                .map(|artifact| (artifact.path.as_str(), artifact.kind.mode())),
        );
    for (path, mode) in entries {
        let source = dir.join(path);
        let file = File::open(&source).map_err(BundleError::io(&source))?;
        let size = file.metadata().map_err(BundleError::io(&source))?.len();
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, path, BufReader::new(file))
            .map_err(BundleError::io(&source))?;
    }
    let encoder = tar.into_inner().map_err(BundleError::io(dir))?;
    encoder.finish().map_err(BundleError::io(dir))?;
    Ok(())
}

/// The manifest of the archive at `path`, unverified (for showing what a bundle claims to
/// hold): the archive is read until it is found.
pub(crate) fn read_archive_manifest(path: &Path) -> Result<Vec<u8>, BundleError> {
    let mut manifest_bytes = None;
    for_each_file(path, |name, _, entry| {
        if name == MANIFEST_FILE {
            manifest_bytes = Some(read_limited(entry, MAX_MANIFEST_BYTES, &name)?);
            return Ok(false);
        }
        Ok(true)
    })?;
    manifest_bytes.ok_or_else(|| BundleError::MissingFromArchive {
        archive: path.to_owned(),
        name: MANIFEST_FILE,
    })
}

/// Verifies the bundle archive at `path` in one pass, failing at the first entry that
/// gives it away: its first two files must be the manifest and its signature, checked at
/// once; every later file must be listed, no longer than its signed size (known from the
/// tar header before a byte of it is read), and hash to its signed sha256. A forged or
/// padded archive is refused after reading no more than its first entries.
pub(crate) fn verify_archive(
    path: &Path,
    public_key: &ed25519_dalek::VerifyingKey,
) -> Result<Manifest, BundleError> {
    let mut manifest_bytes = None;
    let mut signature_text = None;
    let mut manifest: Option<Manifest> = None;
    let mut seen = BTreeSet::new();
    for_each_file(path, |name, size, entry| {
        let Some(manifest) = &manifest else {
            match name.as_str() {
                MANIFEST_FILE => {
                    manifest_bytes = Some(read_limited(entry, MAX_MANIFEST_BYTES, &name)?)
                }
                SIGNATURE_FILE => {
                    let bytes = read_limited(entry, MAX_SIGNATURE_BYTES, &name)?;
                    signature_text = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                _ => {
                    return Err(BundleError::SignedPartsNotFirst {
                        archive: path.to_owned(),
                        found: name,
                    });
                }
            }
            if let (Some(bytes), Some(signature)) = (&manifest_bytes, &signature_text) {
                manifest = Some(crate::verify::check_signed(bytes, signature, public_key)?);
            }
            return Ok(true);
        };
        let artifact = manifest
            .artifacts
            .iter()
            .find(|artifact| artifact.path == name)
            .ok_or_else(|| BundleError::UnlistedFile { path: name.clone() })?;
        if size > artifact.size {
            return Err(BundleError::SizeMismatch {
                path: name,
                expected: artifact.size,
                found: size,
            });
        }
        let observed = sha256_reader(entry).map_err(|source| BundleError::ArchiveRead {
            path: path.to_owned(),
            source,
        })?;
        crate::verify::check_artifact(artifact, Some(observed))?;
        seen.insert(name);
        Ok(true)
    })?;
    let missing = |name| BundleError::MissingFromArchive {
        archive: path.to_owned(),
        name,
    };
    let manifest = match manifest {
        Some(manifest) => manifest,
        None if manifest_bytes.is_none() => return Err(missing(MANIFEST_FILE)),
        None => return Err(missing(SIGNATURE_FILE)),
    };
    for artifact in &manifest.artifacts {
        if !seen.contains(&artifact.path) {
            crate::verify::check_artifact(artifact, None)?;
        }
    }
    Ok(manifest)
}

/// Unpacks the bundle archive `archive` into the empty directory `into` (created when
/// missing). Every name is checked before anything is written: an absolute path, `..`, a
/// link of any kind, a device or fifo, or a name seen twice is refused, so nothing can
/// land outside `into`. Files of `bin/` are made executable, as in the archive.
///
/// This does not verify the bundle: call [`crate::verify_bundle`] on the archive first to
/// know it is worth unpacking, and [`crate::verify`] on `into` to know what was written.
pub fn unpack(archive: &Path, into: &Path) -> Result<(), BundleError> {
    fs::create_dir_all(into).map_err(BundleError::io(into))?;
    for_each_file(archive, |name, _, entry| {
        let target = into.join(&name);
        let parent = target.parent().unwrap_or(into);
        fs::create_dir_all(parent).map_err(BundleError::io(parent))?;
        let mode = ArtifactKind::from_path(&name).map_or(0o644, ArtifactKind::mode);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&target)
            .map_err(BundleError::io(&target))?;
        io::copy(entry, &mut file).map_err(BundleError::io(&target))?;
        Ok(true)
    })
}

/// Calls `visit` with the checked, normalized name and the content of every file of the
/// bundle archive at `path`, in archive order, until it returns `false`. Directories are
/// passed over; any other entry that is not a regular file with a safe relative name is
/// refused, and so is a name seen twice, before `visit` sees it.
fn for_each_file(
    path: &Path,
    mut visit: impl FnMut(String, u64, &mut dyn Read) -> Result<bool, BundleError>,
) -> Result<(), BundleError> {
    let read_error = |source| BundleError::ArchiveRead {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let decoder = zstd::Decoder::new(file).map_err(read_error)?;
    let mut tar = tar::Archive::new(decoder);
    let mut seen = BTreeSet::new();
    for entry in tar.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = classify(&entry).map_err(|reason| BundleError::UnsafeEntry {
            path: raw_name.clone(),
            reason,
        })?;
        let name = match kind {
            EntryKind::File(name) => name,
            EntryKind::Directory | EntryKind::Ignored => continue,
            EntryKind::Link { .. } => {
                return Err(BundleError::UnsafeEntry {
                    path: raw_name,
                    reason: "links are not allowed in a bundle",
                });
            }
        };
        if !seen.insert(name.clone()) {
            return Err(BundleError::DuplicateEntry { path: name });
        }
        let size = entry.header().size().map_err(read_error)?;
        if !visit(name, size, &mut entry)? {
            break;
        }
    }
    Ok(())
}

fn read_limited(entry: &mut dyn Read, limit: u64, path: &str) -> Result<Vec<u8>, BundleError> {
    let mut bytes = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BundleError::Io {
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(BundleError::Io {
            path: path.into(),
            source: io::Error::other(format!("larger than {limit} bytes")),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use ed25519_dalek::SigningKey;
    use time::OffsetDateTime;

    use super::*;
    use crate::unpack::tests::{RawEntry, raw_tar};
    use crate::{build_manifest, verify_bundle, write_signed};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    /// A signed bundle directory and its archive.
    fn bundle() -> (tempfile::TempDir, Manifest, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bundle");
        for (path, contents) in [
            ("bin/tool", &b"#!/bin/true\n"[..]),
            ("debs/a_1_all.deb", b"DEB-PAYLOAD"),
            (
                "images/a-very-long-image-name-to-need-long-paths/blobs/sha256/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                b"blob",
            ),
        ] {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        let created = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let manifest = build_manifest(&root, "1.0.0", created, vec![]).unwrap();
        write_signed(&root, &manifest, &key()).unwrap();
        let mut bytes = Vec::new();
        write_archive(&root, &manifest, &mut bytes).unwrap();
        (dir, manifest, bytes)
    }

    fn verify_bytes(dir: &Path, bytes: &[u8]) -> Result<Manifest, BundleError> {
        let path = dir.join("test.tar.zst");
        fs::write(&path, bytes).unwrap();
        verify_bundle(&path, &key().verifying_key()).map(|verified| verified.manifest)
    }

    fn tar_of(bytes: &[u8]) -> Vec<u8> {
        zstd::decode_all(bytes).unwrap()
    }

    fn zst(tar: &[u8]) -> Vec<u8> {
        zstd::encode_all(tar, 3).unwrap()
    }

    #[test]
    fn an_archive_is_deterministic_and_verifies() {
        let (dir, manifest, bytes) = bundle();
        let mut again = Vec::new();
        write_archive(&dir.path().join("bundle"), &manifest, &mut again).unwrap();
        assert_eq!(again, bytes);
        assert_eq!(verify_bytes(dir.path(), &bytes).unwrap(), manifest);

        let plain = tar_of(&bytes);
        let mut tar = tar::Archive::new(&plain[..]);
        let headers: Vec<(String, u32, u64, u64)> = tar
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    header.mode().unwrap(),
                    header.mtime().unwrap(),
                    header.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            headers[0],
            ("manifest.json".into(), 0o644, 1_700_000_000, 0)
        );
        assert_eq!(headers[1].0, "manifest.json.sig");
        assert_eq!(headers[2], ("bin/tool".into(), 0o755, 1_700_000_000, 0));
        assert!(headers[4].0.ends_with("0123456789abcdef"));
    }

    #[test]
    fn an_unpacked_archive_is_the_bundle_directory_again() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, manifest, bytes) = bundle();
        let archive = dir.path().join("bundle.tar.zst");
        fs::write(&archive, &bytes).unwrap();
        let into = dir.path().join("unpacked");
        unpack(&archive, &into).unwrap();
        let verified = crate::verify(&into, &key().verifying_key()).unwrap();
        assert_eq!(verified.manifest, manifest);
        let mode = |path: &str| fs::metadata(into.join(path)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/tool"), 0o755);
        assert_eq!(mode("debs/a_1_all.deb"), 0o644);
        // Unpacking again over the same files is refused: nothing is overwritten.
        let error = unpack(&archive, &into).unwrap_err();
        assert!(matches!(error, BundleError::Io { .. }), "{error:?}");
    }

    #[test]
    fn a_flipped_byte_names_the_artifact() {
        let (dir, _, bytes) = bundle();
        let mut tar = tar_of(&bytes);
        let at = tar.windows(11).position(|w| w == b"DEB-PAYLOAD").unwrap();
        tar[at] ^= 1;
        let error = verify_bytes(dir.path(), &zst(&tar)).unwrap_err();
        assert!(
            matches!(&error, BundleError::Sha256Mismatch { path, .. } if path == "debs/a_1_all.deb"),
            "{error:?}"
        );
    }

    #[test]
    fn an_edited_manifest_is_a_bad_signature() {
        let (dir, _, bytes) = bundle();
        let mut tar = tar_of(&bytes);
        let needle = b"\"version\": \"1.0.0\"";
        let at = tar.windows(needle.len()).position(|w| w == needle).unwrap();
        tar[at + needle.len() - 2] = b'1';
        let error = verify_bytes(dir.path(), &zst(&tar)).unwrap_err();
        assert!(matches!(error, BundleError::BadSignature), "{error:?}");
    }

    /// Verifying and unpacking refuse the same entries; unpacking writes nothing of them.
    #[test]
    fn hostile_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[RawEntry<'_>], &str); 8] = [
            (
                &[("../escape", EntryType::Regular, "", b"x")],
                "`..` in the path",
            ),
            (
                &[("bin/../../escape", EntryType::Regular, "", b"x")],
                "`..` in the path",
            ),
            (
                &[("/etc/passwd", EntryType::Regular, "", b"x")],
                "absolute path",
            ),
            (
                &[("bin/tool", EntryType::Symlink, "/etc/shadow", b"")],
                "symlink to an absolute path",
            ),
            (
                &[("bin/tool", EntryType::Symlink, "../../escape", b"")],
                "symlink leaves the archive",
            ),
            (
                &[("bin/tool", EntryType::Symlink, "other", b"")],
                "links are not allowed in a bundle",
            ),
            (
                &[("bin/hard", EntryType::Link, "bin/tool", b"")],
                "links are not allowed in a bundle",
            ),
            (
                &[("bin/pipe", EntryType::Fifo, "", b"")],
                "a device, fifo or other special file",
            ),
        ];
        for (index, (entries, reason)) in cases.into_iter().enumerate() {
            let bytes = zst(&raw_tar(entries));
            let error = verify_bytes(dir.path(), &bytes).unwrap_err();
            assert!(
                matches!(&error, BundleError::UnsafeEntry { reason: found, .. } if *found == reason),
                "{entries:?}: {error:?}"
            );
            let archive = dir.path().join("test.tar.zst");
            let into = dir.path().join(format!("into/{index}"));
            let error = unpack(&archive, &into).unwrap_err();
            assert!(
                matches!(&error, BundleError::UnsafeEntry { reason: found, .. } if *found == reason),
                "{entries:?}: {error:?}"
            );
            assert_eq!(fs::read_dir(&into).unwrap().count(), 0, "{entries:?}");
        }
        assert!(!dir.path().join("escape").exists());
        let twice = raw_tar(&[
            ("bin/tool", EntryType::Regular, "", b"a"),
            ("./bin/tool", EntryType::Regular, "", b"b"),
        ]);
        // Verification stops earlier still: nothing comes before the signed manifest.
        let error = verify_bytes(dir.path(), &zst(&twice)).unwrap_err();
        assert!(
            matches!(&error, BundleError::SignedPartsNotFirst { found, .. } if found == "bin/tool"),
            "{error:?}"
        );
        let error = unpack(&dir.path().join("test.tar.zst"), &dir.path().join("twice"));
        assert!(
            matches!(&error, Err(BundleError::DuplicateEntry { path }) if path == "bin/tool"),
            "{error:?}"
        );
    }

    /// The archive of `bundle()` with its entries rearranged or replaced by `edit`.
    fn edited(bytes: &[u8], edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
        let plain = tar_of(bytes);
        let mut tar = tar::Archive::new(&plain[..]);
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            entries.push((path, data));
        }
        edit(&mut entries);
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in &entries {
            let mut header = Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, &data[..]).unwrap();
        }
        zst(&builder.into_inner().unwrap())
    }

    /// A padded or forged archive is refused at its first telling entry: a large file
    /// ahead of the signed manifest, or a listed file longer than its signed size.
    #[test]
    fn verification_refuses_at_the_first_entry_that_gives_the_archive_away() {
        let (dir, _, bytes) = bundle();
        let zeros = vec![0u8; 8 << 20];
        let padded_first = edited(&bytes, |entries| {
            entries.insert(0, ("debs/zeros_1_all.deb".to_owned(), zeros.clone()));
        });
        let error = verify_bytes(dir.path(), &padded_first).unwrap_err();
        assert!(
            matches!(&error, BundleError::SignedPartsNotFirst { found, .. } if found == "debs/zeros_1_all.deb"),
            "{error:?}"
        );
        let grown = edited(&bytes, |entries| {
            let deb = entries
                .iter_mut()
                .find(|(path, _)| path == "debs/a_1_all.deb")
                .unwrap();
            deb.1 = zeros.clone();
        });
        let error = verify_bytes(dir.path(), &grown).unwrap_err();
        assert!(
            matches!(&error, BundleError::SizeMismatch { path, found, .. } if path == "debs/a_1_all.deb" && *found == 8 << 20),
            "{error:?}"
        );
        let signature_last = edited(&bytes, |entries| {
            let signature = entries.remove(1);
            entries.push(signature);
        });
        assert!(matches!(
            verify_bytes(dir.path(), &signature_last).unwrap_err(),
            BundleError::SignedPartsNotFirst { .. }
        ));
    }

    #[test]
    fn an_extra_entry_and_a_missing_one_are_named() {
        let (dir, manifest, bytes) = bundle();
        let extra = edited(&bytes, |entries| {
            entries.push(("debs/evil.deb".into(), b"x".to_vec()));
        });
        let error = verify_bytes(dir.path(), &extra).unwrap_err();
        assert!(
            matches!(&error, BundleError::UnlistedFile { path } if path == "debs/evil.deb"),
            "{error:?}"
        );
        let missing = edited(&bytes, |entries| {
            entries.retain(|(path, _)| path != "bin/tool");
        });
        let error = verify_bytes(dir.path(), &missing).unwrap_err();
        assert_eq!(
            error.to_string(),
            "artifact bin/tool: missing from the bundle"
        );
        // Reading only the manifest (for `inspect`) works on any order of entries.
        let path = dir.path().join("reordered.tar.zst");
        fs::write(&path, edited(&bytes, |entries| entries.reverse())).unwrap();
        assert_eq!(crate::read_manifest(&path).unwrap(), manifest);
    }
}
