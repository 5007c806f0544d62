//! OS packages for `debs/`, resolved and fetched by APT itself.
//!
//! APT is asked what installing the requested packages would take on a machine where
//! nothing is installed yet: it runs with a private, empty dpkg status file, so the answer
//! is the whole closure of `Depends` and `Pre-Depends` (one choice per alternative,
//! virtual packages resolved, versions consistent) and not only what this build machine
//! happens to lack. Recommends and Suggests are left out, as nodes install without them.
//! Local `.deb` files are handed to APT with the names, so their dependencies come too.
//!
//! Two runs of `apt-get install`: `--print-uris` against an empty archive directory lists
//! every file of the closure, then `--download-only` fetches them into
//! `<cache>/apt/archives`, APT's own cache, which it checks against the signed indexes,
//! skips when already there and resumes when partial. Lists come from the build machine's
//! APT sources (`apt-get update` first); nothing system-wide is locked or written.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::Component;
use crate::progress::Progress;
use crate::spec::PackageSource;

/// Why OS packages could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error(
        "cannot run {program}\n    hint: building a bundle with OS packages needs a Debian \
         or Ubuntu machine with apt and dpkg"
    )]
    Spawn {
        program: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{command}` failed ({status}):\n{stderr}\n    hint: check the package names; \
         `apt-get update` refreshes this machine's package lists"
    )]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{}: not a readable Debian package: {stderr}", path.display())]
    NotADeb { path: PathBuf, stderr: String },
    #[error("apt-get --print-uris printed a line that is not `'URI' FILE SIZE HASH`: {line:?}")]
    UnexpectedOutput { line: String },
    #[error("{file}: APT reported it fetched, but {} is missing or has the wrong size", dir.display())]
    NotFetched { file: String, dir: PathBuf },
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AptError + '_ {
    move |source| AptError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Puts every requested package and its dependencies into `debs_dir`, returning one
/// component per `.deb`, sorted by name. `work` is a scratch directory.
pub fn gather_packages(
    packages: &[PackageSource],
    cache: &Path,
    debs_dir: &Path,
    work: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Component>, AptError> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(debs_dir).map_err(io_error(debs_dir))?;
    let mut components = Vec::new();
    let mut targets = Vec::new();
    let mut needs_apt = false;
    for package in packages {
        match package {
            PackageSource::Apt { name, version } => {
                needs_apt = true;
                targets.push(match version {
                    Some(version) => format!("{name}={version}"),
                    None => name.clone(),
                });
            }
            PackageSource::File(path) => {
                let control = deb_control(&path.resolved)?;
                needs_apt |= control.has_dependencies();
                let dest = debs_dir.join(control.file_name());
                fs::copy(&path.resolved, &dest).map_err(io_error(&path.resolved))?;
                progress.step(&format!(
                    "package {} {} from {}",
                    control.package, control.version, path.written
                ));
                components.push(Component {
                    name: control.package,
                    version: control.version,
                    origin: format!("file:{}", path.written),
                });
                let absolute =
                    fs::canonicalize(&path.resolved).map_err(io_error(&path.resolved))?;
                targets.push(absolute.to_string_lossy().into_owned());
            }
        }
    }
    if needs_apt {
        let apt = Apt::new(cache, work)?;
        progress.step("resolving OS packages and their dependencies with APT");
        let files = apt.closure(&targets)?;
        if files.iter().any(|f| !f.uri.starts_with("file:")) {
            apt.download(&targets, progress)?;
        }
        // Local files show up with `file:` URIs; they were copied above.
        for file in files.into_iter().filter(|f| !f.uri.starts_with("file:")) {
            let source = apt.archives.join(&file.name);
            let fetched = fs::metadata(&source).is_ok_and(|meta| meta.len() == file.size);
            if !fetched {
                return Err(AptError::NotFetched {
                    file: file.name,
                    dir: apt.archives.clone(),
                });
            }
            let control = deb_control(&source)?;
            let dest = debs_dir.join(&file.name);
            fs::copy(&source, &dest).map_err(io_error(&source))?;
            components.push(Component {
                name: control.package,
                version: control.version,
                origin: file.uri,
            });
        }
    }
    components.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(components)
}

/// The fields of a `.deb` this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DebControl {
    package: String,
    version: String,
    architecture: String,
    depends: String,
    pre_depends: String,
}

impl DebControl {
    fn has_dependencies(&self) -> bool {
        !self.depends.trim().is_empty() || !self.pre_depends.trim().is_empty()
    }

    /// The name APT gives the file in its archive cache (`:` of an epoch quoted).
    fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.architecture
        )
    }
}

fn deb_control(path: &Path) -> Result<DebControl, AptError> {
    let output = Command::new("dpkg-deb")
        .arg("--field")
        .arg(path)
        .args([
            "Package",
            "Version",
            "Architecture",
            "Depends",
            "Pre-Depends",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| AptError::Spawn {
            program: "dpkg-deb",
            source,
        })?;
    if !output.status.success() {
        return Err(AptError::NotADeb {
            path: path.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let fields = parse_control(&String::from_utf8_lossy(&output.stdout));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let control = DebControl {
        package: field("Package"),
        version: field("Version"),
        architecture: field("Architecture"),
        depends: field("Depends"),
        pre_depends: field("Pre-Depends"),
    };
    if control.package.is_empty() || control.version.is_empty() || control.architecture.is_empty() {
        return Err(AptError::NotADeb {
            path: path.to_owned(),
            stderr: "no Package, Version or Architecture field".into(),
        });
    }
    Ok(control)
}

/// `Field: value` lines, continuation lines (starting with a blank) folded in.
fn parse_control(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// One file of the closure, as `apt-get --print-uris` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AptFile {
    uri: String,
    name: String,
    size: u64,
}

fn parse_print_uris(text: &str) -> Result<Vec<AptFile>, AptError> {
    let mut files = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let unexpected = || AptError::UnexpectedOutput {
            line: line.to_owned(),
        };
        let rest = line.strip_prefix('\'').ok_or_else(unexpected)?;
        let (uri, rest) = rest.split_once('\'').ok_or_else(unexpected)?;
        let mut words = rest.split_whitespace();
        let name = words.next().ok_or_else(unexpected)?;
        let size = words
            .next()
            .and_then(|size| size.parse().ok())
            .ok_or_else(unexpected)?;
        if name.contains('/') || !name.ends_with(".deb") {
            return Err(unexpected());
        }
        files.push(AptFile {
            uri: uri.to_owned(),
            name: name.to_owned(),
            size,
        });
    }
    Ok(files)
}

/// `apt-get` pointed at a private, empty dpkg status.
struct Apt {
    options: Vec<String>,
    /// Where `--print-uris` looks for already-fetched files: always empty, so that every
    /// file of the closure is listed.
    empty_archives: PathBuf,
    /// APT's archive cache for bundle builds, kept between runs.
    archives: PathBuf,
}

impl Apt {
    fn new(cache: &Path, work: &Path) -> Result<Self, AptError> {
        // APT reads a relative `Dir::…` path as relative to its parent setting (under
        // /var), so every path it is given is made absolute.
        let cache = std::path::absolute(cache).map_err(io_error(cache))?;
        let work = std::path::absolute(work).map_err(io_error(work))?;
        let apt_work = work.join("apt");
        let empty_archives = apt_work.join("empty-archives");
        let archives = cache.join("apt").join("archives");
        for dir in [empty_archives.join("partial"), archives.join("partial")] {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        let status = apt_work.join("status");
        fs::write(&status, b"").map_err(io_error(&status))?;
        let options = [
            format!("Dir::State::status={}", status.display()),
            format!(
                "Dir::State::extended_states={}",
                apt_work.join("extended_states").display()
            ),
            // Keep the machine's own package cache files and locks out of it.
            "Dir::Cache::pkgcache=".into(),
            "Dir::Cache::srcpkgcache=".into(),
            "Debug::NoLocking=1".into(),
            "APT::Install-Recommends=false".into(),
            "APT::Install-Suggests=false".into(),
            // The cache may live in root's home, which APT's `_apt` user cannot enter.
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .flat_map(|option| ["-o".to_owned(), option])
        .collect();
        Ok(Apt {
            options,
            empty_archives,
            archives,
        })
    }

    fn command(&self, archives: &Path, mode: &[&str], targets: &[String]) -> Command {
        let mut command = Command::new("apt-get");
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .arg("install")
            .args(mode)
            .args(&self.options)
            .arg("-o")
            .arg(format!("Dir::Cache::archives={}/", archives.display()))
            .arg("--")
            .args(targets)
            .stdin(Stdio::null());
        command
    }

    /// Every file that installing `targets` on an empty machine takes.
    fn closure(&self, targets: &[String]) -> Result<Vec<AptFile>, AptError> {
        let mode = ["--print-uris", "-qq"];
        let output = self
            .command(&self.empty_archives, &mode, targets)
            .output()
            .map_err(|source| AptError::Spawn {
                program: "apt-get",
                source,
            })?;
        if !output.status.success() {
            return Err(AptError::Failed {
                command: describe(&mode, targets),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        parse_print_uris(&String::from_utf8_lossy(&output.stdout))
    }

    /// Fetches the closure into the archive cache, reporting APT's `Get:` lines.
    fn download(&self, targets: &[String], progress: &dyn Progress) -> Result<(), AptError> {
        // APT's own lock is off (it would be the system's); builds sharing this cache
        // take turns on this one instead.
        let lock_path = self.archives.join("lock");
        let lock = fs::File::create(&lock_path).map_err(io_error(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|errno| io_error(&lock_path)(errno.into()))?;
        let mode = ["--download-only", "--yes", "-q"];
        let mut child = self
            .command(&self.archives, &mode, targets)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| AptError::Spawn {
                program: "apt-get",
                source,
            })?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).ok();
            text
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Get:") || line.starts_with("Fetched") {
                progress.step(&format!("apt: {line}"));
            }
        }
        let status = child.wait().map_err(|source| AptError::Spawn {
            program: "apt-get",
            source,
        })?;
        let stderr = stderr_reader.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(AptError::Failed {
                command: describe(&mode, targets),
                status,
                stderr: stderr.trim().to_owned(),
            })
        }
    }
}

fn describe(mode: &[&str], targets: &[String]) -> String {
    format!("apt-get install {} {}", mode.join(" "), targets.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_uris_lines_are_parsed() {
        let text = "'http://deb.debian.org/debian/pool/main/j/jq/jq_1.6-2.1_amd64.deb' jq_1.6-2.1_amd64.deb 64432 SHA256:ab\n\
                    'http://deb.debian.org/debian/pool/main/libo/libonig/libonig5_6.9.8-1_amd64.deb' libonig5_6.9.8-1_amd64.deb 187828 \n";
        let files = parse_print_uris(text).unwrap();
        assert_eq!(
            files,
            vec![
                AptFile {
                    uri: "http://deb.debian.org/debian/pool/main/j/jq/jq_1.6-2.1_amd64.deb".into(),
                    name: "jq_1.6-2.1_amd64.deb".into(),
                    size: 64432,
                },
                AptFile {
                    uri: "http://deb.debian.org/debian/pool/main/libo/libonig/libonig5_6.9.8-1_amd64.deb".into(),
                    name: "libonig5_6.9.8-1_amd64.deb".into(),
                    size: 187828,
                },
            ]
        );
        for bad in [
            "Reading package lists...",
            "'http://x/a.deb' ../a.deb 1 ",
            "'http://x/a.deb' a.deb big",
        ] {
            assert!(parse_print_uris(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_fields_fold_continuation_lines() {
        let fields = parse_control("Package: a\nDepends: b,\n c\nVersion: 1:2.0\n");
        assert_eq!(
            fields,
            vec![
                ("Package".into(), "a".into()),
                ("Depends".into(), "b, c".into()),
                ("Version".into(), "1:2.0".into()),
            ]
        );
        let control = DebControl {
            package: "a".into(),
            version: "1:2.0".into(),
            architecture: "amd64".into(),
            depends: String::new(),
            pre_depends: String::new(),
        };
        assert_eq!(control.file_name(), "a_1%3a2.0_amd64.deb");
        assert!(!control.has_dependencies());
    }
}
