//! The ready specs of `bundles/` stay valid: each parses (no network), declares the
//! Kubernetes release its file name promises, and every piece it still lacks to install
//! Kubernetes is there as a commented-out entry saying what to fill in.

use std::fs;
use std::path::Path;

use metalk8s_bundle::{CALICO_IMAGES, ImageSource, KUBERNETES_BINARIES, ManifestSource, load_spec};

#[test]
fn every_shipped_spec_parses_and_says_what_it_lacks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bundles");
    let mut seen = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let spec = load_spec(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {}",
                path.display(),
                metalk8s_model::report::error_chain(&error)
            )
        });
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let minor = name
            .strip_prefix("kubernetes-")
            .expect("bundles/kubernetes-MINOR.yaml");
        let version = spec
            .kubernetes_version
            .as_deref()
            .expect("kubernetesVersion");
        assert!(
            version.starts_with(&format!("{minor}.")),
            "{name}: {version}"
        );
        assert!(
            spec.version.starts_with(version),
            "{name}: {}",
            spec.version
        );
        for image in &spec.images {
            assert!(
                matches!(image.source, ImageSource::Registry(_)),
                "{name}: {} is not pulled from a registry",
                image.name
            );
        }
        let text = fs::read_to_string(&path).unwrap();
        let commented: Vec<&str> = text
            .lines()
            .map(str::trim_start)
            .filter(|line| line.starts_with("# - "))
            .collect();
        for missing in spec.missing_for_kubernetes() {
            let template = if KUBERNETES_BINARIES.contains(&missing) {
                format!("# - name: {missing}")
            } else {
                format!("# - registry: registry.k8s.io/{missing}:")
            };
            assert!(
                commented.iter().any(|line| line.starts_with(&template)),
                "{name}: lacks {missing} and has no `{template}` entry to fill in"
            );
        }
        // Calico: its release manifest pinned by URL and sha256, its images listed (pinned
        // or, until their digests are sourced, commented out).
        let calico = spec
            .manifests
            .iter()
            .find(|manifest| manifest.name == "calico")
            .unwrap_or_else(|| panic!("{name}: no calico manifest"));
        assert!(
            matches!(&calico.source, ManifestSource::Url { url, .. } if url.contains(&format!("/v{}/", calico.version))),
            "{name}: {calico:?}"
        );
        for image in CALICO_IMAGES {
            let listed = spec
                .images
                .iter()
                .any(|entry| entry.name == image && entry.tag == format!("v{}", calico.version));
            let template = format!("# - registry: quay.io/{image}:v{}@sha256:", calico.version);
            assert!(
                listed || commented.iter().any(|line| line.starts_with(&template)),
                "{name}: lacks {image} and has no `{template}` entry to fill in"
            );
        }
        seen.push(minor.to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["1.35", "1.36", "1.37"]);
}
