//! Reading tar archives that nobody vouched for yet: entry names are checked before
//! anything is written, and nothing outside the destination can be reached.
//!
//! Symbolic and hard links are never created on disk. A link whose target stays inside
//! the archive becomes a second copy (a hard link) of the file it points to, once the
//! whole archive is unpacked; one that leaves it, or points at a directory, is refused.
//! This is what `docker save` archives need: a layer shared by two images is written once
//! and linked from the other image's directory.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{}: cannot read the archive", archive.display())]
    Read {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: entry {entry:?} refused: {reason}", archive.display())]
    Unsafe {
        archive: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What an entry of an untrusted archive is, once its name is checked.
pub(crate) enum EntryKind {
    /// A regular file at this normalized path.
    File(String),
    Directory,
    /// A symbolic or hard link at `path` to `target`, both normalized paths inside the
    /// archive.
    Link {
        path: String,
        target: String,
    },
    /// Metadata the tar reader already applied (pax global headers).
    Ignored,
}

/// Classifies an entry: `Err` carries the reason it is refused.
pub(crate) fn classify<R: Read>(entry: &tar::Entry<'_, R>) -> Result<EntryKind, &'static str> {
    let kind = entry.header().entry_type();
    if kind == EntryType::XGlobalHeader {
        return Ok(EntryKind::Ignored);
    }
    let raw = entry.path_bytes();
    let name = std::str::from_utf8(&raw).map_err(|_| "name is not UTF-8")?;
    let path = normalize(name)?;
    match kind {
        EntryType::Regular | EntryType::Continuous => match path {
            Some(path) => Ok(EntryKind::File(path)),
            None => Err("a file without a name"),
        },
        EntryType::Directory => Ok(EntryKind::Directory),
        EntryType::Symlink | EntryType::Link => {
            let path = path.ok_or("a link without a name")?;
            let target_raw = entry.link_name_bytes().ok_or("a link without a target")?;
            let target = std::str::from_utf8(&target_raw).map_err(|_| "target is not UTF-8")?;
            let target = if kind == EntryType::Link {
                // Hard link targets are archive paths.
                normalize(target)?.ok_or("a link to the archive root")?
            } else {
                resolve_symlink(&path, target)?
            };
            Ok(EntryKind::Link { path, target })
        }
        _ => Err("a device, fifo or other special file"),
    }
}

/// A relative, `/`-separated path without `.` or empty parts; `None` for the root itself.
/// Absolute paths and `..` are refused.
pub(crate) fn normalize(name: &str) -> Result<Option<String>, &'static str> {
    if name.starts_with('/') {
        return Err("absolute path");
    }
    if name.contains('\\') {
        return Err("backslash in the name");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` in the path"),
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The archive path a symlink at `path` pointing to `target` designates.
fn resolve_symlink(path: &str, target: &str) -> Result<String, &'static str> {
    if target.starts_with('/') {
        return Err("symlink to an absolute path");
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or("symlink leaves the archive")?;
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("symlink to the archive root");
    }
    Ok(parts.join("/"))
}

/// Unpacks the tar stream `reader` (the file `archive`, for messages) into the empty
/// directory `dest`.
pub(crate) fn unpack(reader: impl Read, archive: &Path, dest: &Path) -> Result<(), UnpackError> {
    let read_error = |source| UnpackError::Read {
        archive: archive.to_owned(),
        source,
    };
    let refuse = |entry: &str, reason| UnpackError::Unsafe {
        archive: archive.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let mut tar = tar::Archive::new(reader);
    let mut links = Vec::new();
    for entry in tar.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match classify(&entry).map_err(|reason| refuse(&name, reason))? {
            EntryKind::File(path) => {
                let target = dest.join(&path);
                make_parent(&target)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|source| match source.kind() {
                        io::ErrorKind::AlreadyExists => refuse(&name, "appears twice"),
                        _ => UnpackError::Write {
                            path: target.clone(),
                            source,
                        },
                    })?;
                io::copy(&mut entry, &mut file).map_err(read_error)?;
            }
            EntryKind::Directory | EntryKind::Ignored => {}
            EntryKind::Link { path, target } => links.push((path, target)),
        }
    }
    materialize_links(archive, dest, links)
}

fn make_parent(path: &Path) -> Result<(), UnpackError> {
    let parent = path.parent().expect("an unpacked file has a parent");
    fs::create_dir_all(parent).map_err(|source| UnpackError::Write {
        path: parent.to_owned(),
        source,
    })
}

/// Gives each link the content of its target, following chains of links.
fn materialize_links(
    archive: &Path,
    dest: &Path,
    mut pending: Vec<(String, String)>,
) -> Result<(), UnpackError> {
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for (path, target) in pending {
            let source = dest.join(&target);
            let metadata = fs::symlink_metadata(&source);
            if metadata.as_ref().is_ok_and(|m| m.is_file()) {
                let link = dest.join(&path);
                make_parent(&link)?;
                if fs::symlink_metadata(&link).is_ok() {
                    return Err(UnpackError::Unsafe {
                        archive: archive.to_owned(),
                        entry: path,
                        reason: "appears twice",
                    });
                }
                fs::hard_link(&source, &link)
                    .or_else(|_| fs::copy(&source, &link).map(|_| ()))
                    .map_err(|source| UnpackError::Write { path: link, source })?;
            } else if metadata.is_ok_and(|m| m.is_dir()) {
                return Err(UnpackError::Unsafe {
                    archive: archive.to_owned(),
                    entry: path,
                    reason: "link to a directory",
                });
            } else {
                waiting.push((path, target));
            }
        }
        if waiting.len() == before {
            let (path, _) = waiting.swap_remove(0);
            return Err(UnpackError::Unsafe {
                archive: archive.to_owned(),
                entry: path,
                reason: "link to a file that is not in the archive",
            });
        }
        pending = waiting;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of [`raw_tar`]: name, type, link target, content.
    pub(crate) type RawEntry<'a> = (&'a str, EntryType, &'a str, &'a [u8]);

    /// A tar with raw entries. Names are written into the header bytes directly, so that
    /// hostile names survive.
    pub(crate) fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, target, data) in entries {
            let mut header = tar::Header::new_old();
            {
                let bytes = header.as_old_mut();
                bytes.name[..name.len()].copy_from_slice(name.as_bytes());
                bytes.linkname[..target.len()].copy_from_slice(target.as_bytes());
            }
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<(), UnpackError>) {
        let dest = tempfile::tempdir().unwrap();
        let result = unpack(bytes, Path::new("test.tar"), dest.path());
        (dest, result)
    }

    #[test]
    fn escaping_entries_are_refused_before_anything_is_written() {
        let cases: [(&[RawEntry<'_>], &str); 6] = [
            (
                &[("../evil", EntryType::Regular, "", b"x")],
                "`..` in the path",
            ),
            (
                &[("a/../../evil", EntryType::Regular, "", b"x")],
                "`..` in the path",
            ),
            (
                &[("/etc/evil", EntryType::Regular, "", b"x")],
                "absolute path",
            ),
            (
                &[("link", EntryType::Symlink, "../outside", b"")],
                "symlink leaves the archive",
            ),
            (
                &[("link", EntryType::Symlink, "/etc/passwd", b"")],
                "symlink to an absolute path",
            ),
            (
                &[("fifo", EntryType::Fifo, "", b"")],
                "a device, fifo or other special file",
            ),
        ];
        for (entries, reason) in cases {
            let (dest, result) = unpack_bytes(&raw_tar(entries));
            match result {
                Err(UnpackError::Unsafe { reason: found, .. }) => assert_eq!(found, reason),
                other => panic!("{entries:?}: {other:?}"),
            }
            assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn links_inside_the_archive_become_copies() {
        let (dest, result) = unpack_bytes(&raw_tar(&[
            ("./b/link", EntryType::Symlink, "../a/layer.tar", b""),
            ("a/layer.tar", EntryType::Regular, "", b"layer"),
            ("c/hard", EntryType::Link, "a/layer.tar", b""),
            ("d/chain", EntryType::Symlink, "../b/link", b""),
        ]));
        result.unwrap();
        for path in ["b/link", "c/hard", "d/chain"] {
            let metadata = fs::symlink_metadata(dest.path().join(path)).unwrap();
            assert!(metadata.is_file(), "{path}");
            assert_eq!(fs::read(dest.path().join(path)).unwrap(), b"layer");
        }
    }

    #[test]
    fn dangling_links_and_duplicates_are_refused() {
        let (_, result) = unpack_bytes(&raw_tar(&[("link", EntryType::Symlink, "missing", b"")]));
        assert!(matches!(
            result,
            Err(UnpackError::Unsafe {
                reason: "link to a file that is not in the archive",
                ..
            })
        ));
        let (_, result) = unpack_bytes(&raw_tar(&[
            ("a", EntryType::Regular, "", b"1"),
            ("./a", EntryType::Regular, "", b"2"),
        ]));
        assert!(matches!(
            result,
            Err(UnpackError::Unsafe {
                reason: "appears twice",
                ..
            })
        ));
    }
}
