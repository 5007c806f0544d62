//! The APT repository made from the bundle's `debs/`: one suite and codename, `metalk8s`,
//! one component, `main`, a `Packages` index (and `Packages.gz`) per architecture, a
//! `Release` listing their SHA256 and the `InRelease` cleartext signature of it.
//!
//! Indexes are generated once at startup, into memory (a few hundred packages make a few
//! hundred kilobytes), so the bundle directory is never written to and a restart always
//! serves indexes that match the files. Package files stay in the bundle; `Filename:` is
//! `pool/` followed by the file's path under `debs/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use time::OffsetDateTime;

use crate::deb::{self, Control, DebError};
use crate::signing::{AptSigningKey, KeyError};

/// Suite and codename of the repository.
pub const SUITE: &str = "metalk8s";
/// Its only component.
pub const COMPONENT: &str = "main";
/// Architecture listed when the bundle has only `Architecture: all` packages (or none).
pub const DEFAULT_ARCHITECTURE: &str = "amd64";
/// Directory of the bundle holding the packages.
pub const DEBS_DIR: &str = "debs";

/// What can go wrong reading the bundle's packages or making the indexes.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("package {}: cannot read its control file", path.display())]
    Deb {
        path: PathBuf,
        #[source]
        source: DebError,
    },
    #[error(
        "package {}: file name must use only letters, digits and `._+~:%-` (and `/` between directories)",
        path.display()
    )]
    UnsafeFileName { path: PathBuf },
    #[error("package {}: symlinks and special files are refused", path.display())]
    NotRegularFile { path: PathBuf },
    #[error(transparent)]
    Sign(#[from] KeyError),
}

/// One package file of the bundle, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPackage {
    /// `pool/…`, relative to the repository root: the `Filename:` field.
    pub filename: String,
    /// Where the file is.
    pub path: PathBuf,
    pub control: Control,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// Reads, hashes and parses every `.deb` under `bundle/debs/` (sorted by path). No
/// `debs/` directory means no packages.
pub fn scan_packages(bundle: &Path) -> Result<Vec<PoolPackage>, AptError> {
    let root = bundle.join(DEBS_DIR);
    let mut files = Vec::new();
    if root.is_dir() {
        collect_debs(&root, "", &mut files)?;
    }
    files.sort();
    files
        .into_iter()
        .map(|relative| read_package(&root, relative))
        .collect()
}

fn collect_debs(root: &Path, prefix: &str, files: &mut Vec<String>) -> Result<(), AptError> {
    let dir = root.join(prefix);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| AptError::Io { path, source }
    };
    for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
        let entry = entry.map_err(io_error(&dir))?;
        let path = entry.path();
        let unsafe_name = || AptError::UnsafeFileName { path: path.clone() };
        let name = entry.file_name().into_string().map_err(|_| unsafe_name())?;
        if !is_safe_file_name(&name) {
            return Err(unsafe_name());
        }
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_dir() {
            collect_debs(root, &relative, files)?;
        } else if !file_type.is_file() {
            return Err(AptError::NotRegularFile { path });
        } else if relative.ends_with(".deb") {
            files.push(relative);
        }
    }
    Ok(())
}

/// Whether a name can go into a `Filename:` field and a URL. `%` and `:` are there for
/// epochs: APT's cache, and `bundle build` after it, name `foo` 1:2.0 `foo_1%3a2.0_all.deb`
/// (APT quotes the `%` when it requests the file, and the request is decoded once).
fn is_safe_file_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._+~:%-".contains(&byte))
}

fn read_package(root: &Path, relative: String) -> Result<PoolPackage, AptError> {
    let path = root.join(&relative);
    let content = fs::read(&path).map_err(|source| AptError::Io {
        path: path.clone(),
        source,
    })?;
    let control = deb::read_control(&content).map_err(|source| AptError::Deb {
        path: path.clone(),
        source,
    })?;
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &content);
    Ok(PoolPackage {
        filename: format!("pool/{relative}"),
        path,
        control,
        size: content.len() as u64,
        sha256: hex::encode(sha256.as_ref()),
    })
}

/// The architectures of the repository: those of the packages, `all` excepted, or
/// [`DEFAULT_ARCHITECTURE`] when there is none.
pub fn architectures(packages: &[PoolPackage]) -> BTreeSet<String> {
    let mut architectures: BTreeSet<String> = packages
        .iter()
        .map(|package| package.control.architecture.clone())
        .filter(|architecture| architecture != "all")
        .collect();
    if architectures.is_empty() {
        architectures.insert(DEFAULT_ARCHITECTURE.to_owned());
    }
    architectures
}

/// The `Packages` index of `architecture`: a stanza per package of that architecture or
/// of `all`, the control paragraph followed by `Filename`, `Size` and `SHA256`.
pub fn packages_index(packages: &[PoolPackage], architecture: &str) -> String {
    let mut index = String::new();
    let selected = packages.iter().filter(|package| {
        package.control.architecture == architecture || package.control.architecture == "all"
    });
    for package in selected {
        if !index.is_empty() {
            index.push('\n');
        }
        index.push_str(&package.control.paragraph);
        index.push_str(&format!(
            "Filename: {}\nSize: {}\nSHA256: {}\n",
            package.filename, package.size, package.sha256
        ));
    }
    index
}

/// `Date:` of a Release file: RFC 2822 in UTC, as Debian's archive writes it.
pub fn release_date(date: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC"
    );
    date.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a UTC date always formats")
}

/// The `Release` file listing `index_files` (path relative to `dists/<suite>/`, content).
pub fn release_file(
    date: OffsetDateTime,
    architectures: &BTreeSet<String>,
    index_files: &[(String, &[u8])],
) -> String {
    let mut release = format!(
        "Origin: metalk8s\nLabel: metalk8s\nSuite: {SUITE}\nCodename: {SUITE}\n\
         Date: {}\nArchitectures: {}\nComponents: {COMPONENT}\n\
         Description: Packages of the metalk8s offline bundle\nSHA256:\n",
        release_date(date),
        architectures.iter().cloned().collect::<Vec<_>>().join(" "),
    );
    for (path, content) in index_files {
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content);
        release.push_str(&format!(
            " {} {:>16} {path}\n",
            hex::encode(sha256.as_ref()),
            content.len()
        ));
    }
    release
}

/// Every index file of the repository, by path relative to the repository root
/// (`dists/metalk8s/InRelease`, `dists/metalk8s/main/binary-amd64/Packages.gz`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptIndexes {
    pub files: BTreeMap<String, Bytes>,
}

impl AptIndexes {
    /// Generates `Packages`, `Packages.gz`, `Release` and `InRelease` for `packages`, the
    /// Release dated `date` and signed with `key`.
    pub fn generate(
        packages: &[PoolPackage],
        date: OffsetDateTime,
        key: &AptSigningKey,
    ) -> Result<AptIndexes, KeyError> {
        let architectures = architectures(packages);
        let mut index_files: Vec<(String, Vec<u8>)> = Vec::new();
        for architecture in &architectures {
            let index = packages_index(packages, architecture).into_bytes();
            let directory = format!("{COMPONENT}/binary-{architecture}");
            let compressed = gzip(&index);
            index_files.push((format!("{directory}/Packages"), index));
            index_files.push((format!("{directory}/Packages.gz"), compressed));
        }
        let listed: Vec<(String, &[u8])> = index_files
            .iter()
            .map(|(path, content)| (path.clone(), content.as_slice()))
            .collect();
        let release = release_file(date, &architectures, &listed);
        let in_release = key.clearsign(&release)?;

        let dists = format!("dists/{SUITE}");
        let mut files: BTreeMap<String, Bytes> = index_files
            .into_iter()
            .map(|(path, content)| (format!("{dists}/{path}"), Bytes::from(content)))
            .collect();
        files.insert(format!("{dists}/Release"), Bytes::from(release));
        files.insert(format!("{dists}/InRelease"), Bytes::from(in_release));
        Ok(AptIndexes { files })
    }
}

/// Path of the public keyring under the repository root, for nodes to fetch once they
/// trust the registry's certificate.
pub const KEYRING_FILE: &str = "metalk8s.gpg";

/// The APT repository as served: its indexes, its package files by `Filename:` and the
/// public keyring.
#[derive(Debug, Clone)]
pub struct AptRepository {
    pub indexes: AptIndexes,
    pub pool: BTreeMap<String, PoolPackage>,
    pub keyring: Bytes,
}

impl AptRepository {
    /// Scans `bundle/debs/` and generates the indexes (see [`AptIndexes::generate`]).
    pub fn load(
        bundle: &Path,
        key: &AptSigningKey,
        date: OffsetDateTime,
    ) -> Result<AptRepository, AptError> {
        let packages = scan_packages(bundle)?;
        let indexes = AptIndexes::generate(&packages, date, key)?;
        let keyring = Bytes::from(key.public_keyring()?);
        let pool = packages
            .into_iter()
            .map(|package| (package.filename.clone(), package))
            .collect();
        Ok(AptRepository {
            indexes,
            pool,
            keyring,
        })
    }
}

/// gzip without a timestamp, so the same index always compresses to the same bytes.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .expect("writing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn package(name: &str, architecture: &str) -> PoolPackage {
        let paragraph = format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: {architecture}\nDepends: libc6\n"
        );
        PoolPackage {
            filename: format!("pool/{name}_1.0_{architecture}.deb"),
            path: PathBuf::from(format!("/bundle/debs/{name}_1.0_{architecture}.deb")),
            control: Control::parse(&paragraph).unwrap(),
            size: 1234,
            sha256: "ab".repeat(32),
        }
    }

    fn date() -> OffsetDateTime {
        time::macros::datetime!(2026-11-28 09:05:03 UTC)
    }

    #[test]
    fn packages_index_has_a_stanza_per_package_of_the_architecture() {
        let packages = [
            package("a", "amd64"),
            package("b", "arm64"),
            package("c", "all"),
        ];
        let sha = "ab".repeat(32);
        assert_eq!(
            packages_index(&packages, "amd64"),
            format!(
                "Package: a\nVersion: 1.0\nArchitecture: amd64\nDepends: libc6\n\
                 Filename: pool/a_1.0_amd64.deb\nSize: 1234\nSHA256: {sha}\n\
                 \n\
                 Package: c\nVersion: 1.0\nArchitecture: all\nDepends: libc6\n\
                 Filename: pool/c_1.0_all.deb\nSize: 1234\nSHA256: {sha}\n"
            )
        );
        assert_eq!(
            architectures(&packages).into_iter().collect::<Vec<_>>(),
            ["amd64", "arm64"]
        );
        assert_eq!(
            architectures(&[package("c", "all")])
                .into_iter()
                .collect::<Vec<_>>(),
            ["amd64"]
        );
    }

    #[test]
    fn release_lists_the_sha256_of_every_index() {
        let architectures = BTreeSet::from(["amd64".to_owned()]);
        let release = release_file(
            date(),
            &architectures,
            &[("main/binary-amd64/Packages".to_owned(), b"".as_slice())],
        );
        assert_eq!(
            release,
            format!(
                "Origin: metalk8s\nLabel: metalk8s\nSuite: metalk8s\nCodename: metalk8s\n\
             Date: Sat, 28 Nov 2026 09:05:03 UTC\nArchitectures: amd64\nComponents: main\n\
             Description: Packages of the metalk8s offline bundle\nSHA256:\n \
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 {:>16} \
             main/binary-amd64/Packages\n",
                0
            )
        );
    }

    #[test]
    fn generated_indexes_are_consistent_and_signed() {
        let key = AptSigningKey::generate("test <t@example.invalid>").unwrap();
        let packages = [package("a", "amd64")];
        let indexes = AptIndexes::generate(&packages, date(), &key).unwrap();
        assert_eq!(
            indexes.files.keys().collect::<Vec<_>>(),
            [
                "dists/metalk8s/InRelease",
                "dists/metalk8s/Release",
                "dists/metalk8s/main/binary-amd64/Packages",
                "dists/metalk8s/main/binary-amd64/Packages.gz",
            ]
        );
        let packages_file = &indexes.files["dists/metalk8s/main/binary-amd64/Packages"];
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(
            &indexes.files["dists/metalk8s/main/binary-amd64/Packages.gz"][..],
        )
        .read_to_end(&mut unzipped)
        .unwrap();
        assert_eq!(&unzipped[..], &packages_file[..]);

        let release = std::str::from_utf8(&indexes.files["dists/metalk8s/Release"]).unwrap();
        let sha = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            packages_file,
        ));
        assert!(
            release.contains(&format!(
                " {sha} {:>16} main/binary-amd64/Packages\n",
                packages_file.len()
            )),
            "{release}"
        );
        let in_release = std::str::from_utf8(&indexes.files["dists/metalk8s/InRelease"]).unwrap();
        assert!(in_release.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\n"));
        assert!(in_release.contains(release));
    }

    #[test]
    fn packages_are_scanned_from_the_bundle_and_odd_names_refused() {
        let bundle = tempfile::tempdir().unwrap();
        assert!(scan_packages(bundle.path()).unwrap().is_empty());
        fs::create_dir_all(bundle.path().join("debs")).unwrap();
        fs::write(bundle.path().join("debs/notes.txt"), "ignored").unwrap();
        fs::write(bundle.path().join("debs/broken.deb"), "not a deb").unwrap();
        assert!(matches!(
            scan_packages(bundle.path()),
            Err(AptError::Deb { path, source: DebError::NotAnArchive })
                if path.ends_with("debs/broken.deb")
        ));
        fs::remove_file(bundle.path().join("debs/broken.deb")).unwrap();
        assert!(is_safe_file_name("libcrypt1_1%3a4.4.33-2_amd64.deb"));
        assert!(is_safe_file_name("containerd_1.6.20~ds1-1+b1_amd64.deb"));
        assert!(!is_safe_file_name(".hidden.deb"));
        assert!(!is_safe_file_name("new\nline.deb"));
        fs::write(bundle.path().join("debs/with space.deb"), "x").unwrap();
        assert!(matches!(
            scan_packages(bundle.path()),
            Err(AptError::UnsafeFileName { .. })
        ));
    }
}
