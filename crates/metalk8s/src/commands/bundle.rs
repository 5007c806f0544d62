//! `metalk8s bundle build | verify | inspect | keygen`: argument handling and rendering
//! around metalk8s-bundle, plus the build's progress display.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use metalk8s_bundle::{
    ArtifactKind, BuildError, BuildOptions, Manifest, OutputFormat, Progress, Transfer,
    build_bundle, load_spec, public_key_from_hex_or_file, public_key_to_hex, read_manifest,
    read_signing_key, verify_bundle, write_new_signing_key,
};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::{BundleBuildArgs, BundleCommand};
use crate::exit::{CommandResult, Failure};
use crate::output::{self, Format};

pub fn run(command: BundleCommand) -> CommandResult {
    match command {
        BundleCommand::Build(args) => build(args),
        BundleCommand::Verify { bundle, public_key } => verify(&bundle, &public_key),
        BundleCommand::Inspect {
            bundle,
            public_key,
            output,
        } => inspect(&bundle, public_key.as_deref(), output),
        BundleCommand::Keygen { out } => keygen(&out),
    }
}

/// Bad input (spec, key, usage): exit 2, with the error's causes.
fn invalid(error: impl std::error::Error + Send + Sync + 'static) -> Failure {
    Failure::invalid(miette::Report::from_err(error))
}

fn build(args: BundleBuildArgs) -> CommandResult {
    // Rendered with miette: every problem on its line of the spec file.
    let spec =
        load_spec(&args.spec).map_err(|error| Failure::invalid(miette::Report::new(error)))?;
    let signing_key = read_signing_key(&args.signing_key).map_err(invalid)?;
    let options = BuildOptions {
        out: args.out,
        cache: args.cache.unwrap_or_else(default_cache),
        signing_key,
        created: created()?,
        force: args.force,
    };
    let built =
        build_bundle(&spec, &options, &BuildProgress::new()).map_err(|error| match error {
            // The spec itself is short of entries: bad input, like any other spec problem.
            BuildError::IncompleteKubernetes { .. } => invalid(error),
            error => Failure::error(error),
        })?;
    let size: u64 = built.manifest.artifacts.iter().map(|a| a.size).sum();
    let what = match built.format {
        OutputFormat::Directory => "directory",
        OutputFormat::Archive => "archive",
    };
    eprintln!(
        "bundle {}{} written to {} ({what}): {} components, {} artifacts, {}; signed by {}",
        built.manifest.version,
        kubernetes_note(built.manifest.kubernetes_version()),
        built.out.display(),
        built.manifest.components.len(),
        built.manifest.artifacts.len(),
        HumanBytes(size),
        public_key_to_hex(&options.signing_key.verifying_key()),
    );
    Ok(ExitCode::SUCCESS)
}

/// ` (Kubernetes 1.36.4)` for a bundle that carries Kubernetes.
fn kubernetes_note(version: Option<&str>) -> String {
    version.map_or_else(String::new, |version| format!(" (Kubernetes {version})"))
}

/// `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn created() -> Result<OffsetDateTime, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
            .ok_or_else(|| {
                Failure::invalid(miette::miette!(
                    "SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970"
                ))
            }),
        Err(_) => Ok(OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid")),
    }
}

fn default_cache() -> PathBuf {
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(cache).join("metalk8s/downloads");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/metalk8s/downloads"),
        None => std::env::temp_dir().join("metalk8s-downloads"),
    }
}

fn verify(bundle: &Path, public_key: &str) -> CommandResult {
    let key = public_key_from_hex_or_file(public_key).map_err(invalid)?;
    let verified = verify_bundle(bundle, &key).map_err(|error| {
        Failure::problem(
            miette::Report::from_err(error)
                .wrap_err(format!("{}: verification failed", bundle.display())),
        )
    })?;
    println!(
        "{}: verified, bundle {} with {} artifacts",
        bundle.display(),
        verified.manifest.version,
        verified.manifest.artifacts.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn keygen(out: &Path) -> CommandResult {
    let key = write_new_signing_key(out).map_err(Failure::error)?;
    eprintln!(
        "private key written to {} (mode 0600); nodes and `bundle verify` trust the public key:",
        out.display()
    );
    println!("{}", public_key_to_hex(&key.verifying_key()));
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inspection<'a> {
    bundle: &'a Path,
    version: &'a str,
    /// The Kubernetes release the bundle carries, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes_version: Option<&'a str>,
    created: String,
    /// Whether the signature and every artifact were checked.
    verified: bool,
    components: &'a [metalk8s_bundle::Component],
    artifacts: &'a [metalk8s_bundle::Artifact],
    totals: Totals,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    components: usize,
    artifacts: usize,
    size: u64,
    by_kind: BTreeMap<String, KindTotal>,
}

#[derive(Serialize, Default)]
struct KindTotal {
    artifacts: usize,
    size: u64,
}

fn kind_name(kind: ArtifactKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn totals(manifest: &Manifest) -> Totals {
    let mut by_kind: BTreeMap<String, KindTotal> = BTreeMap::new();
    for artifact in &manifest.artifacts {
        let total = by_kind.entry(kind_name(artifact.kind)).or_default();
        total.artifacts += 1;
        total.size += artifact.size;
    }
    Totals {
        components: manifest.components.len(),
        artifacts: manifest.artifacts.len(),
        size: manifest.artifacts.iter().map(|a| a.size).sum(),
        by_kind,
    }
}

fn inspect(bundle: &Path, public_key: Option<&str>, format: Format) -> CommandResult {
    let (manifest, verified) = match public_key {
        Some(text) => {
            let key = public_key_from_hex_or_file(text).map_err(invalid)?;
            let verified = verify_bundle(bundle, &key).map_err(Failure::error)?;
            (verified.manifest, true)
        }
        None => (read_manifest(bundle).map_err(Failure::error)?, false),
    };
    let inspection = Inspection {
        bundle,
        version: &manifest.version,
        kubernetes_version: manifest.kubernetes_version(),
        created: manifest
            .created
            .format(&Rfc3339)
            .unwrap_or_else(|_| manifest.created.to_string()),
        verified,
        components: &manifest.components,
        artifacts: &manifest.artifacts,
        totals: totals(&manifest),
    };
    if output::print_data(format, &inspection) {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "bundle {}{} created {} ({})",
        inspection.version,
        kubernetes_note(inspection.kubernetes_version),
        inspection.created,
        if verified {
            "signature and artifacts verified"
        } else {
            "not verified: pass --public-key, or run `bundle verify`"
        }
    );
    let mut components = output::table(&["component", "version", "origin"]);
    for component in inspection.components {
        components.add_row(vec![
            component.name.as_str(),
            component.version.as_str(),
            component.origin.as_str(),
        ]);
    }
    println!("{components}");
    let mut artifacts = output::table(&["artifact", "kind", "size"]);
    for artifact in inspection.artifacts {
        artifacts.add_row(vec![
            artifact.path.clone(),
            kind_name(artifact.kind),
            HumanBytes(artifact.size).to_string(),
        ]);
    }
    println!("{artifacts}");
    let mut totals = output::table(&["kind", "artifacts", "size"]);
    for (kind, total) in &inspection.totals.by_kind {
        totals.add_row(vec![
            kind.clone(),
            total.artifacts.to_string(),
            HumanBytes(total.size).to_string(),
        ]);
    }
    totals.add_row(vec![
        "total".to_owned(),
        inspection.totals.artifacts.to_string(),
        HumanBytes(inspection.totals.size).to_string(),
    ]);
    println!("{totals}");
    Ok(ExitCode::SUCCESS)
}

/// Build progress on stderr: byte bars for downloads on a terminal, plain lines otherwise.
struct BuildProgress {
    bars: Option<MultiProgress>,
}

impl BuildProgress {
    fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        BuildProgress { bars }
    }
}

impl Progress for BuildProgress {
    fn step(&self, message: &str) {
        match &self.bars {
            Some(multi) => {
                multi.println(message).ok();
            }
            None => eprintln!("{message}"),
        }
    }

    fn transfer(&self, label: &str, total: Option<u64>, already: u64) -> Box<dyn Transfer + '_> {
        match &self.bars {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                let template = if total.is_some() {
                    "{bytes:>10}/{total_bytes:<10} [{bar:30}] {bytes_per_sec:>12} {wide_msg}"
                } else {
                    "{bytes:>10} {bytes_per_sec:>12} {wide_msg}"
                };
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .expect("valid progress template")
                        .progress_chars("=> "),
                );
                bar.set_position(already);
                bar.set_message(label.to_owned());
                Box::new(BarTransfer(bar))
            }
            None => {
                let resuming = if already > 0 {
                    format!(", resuming after {}", HumanBytes(already))
                } else {
                    String::new()
                };
                let size =
                    total.map_or_else(|| "size unknown".to_owned(), |t| HumanBytes(t).to_string());
                eprintln!("downloading {label} ({size}{resuming})");
                Box::new(PlainTransfer {
                    label: label.to_owned(),
                    received: AtomicU64::new(already),
                })
            }
        }
    }
}

struct BarTransfer(ProgressBar);

impl Transfer for BarTransfer {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

struct PlainTransfer {
    label: String,
    received: AtomicU64,
}

impl Transfer for PlainTransfer {
    fn advance(&self, bytes: u64) {
        self.received.fetch_add(bytes, Ordering::Relaxed);
    }

    fn finish(&self) {
        eprintln!(
            "{}: {} received",
            self.label,
            HumanBytes(self.received.load(Ordering::Relaxed))
        );
    }
}
