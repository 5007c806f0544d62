//! Where metalk8s puts the bundle repository (DESIGN.md, "Offline bundle"; docs/repository.md)
//! and how nodes reach it. The planner writes these paths into the bootstrap node's
//! `metalk8s-repo.service` and into every node's APT and containerd configuration; the
//! deploy stages bundles under [`BUNDLES_DIR`] and checks the server at [`registry_url`];
//! nodes fetch the bundle's binaries from [`file_url`].

use std::net::IpAddr;

/// The systemd unit running `metalk8s repo serve` on the bootstrap node.
pub const SERVICE: &str = "metalk8s-repo.service";
/// The HTTPS port of the registry and the APT repository.
pub const PORT: u16 = 8443;
/// Staged bundles, one directory per manifest version, on the bootstrap node.
pub const BUNDLES_DIR: &str = "/var/lib/metalk8s/bundles";
/// The symlink to the bundle being served.
pub const CURRENT_BUNDLE: &str = "/var/lib/metalk8s/bundles/current";
/// The server certificate (issued by the Kubernetes CA) and its key.
pub const CERT_FILE: &str = "/etc/kubernetes/pki/metalk8s-repository.crt";
pub const KEY_FILE: &str = "/etc/kubernetes/pki/metalk8s-repository.key";
/// The Kubernetes CA every node checks the repository with.
pub const CA_FILE: &str = "/etc/kubernetes/pki/ca.crt";
/// The APT signing key (armored OpenPGP secret key, 0600), on the bootstrap node only.
pub const APT_KEY_DIR: &str = "/etc/metalk8s/repository";
pub const APT_KEY_FILE: &str = "/etc/metalk8s/repository/apt-signing.key";
/// The APT signing key's public part on every node (ASCII-armored keyring, which APT reads
/// by its `.asc` extension; `Signed-By:` names it).
pub const KEYRING_FILE: &str = "/etc/apt/keyrings/metalk8s.asc";
/// The one APT source of a node once the repository serves it (deb822).
pub const SOURCES_FILE: &str = "/etc/apt/sources.list.d/metalk8s.sources";
/// APT's settings for the repository: the CA to check it with, no proxy.
pub const APT_CONF_FILE: &str = "/etc/apt/apt.conf.d/90-metalk8s-repository.conf";
/// Suffix of the APT source files moved aside so that only the repository is used.
pub const DISABLED_SUFFIX: &str = ".metalk8s-disabled";
/// The APT repository's suite and component (docs/repository.md).
pub const APT_SUITE: &str = "metalk8s";
pub const APT_COMPONENT: &str = "main";

/// `IP:8443`, with IPv6 addresses bracketed: the registry's name in image references and
/// containerd's hosts directory.
pub fn authority(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{PORT}"),
        IpAddr::V6(v6) => format!("[{v6}]:{PORT}"),
    }
}

/// `https://IP:8443`.
pub fn base_url(ip: IpAddr) -> String {
    format!("https://{}", authority(ip))
}

/// `https://IP:8443/apt`, the APT source's URI.
pub fn apt_url(ip: IpAddr) -> String {
    format!("{}/apt", base_url(ip))
}

/// `https://IP:8443/v2/`, which answers 200 when the registry serves.
pub fn registry_url(ip: IpAddr) -> String {
    format!("{}/v2/", base_url(ip))
}

/// `https://IP:8443/files/NAME`, where the node fetches the bundle's binary `name`.
pub fn file_url(ip: IpAddr, name: &str) -> String {
    format!("{}/files/{name}", base_url(ip))
}

/// Where `bundle` is staged (`BUNDLES_DIR/<version>`).
pub fn bundle_dir(version: &str) -> String {
    format!("{BUNDLES_DIR}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(authority("10.0.0.1".parse().unwrap()), "10.0.0.1:8443");
        assert_eq!(
            registry_url("fd00::1".parse().unwrap()),
            "https://[fd00::1]:8443/v2/"
        );
        assert_eq!(
            file_url("fd00::1".parse().unwrap(), "kubelet"),
            "https://[fd00::1]:8443/files/kubelet"
        );
    }
}
