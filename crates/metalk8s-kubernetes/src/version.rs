//! Kubernetes versions: parsing, the minors metalk8s supports with the configuration API
//! versions each of them reads, and upstream's version-skew rules
//! (<https://kubernetes.io/releases/version-skew-policy/>) as functions the phase checks
//! before touching a node.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::VersionError;

/// A Kubernetes release version, `v1.36.2` (the leading `v` is optional when parsing and
/// always written). Pre-releases (`v1.37.0-rc.1`) parse and order before their release.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `rc.1` in `v1.37.0-rc.1`.
    pub pre_release: Option<String>,
}

impl KubernetesVersion {
    pub fn new(major: u32, minor: u32, patch: u32) -> KubernetesVersion {
        KubernetesVersion {
            major,
            minor,
            patch,
            pre_release: None,
        }
    }

    /// `1.36`.
    pub fn minor_version(&self) -> MinorVersion {
        MinorVersion {
            major: self.major,
            minor: self.minor,
        }
    }
}

impl FromStr for KubernetesVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || VersionError::Invalid {
            text: text.to_owned(),
        };
        let bare = text.strip_prefix('v').unwrap_or(text);
        let (numbers, pre_release) = match bare.split_once('-') {
            Some((numbers, pre)) if !pre.is_empty() => (numbers, Some(pre.to_owned())),
            Some(_) => return Err(invalid()),
            None => (bare, None),
        };
        let mut parts = numbers.split('.');
        let mut number = || -> Result<u32, VersionError> {
            let part = parts.next().ok_or_else(invalid)?;
            // No sign, no leading zero: `01` and `+1` are not versions.
            if part.is_empty()
                || !part.bytes().all(|b| b.is_ascii_digit())
                || (part.len() > 1 && part.starts_with('0'))
            {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        let version = KubernetesVersion {
            major: number()?,
            minor: number()?,
            patch: number()?,
            pre_release,
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(version)
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre_release {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

impl Ord for KubernetesVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre_release, &other.pre_release) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for KubernetesVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for KubernetesVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubernetesVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A minor release line, `1.36`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MinorVersion {
    pub major: u32,
    pub minor: u32,
}

impl MinorVersion {
    /// How many minors `self` is ahead of `other` (negative when behind). Kubernetes has
    /// only ever had major version 1; another major is never within any skew.
    fn minors_after(self, other: MinorVersion) -> Option<i64> {
        (self.major == other.major).then(|| i64::from(self.minor) - i64::from(other.minor))
    }
}

impl Serialize for MinorVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for MinorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A supported minor and the configuration API versions metalk8s writes for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedMinor {
    pub minor: MinorVersion,
    /// `apiVersion` of InitConfiguration, ClusterConfiguration and JoinConfiguration.
    pub kubeadm_api: &'static str,
    /// `apiVersion` of KubeletConfiguration.
    pub kubelet_api: &'static str,
    /// `apiVersion` of KubeProxyConfiguration.
    pub kube_proxy_api: &'static str,
    /// The upstream release the schemas under `tests/schemas/` were written from.
    pub schemas_read_at: &'static str,
}

/// The minors metalk8s deploys, oldest first.
///
/// All three read and write `kubeadm.k8s.io/v1beta4`: 1.37 brings a `kubeadm.k8s.io/v1` in
/// development beside it (the same kinds plus `extraArgs[].mergeMethod`), not the one
/// kubeadm writes, and v1beta4 stays accepted. The kubelet and kube-proxy APIs are
/// unchanged in name; their fields grow from minor to minor (1.36 adds kubelet
/// `tlsCurvePreferences` and `memoryReservationPolicy`, 1.37 `defaultPodSysctls`), which is
/// why the schemas are kept per minor.
pub const SUPPORTED: [SupportedMinor; 3] = [
    SupportedMinor {
        minor: MinorVersion {
            major: 1,
            minor: 35,
        },
        kubeadm_api: KUBEADM_V1BETA4,
        kubelet_api: KUBELET_V1BETA1,
        kube_proxy_api: KUBE_PROXY_V1ALPHA1,
        schemas_read_at: "v1.35.0",
    },
    SupportedMinor {
        minor: MinorVersion {
            major: 1,
            minor: 36,
        },
        kubeadm_api: KUBEADM_V1BETA4,
        kubelet_api: KUBELET_V1BETA1,
        kube_proxy_api: KUBE_PROXY_V1ALPHA1,
        schemas_read_at: "v1.36.0",
    },
    SupportedMinor {
        minor: MinorVersion {
            major: 1,
            minor: 37,
        },
        kubeadm_api: KUBEADM_V1BETA4,
        kubelet_api: KUBELET_V1BETA1,
        kube_proxy_api: KUBE_PROXY_V1ALPHA1,
        schemas_read_at: "v1.37.0-beta.0",
    },
];

pub const KUBEADM_V1BETA4: &str = "kubeadm.k8s.io/v1beta4";
pub const KUBELET_V1BETA1: &str = "kubelet.config.k8s.io/v1beta1";
pub const KUBE_PROXY_V1ALPHA1: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// The supported minors as `1.35, 1.36, 1.37`, for messages.
pub fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|supported| supported.minor.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The supported minor `version` belongs to, or why it is refused.
pub fn supported(version: &KubernetesVersion) -> Result<&'static SupportedMinor, VersionError> {
    SUPPORTED
        .iter()
        .find(|supported| supported.minor == version.minor_version())
        .ok_or_else(|| VersionError::Unsupported {
            version: version.clone(),
            supported: supported_list(),
        })
}

/// The kubelet may be at most this many minors older than the API server (three since
/// 1.28; two before).
pub const KUBELET_MAX_MINORS_BEHIND: i64 = 3;

/// A kubelet of `kubelet` may talk to API servers of `apiserver`: not newer, and at most
/// [`KUBELET_MAX_MINORS_BEHIND`] minors older. In an HA cluster whose API servers differ
/// during an upgrade, pass the oldest API server: it bounds the kubelets.
pub fn check_kubelet_skew(
    kubelet: &KubernetesVersion,
    apiserver: &KubernetesVersion,
) -> Result<(), VersionError> {
    let behind = apiserver
        .minor_version()
        .minors_after(kubelet.minor_version());
    match behind {
        Some(behind) if behind < 0 || (behind == 0 && kubelet > apiserver) => {
            Err(VersionError::KubeletNewer {
                kubelet: kubelet.clone(),
                apiserver: apiserver.clone(),
            })
        }
        Some(behind) if behind <= KUBELET_MAX_MINORS_BEHIND => Ok(()),
        _ => Err(VersionError::KubeletTooOld {
            kubelet: kubelet.clone(),
            apiserver: apiserver.clone(),
            max: KUBELET_MAX_MINORS_BEHIND,
        }),
    }
}

/// A control plane may move from `from` to `to`: kubeadm upgrades one minor at a time
/// (patch releases within a minor are free), and never downgrades.
pub fn check_upgrade_step(
    from: &KubernetesVersion,
    to: &KubernetesVersion,
) -> Result<(), VersionError> {
    if to < from {
        return Err(VersionError::Downgrade {
            from: from.clone(),
            to: to.clone(),
        });
    }
    match to.minor_version().minors_after(from.minor_version()) {
        Some(0 | 1) => Ok(()),
        _ => Err(VersionError::SkipsMinor {
            from: from.clone(),
            to: to.clone(),
        }),
    }
}

/// The API servers running at once (during a rolling upgrade) are within one minor of
/// each other.
pub fn check_apiserver_skew(apiservers: &[KubernetesVersion]) -> Result<(), VersionError> {
    let (Some(oldest), Some(newest)) = (apiservers.iter().min(), apiservers.iter().max()) else {
        return Ok(());
    };
    match newest.minor_version().minors_after(oldest.minor_version()) {
        Some(0 | 1) => Ok(()),
        _ => Err(VersionError::ApiServerSkew {
            oldest: oldest.clone(),
            newest: newest.clone(),
        }),
    }
}

/// A kube-controller-manager or kube-scheduler of `component` may talk to an API server of
/// `apiserver`: never newer, at most one minor older. In metalk8s's layout each talks to
/// its own node's API server (their kubeconfigs name it), so a node upgraded as a whole
/// passes; behind a load balancer the oldest API server would bound them.
pub fn check_controller_skew(
    component: &KubernetesVersion,
    apiserver: &KubernetesVersion,
) -> Result<(), VersionError> {
    let behind = apiserver
        .minor_version()
        .minors_after(component.minor_version());
    match behind {
        Some(0) if component <= apiserver => Ok(()),
        Some(1) => Ok(()),
        _ => Err(VersionError::ControllerSkew {
            component: component.clone(),
            apiserver: apiserver.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubernetesVersion {
        text.parse().unwrap()
    }

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(v("v1.36.2"), KubernetesVersion::new(1, 36, 2));
        assert_eq!(v("1.36.2"), KubernetesVersion::new(1, 36, 2));
        assert_eq!(v("v1.37.0-rc.1").pre_release.as_deref(), Some("rc.1"));
        assert_eq!(v("1.36.2").to_string(), "v1.36.2");
        assert_eq!(v("v1.37.0-rc.1").to_string(), "v1.37.0-rc.1");
        for bad in [
            "", "v", "1.36", "1.36.2.1", "v1.36.x", "1.036.0", "1.36.2-", "+1.2.3",
        ] {
            assert!(bad.parse::<KubernetesVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn pre_releases_order_before_their_release() {
        assert!(v("v1.37.0-rc.1") < v("v1.37.0"));
        assert!(v("v1.36.9") < v("v1.37.0-alpha.1"));
        assert!(v("v1.36.10") > v("v1.36.9"));
    }

    #[test]
    fn supported_minors_resolve_and_others_are_refused_with_the_list() {
        assert_eq!(
            supported(&v("v1.36.2")).unwrap().kubeadm_api,
            "kubeadm.k8s.io/v1beta4"
        );
        assert!(supported(&v("v1.35.0")).is_ok());
        assert!(supported(&v("v1.37.1")).is_ok());
        let error = supported(&v("v1.34.3")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("v1.34.3"), "{message}");
        assert!(message.contains("1.35, 1.36, 1.37"), "{message}");
        assert!(
            error.hint().contains("bundles/kubernetes-1.37.yaml"),
            "{}",
            error.hint()
        );
    }

    #[test]
    fn kubelet_is_never_newer_and_at_most_three_minors_older() {
        let apiserver = v("v1.37.2");
        for ok in ["v1.37.2", "v1.37.0", "v1.36.5", "v1.35.0", "v1.34.9"] {
            check_kubelet_skew(&v(ok), &apiserver).unwrap();
        }
        assert!(matches!(
            check_kubelet_skew(&v("v1.37.3"), &apiserver),
            Err(VersionError::KubeletNewer { .. })
        ));
        assert!(matches!(
            check_kubelet_skew(&v("v1.38.0"), &apiserver),
            Err(VersionError::KubeletNewer { .. })
        ));
        assert!(matches!(
            check_kubelet_skew(&v("v1.33.9"), &apiserver),
            Err(VersionError::KubeletTooOld { .. })
        ));
    }

    #[test]
    fn upgrades_go_one_minor_at_a_time_and_never_back() {
        check_upgrade_step(&v("v1.35.4"), &v("v1.35.6")).unwrap();
        check_upgrade_step(&v("v1.35.4"), &v("v1.36.0")).unwrap();
        check_upgrade_step(&v("v1.36.1"), &v("v1.36.1")).unwrap();
        assert!(matches!(
            check_upgrade_step(&v("v1.35.4"), &v("v1.37.0")),
            Err(VersionError::SkipsMinor { .. })
        ));
        assert!(matches!(
            check_upgrade_step(&v("v1.36.2"), &v("v1.36.1")),
            Err(VersionError::Downgrade { .. })
        ));
        assert!(matches!(
            check_upgrade_step(&v("v1.36.2"), &v("v1.35.9")),
            Err(VersionError::Downgrade { .. })
        ));
    }

    #[test]
    fn api_servers_stay_within_one_minor() {
        check_apiserver_skew(&[v("v1.36.3"), v("v1.37.0"), v("v1.36.9")]).unwrap();
        check_apiserver_skew(&[]).unwrap();
        assert!(matches!(
            check_apiserver_skew(&[v("v1.35.0"), v("v1.37.0")]),
            Err(VersionError::ApiServerSkew { .. })
        ));
    }

    #[test]
    fn controllers_are_never_newer_than_their_api_server_and_at_most_one_minor_older() {
        check_controller_skew(&v("v1.37.0"), &v("v1.37.0")).unwrap();
        check_controller_skew(&v("v1.36.4"), &v("v1.37.0")).unwrap();
        for bad in ["v1.37.1", "v1.38.0", "v1.35.9"] {
            assert!(
                matches!(
                    check_controller_skew(&v(bad), &v("v1.37.0")),
                    Err(VersionError::ControllerSkew { .. })
                ),
                "{bad}"
            );
        }
    }
}
