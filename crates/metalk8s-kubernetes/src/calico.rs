//! Calico, the cluster's network: upstream's release manifest (`manifests/calico.yaml`,
//! carried in the bundle, pinned by its sha256) adjusted for the inventory.
//!
//! The manifest is not templated as text: its documents are parsed, the few objects
//! metalk8s changes are read into the Kubernetes API types (k8s-openapi) and edited field
//! by field, and two custom resources are added. Everything else (the CRDs, RBAC, the
//! PodDisruptionBudget…) is returned as upstream wrote it. What changes:
//!
//! - the `calico-config` ConfigMap: `veth_mtu` ([`pod_mtu`]) and `calico_backend` (`bird`
//!   for IP-in-IP, whose routes BGP distributes; `vxlan` for VXLAN, without BGP);
//! - the `calico-node` DaemonSet's `calico-node` container: node address autodetection
//!   restricted to the IPv4 workload-plane CIDRs (`IP_AUTODETECTION_METHOD=cidr=…`), so
//!   that the address Calico routes pods to (and tunnels from) is on the workload plane;
//!   `NO_DEFAULT_POOLS=true` instead of the `CALICO_IPV4POOL_*` variables, since the pool is
//!   the [`IpPool`] below (those variables only shape a pool calico-node creates once, at
//!   its first start, and never again: a pool owned as an object follows the inventory and
//!   is reapplied like every other object); for VXLAN, the BIRD checks left out of its
//!   probes (as upstream's `calico-vxlan.yaml` does: BIRD does not run);
//! - every image of every pod template, moved onto the bootstrap node's registry under the
//!   same repository path and tag (`quay.io/calico/node:v3.32.1` becomes
//!   `<registry>/calico/node:v3.32.1`), the name a `registry:` entry of the bundle spec
//!   gives the image;
//! - added: an [`IpPool`] for `networks.pods` and the `default` [`FelixConfiguration`]
//!   (WireGuard on or off).
//!
//! A manifest lacking an object or field that is edited here is refused, naming it: a
//! later Calico that renamed one must be looked at, not half applied. IPv4 only: Calico
//! runs here with `FELIX_IPV6SUPPORT=false`, as upstream's manifest ships.
//!
//! WireGuard needs the `wireguard` kernel module on every node; checking the nodes is the
//! caller's job (from their facts), before asking for `wireguard: true`.

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PodSpec, Probe};
use metalk8s_model::inventory::Encapsulation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::InputError;

pub const NAMESPACE: &str = "kube-system";
pub const CONFIG_MAP: &str = "calico-config";
pub const NODE_DAEMON_SET: &str = "calico-node";
/// The container of [`NODE_DAEMON_SET`] that runs Felix, BIRD and the node's startup.
pub const NODE_CONTAINER: &str = "calico-node";
pub const CONTROLLERS_DEPLOYMENT: &str = "calico-kube-controllers";
/// The API group and version of the custom resources added (the `crd.projectcalico.org`
/// CRDs of the manifest).
pub const CRD_API_VERSION: &str = "crd.projectcalico.org/v1";
/// The pool's name: the one calico-node gives the pool it creates by default, so that
/// Calico's documentation and tools that look for it find it.
pub const IP_POOL: &str = "default-ipv4-ippool";
/// Each node takes pod addresses from the pool in blocks of this prefix length (64
/// addresses): Calico's default, written out because a pool's block size cannot change.
pub const BLOCK_SIZE: u8 = 26;

/// Bytes each packet loses to what is enabled, over IPv4, as Calico's documentation gives
/// them ("Configure MTU to maximize network performance", docs.tigera.io/calico/latest/
/// networking/configuring/mtu): IP-in-IP 20, VXLAN 50, WireGuard 60.
pub const IPIP_OVERHEAD: u32 = 20;
pub const VXLAN_OVERHEAD: u32 = 50;
pub const WIREGUARD_OVERHEAD: u32 = 60;
/// The smallest pod MTU accepted: IPv6's minimum link MTU, below which much software
/// misbehaves; a workload plane that leaves less is misconfigured.
pub const MIN_POD_MTU: u32 = 1280;

/// What Calico needs from the inventory and the nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalicoSettings {
    /// `networks.pods`: the IP pool.
    pub pods: IpNet,
    /// `networks.workloadPlane`: where the nodes' addresses for pod traffic are found.
    pub workload_plane: Vec<IpNet>,
    pub encapsulation: Encapsulation,
    /// `networks.encryption: wireguard`. The caller has checked that every node's kernel
    /// has the `wireguard` module.
    pub wireguard: bool,
    /// The smallest MTU of the nodes' workload-plane interfaces (from their facts).
    pub workload_mtu: u32,
    /// The bootstrap node's registry (`Cluster::image_repository`).
    pub image_repository: String,
}

impl CalicoSettings {
    /// The overhead of the encapsulation or encryption in use: the largest of them, since
    /// traffic WireGuard carries between two nodes is not also put in an IP-in-IP or VXLAN
    /// tunnel (Calico's documentation gives WireGuard's MTU alone when both are on).
    pub fn overhead(&self) -> u32 {
        let tunnel = match self.encapsulation {
            Encapsulation::Ipip => IPIP_OVERHEAD,
            Encapsulation::Vxlan => VXLAN_OVERHEAD,
        };
        if self.wireguard {
            tunnel.max(WIREGUARD_OVERHEAD)
        } else {
            tunnel
        }
    }

    /// The IPv4 workload-plane CIDRs, Calico's node address autodetection range.
    fn autodetection_cidrs(&self) -> Vec<IpNet> {
        self.workload_plane
            .iter()
            .filter(|network| matches!(network, IpNet::V4(_)))
            .copied()
            .collect()
    }
}

/// The MTU of the pods' interfaces and of Calico's tunnels: the workload-plane MTU less
/// [`CalicoSettings::overhead`], refused below [`MIN_POD_MTU`].
pub fn pod_mtu(settings: &CalicoSettings) -> Result<u32, InputError> {
    let overhead = settings.overhead();
    match settings.workload_mtu.checked_sub(overhead) {
        Some(mtu) if mtu >= MIN_POD_MTU => Ok(mtu),
        _ => Err(InputError::CalicoMtuTooSmall {
            workload_mtu: settings.workload_mtu,
            overhead,
            minimum: MIN_POD_MTU,
        }),
    }
}

/// A custom resource of Calico's CRDs (`crd.projectcalico.org/v1`), cluster-scoped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomResource<Spec> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Name,
    pub spec: Spec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Name {
    pub name: &'static str,
}

/// `IPPool`: the pods' addresses.
pub type IpPool = CustomResource<IpPoolSpec>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    pub cidr: String,
    pub block_size: u8,
    /// `CrossSubnet` for the encapsulation chosen, `Never` for the other: pods on nodes of
    /// one workload-plane subnet reach each other unencapsulated.
    pub ipip_mode: &'static str,
    pub vxlan_mode: &'static str,
    /// Pods reaching outside the pool leave with their node's address.
    pub nat_outgoing: bool,
    /// Every node takes addresses from it.
    pub node_selector: &'static str,
}

/// `FelixConfiguration` named `default`: the cluster-wide settings of Felix. calico-node
/// creates it at its first start with fields of its own; applied server-side, metalk8s
/// owns only the fields set here.
pub type FelixConfiguration = CustomResource<FelixConfigurationSpec>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Written when false too, so that dropping `networks.encryption` turns it off.
    pub wireguard_enabled: bool,
}

/// The pool [`objects`] adds.
pub fn ip_pool(settings: &CalicoSettings) -> IpPool {
    let (ipip_mode, vxlan_mode) = match settings.encapsulation {
        Encapsulation::Ipip => ("CrossSubnet", "Never"),
        Encapsulation::Vxlan => ("Never", "CrossSubnet"),
    };
    IpPool {
        api_version: CRD_API_VERSION,
        kind: "IPPool",
        metadata: Name { name: IP_POOL },
        spec: IpPoolSpec {
            cidr: settings.pods.to_string(),
            block_size: BLOCK_SIZE,
            ipip_mode,
            vxlan_mode,
            nat_outgoing: true,
            node_selector: "all()",
        },
    }
}

/// The Felix configuration [`objects`] adds.
pub fn felix_configuration(settings: &CalicoSettings) -> FelixConfiguration {
    FelixConfiguration {
        api_version: CRD_API_VERSION,
        kind: "FelixConfiguration",
        metadata: Name { name: "default" },
        spec: FelixConfigurationSpec {
            wireguard_enabled: settings.wireguard,
        },
    }
}

/// Every object to apply: the documents of `manifest` (upstream's `calico.yaml`), the
/// edited ones changed as the module says, in the manifest's order, then the [`IpPool`]
/// and the [`FelixConfiguration`] (which need the manifest's CRDs established first).
pub fn objects(manifest: &str, settings: &CalicoSettings) -> Result<Vec<Value>, InputError> {
    if let IpNet::V6(_) = settings.pods {
        return Err(InputError::CalicoIpv6Pods {
            network: settings.pods,
        });
    }
    let cidrs = settings.autodetection_cidrs();
    if cidrs.is_empty() {
        return Err(InputError::CalicoNoIpv4WorkloadPlane);
    }
    let mtu = pod_mtu(settings)?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(manifest).map_err(|error| InputError::CalicoManifest {
            problem: error.to_string(),
        })?;
    let mut found = Found::default();
    let mut objects = Vec::new();
    for document in documents {
        if document.is_null() {
            continue;
        }
        let kind = document["kind"].as_str().unwrap_or_default().to_owned();
        let name = document["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let object = match (kind.as_str(), name.as_str()) {
            ("ConfigMap", CONFIG_MAP) => {
                found.config_map = true;
                let mut config: ConfigMap = typed(document, &kind, &name)?;
                edit_config(&mut config, settings, mtu)?;
                untyped(&config)
            }
            ("DaemonSet", NODE_DAEMON_SET) => {
                found.daemon_set = true;
                let mut daemon_set: DaemonSet = typed(document, &kind, &name)?;
                let pod = pod_spec(daemon_set.spec.as_mut().map(|spec| &mut spec.template))
                    .ok_or_else(|| missing_field(&kind, &name, "spec.template.spec"))?;
                edit_node(pod, settings, &cidrs, &kind, &name)?;
                rebase_images(pod, &settings.image_repository, &kind, &name)?;
                untyped(&daemon_set)
            }
            ("Deployment", CONTROLLERS_DEPLOYMENT) => {
                found.deployment = true;
                let mut deployment: Deployment = typed(document, &kind, &name)?;
                let pod = pod_spec(deployment.spec.as_mut().map(|spec| &mut spec.template))
                    .ok_or_else(|| missing_field(&kind, &name, "spec.template.spec"))?;
                rebase_images(pod, &settings.image_repository, &kind, &name)?;
                untyped(&deployment)
            }
            _ => document,
        };
        objects.push(object);
    }
    for (present, kind, name) in [
        (found.config_map, "ConfigMap", CONFIG_MAP),
        (found.daemon_set, "DaemonSet", NODE_DAEMON_SET),
        (found.deployment, "Deployment", CONTROLLERS_DEPLOYMENT),
    ] {
        if !present {
            return Err(InputError::CalicoObjectMissing {
                object: format!("{kind} {name}"),
            });
        }
    }
    objects.push(untyped(&ip_pool(settings)));
    objects.push(untyped(&felix_configuration(settings)));
    Ok(objects)
}

#[derive(Default)]
struct Found {
    config_map: bool,
    daemon_set: bool,
    deployment: bool,
}

fn typed<T: DeserializeOwned>(document: Value, kind: &str, name: &str) -> Result<T, InputError> {
    serde_json::from_value(document).map_err(|error| InputError::CalicoManifest {
        problem: format!("{kind} {name}: {error}"),
    })
}

fn untyped<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("API objects serialize to JSON")
}

fn missing_field(kind: &str, name: &str, field: &str) -> InputError {
    InputError::CalicoFieldMissing {
        object: format!("{kind} {name}"),
        field: field.to_owned(),
    }
}

fn pod_spec(
    template: Option<&mut k8s_openapi::api::core::v1::PodTemplateSpec>,
) -> Option<&mut PodSpec> {
    template?.spec.as_mut()
}

fn edit_config(
    config: &mut ConfigMap,
    settings: &CalicoSettings,
    mtu: u32,
) -> Result<(), InputError> {
    let data = config.data.get_or_insert_with(BTreeMap::new);
    let backend = match settings.encapsulation {
        Encapsulation::Ipip => "bird",
        Encapsulation::Vxlan => "vxlan",
    };
    for (key, value) in [
        ("veth_mtu", mtu.to_string()),
        ("calico_backend", backend.to_owned()),
    ] {
        let Some(slot) = data.get_mut(key) else {
            return Err(missing_field(
                "ConfigMap",
                CONFIG_MAP,
                &format!("data.{key}"),
            ));
        };
        *slot = value;
    }
    Ok(())
}

/// Variables of the `calico-node` container that only shape the pool calico-node would
/// create itself, which `NO_DEFAULT_POOLS` turns off.
const DEFAULT_POOL_VARIABLES: [&str; 4] = [
    "CALICO_IPV4POOL_CIDR",
    "CALICO_IPV4POOL_IPIP",
    "CALICO_IPV4POOL_VXLAN",
    "CALICO_IPV6POOL_VXLAN",
];

fn edit_node(
    pod: &mut PodSpec,
    settings: &CalicoSettings,
    cidrs: &[IpNet],
    kind: &str,
    name: &str,
) -> Result<(), InputError> {
    let container = pod
        .containers
        .iter_mut()
        .find(|container| container.name == NODE_CONTAINER)
        .ok_or_else(|| missing_field(kind, name, &format!("container {NODE_CONTAINER}")))?;
    let env = container.env.get_or_insert_with(Vec::new);
    if !env
        .iter()
        .any(|variable| variable.name == "CALICO_NETWORKING_BACKEND")
    {
        // The backend is read from the ConfigMap edited above: a manifest that no longer
        // does so would not follow the encapsulation chosen.
        return Err(missing_field(
            kind,
            name,
            &format!("container {NODE_CONTAINER}: env CALICO_NETWORKING_BACKEND"),
        ));
    }
    env.retain(|variable| !DEFAULT_POOL_VARIABLES.contains(&variable.name.as_str()));
    let methods: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    set_env(env, "NO_DEFAULT_POOLS", "true");
    set_env(
        env,
        "IP_AUTODETECTION_METHOD",
        &format!("cidr={}", methods.join(",")),
    );
    if settings.encapsulation == Encapsulation::Vxlan {
        drop_bird_checks(container);
    }
    Ok(())
}

fn set_env(env: &mut Vec<EnvVar>, name: &str, value: &str) {
    let variable = EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    };
    match env.iter_mut().find(|existing| existing.name == name) {
        Some(existing) => *existing = variable,
        None => env.push(variable),
    }
}

/// Without BGP, BIRD does not run: its liveness and readiness checks would fail.
fn drop_bird_checks(container: &mut Container) {
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
    ]
    .into_iter()
    .flatten()
    {
        let Probe { exec, .. } = probe;
        if let Some(command) = exec.as_mut().and_then(|exec| exec.command.as_mut()) {
            command.retain(|argument| !argument.starts_with("-bird"));
        }
    }
}

/// Every container's and init container's image, on `repository`.
fn rebase_images(
    pod: &mut PodSpec,
    repository: &str,
    kind: &str,
    name: &str,
) -> Result<(), InputError> {
    let init = pod.init_containers.iter_mut().flatten();
    for container in pod.containers.iter_mut().chain(init) {
        let Some(image) = container.image.as_mut() else {
            return Err(missing_field(
                kind,
                name,
                &format!("container {}: image", container.name),
            ));
        };
        *image = rebased_image(image, repository).ok_or_else(|| InputError::CalicoImage {
            object: format!("{kind} {name}"),
            image: image.clone(),
        })?;
    }
    Ok(())
}

/// `image` with its registry host replaced by `repository`: `quay.io/calico/node:v3.32.1`
/// becomes `REPOSITORY/calico/node:v3.32.1`. None for an image without a registry host, a
/// repository path or a tag (a name the bundle could not have given it).
pub fn rebased_image(image: &str, repository: &str) -> Option<String> {
    let (host, path) = image.split_once('/')?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return None;
    }
    let name = path.split('@').next()?;
    let (repository_path, tag) = name.rsplit_once(':')?;
    if repository_path.is_empty() || tag.is_empty() || repository_path.contains(':') {
        return None;
    }
    Some(format!("{repository}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!("../tests/fixtures/calico-v3.32.1.yaml");

    fn settings() -> CalicoSettings {
        CalicoSettings {
            pods: "10.233.0.0/16".parse().unwrap(),
            workload_plane: vec!["10.200.0.0/16".parse().unwrap()],
            encapsulation: Encapsulation::Ipip,
            wireguard: false,
            workload_mtu: 1500,
            image_repository: "10.100.0.11:5000".to_owned(),
        }
    }

    /// The manifest with `edit` applied to each of its documents (None drops it).
    fn manifest_with(edit: impl Fn(Value) -> Option<Value>) -> String {
        let documents: Vec<Value> = crate::yaml::parse_documents(MANIFEST)
            .unwrap()
            .into_iter()
            .filter(|document| !document.is_null())
            .filter_map(edit)
            .collect();
        crate::yaml::documents(&documents)
    }

    fn is(document: &Value, kind: &str, name: &str) -> bool {
        document["kind"] == kind && document["metadata"]["name"] == name
    }

    #[test]
    fn the_pod_mtu_leaves_room_for_what_is_enabled() {
        let mut settings = settings();
        assert_eq!(pod_mtu(&settings), Ok(1480));
        settings.encapsulation = Encapsulation::Vxlan;
        assert_eq!(pod_mtu(&settings), Ok(1450));
        settings.wireguard = true;
        assert_eq!(pod_mtu(&settings), Ok(1440));
        settings.encapsulation = Encapsulation::Ipip;
        assert_eq!(pod_mtu(&settings), Ok(1440));
        settings.workload_mtu = 9000;
        assert_eq!(pod_mtu(&settings), Ok(8940));
    }

    #[test]
    fn a_workload_mtu_too_small_is_refused() {
        let mut settings = settings();
        settings.workload_mtu = MIN_POD_MTU + IPIP_OVERHEAD;
        assert_eq!(pod_mtu(&settings), Ok(MIN_POD_MTU));
        settings.workload_mtu -= 1;
        let error = objects(MANIFEST, &settings).unwrap_err();
        assert_eq!(
            error,
            InputError::CalicoMtuTooSmall {
                workload_mtu: 1299,
                overhead: 20,
                minimum: 1280
            }
        );
        assert!(error.hint().unwrap().contains("MTU"));
        settings.workload_mtu = 10;
        assert!(matches!(
            pod_mtu(&settings),
            Err(InputError::CalicoMtuTooSmall { .. })
        ));
    }

    #[test]
    fn ipv6_pods_and_an_ipv6_only_workload_plane_are_refused() {
        let mut ipv6 = settings();
        ipv6.pods = "fd00:233::/56".parse().unwrap();
        assert_eq!(
            objects(MANIFEST, &ipv6),
            Err(InputError::CalicoIpv6Pods { network: ipv6.pods })
        );
        let mut no_ipv4 = settings();
        no_ipv4.workload_plane = vec!["fd00:200::/64".parse().unwrap()];
        assert_eq!(
            objects(MANIFEST, &no_ipv4),
            Err(InputError::CalicoNoIpv4WorkloadPlane)
        );
    }

    #[test]
    fn a_manifest_without_an_object_it_adjusts_is_refused_naming_it() {
        for (kind, name) in [
            ("ConfigMap", CONFIG_MAP),
            ("DaemonSet", NODE_DAEMON_SET),
            ("Deployment", CONTROLLERS_DEPLOYMENT),
        ] {
            let manifest =
                manifest_with(|document| (!is(&document, kind, name)).then_some(document));
            let error = objects(&manifest, &settings()).unwrap_err();
            assert_eq!(
                error,
                InputError::CalicoObjectMissing {
                    object: format!("{kind} {name}")
                }
            );
            assert!(error.to_string().contains(&format!("{kind} {name}")));
            assert!(error.hint().unwrap().contains("bundles/"));
        }
    }

    #[test]
    fn a_manifest_without_a_field_it_adjusts_is_refused_naming_it() {
        let manifest = manifest_with(|mut document| {
            if is(&document, "ConfigMap", CONFIG_MAP) {
                document["data"].as_object_mut().unwrap().remove("veth_mtu");
            }
            Some(document)
        });
        assert_eq!(
            objects(&manifest, &settings()),
            Err(InputError::CalicoFieldMissing {
                object: "ConfigMap calico-config".to_owned(),
                field: "data.veth_mtu".to_owned(),
            })
        );

        let manifest = manifest_with(|mut document| {
            if is(&document, "DaemonSet", NODE_DAEMON_SET) {
                document["spec"]["template"]["spec"]["containers"][0]["name"] = "felix".into();
            }
            Some(document)
        });
        assert_eq!(
            objects(&manifest, &settings()),
            Err(InputError::CalicoFieldMissing {
                object: "DaemonSet calico-node".to_owned(),
                field: "container calico-node".to_owned(),
            })
        );
    }

    #[test]
    fn a_manifest_that_is_not_yaml_or_holds_a_wrong_object_is_refused() {
        assert!(matches!(
            objects("kind: [", &settings()),
            Err(InputError::CalicoManifest { .. })
        ));
        let manifest = manifest_with(|mut document| {
            if is(&document, "DaemonSet", NODE_DAEMON_SET) {
                document["spec"]["template"]["spec"]["containers"] = "none".into();
            }
            Some(document)
        });
        let error = objects(&manifest, &settings()).unwrap_err();
        assert!(
            matches!(&error, InputError::CalicoManifest { problem } if problem.starts_with("DaemonSet calico-node: ")),
            "{error:?}"
        );
    }

    #[test]
    fn images_keep_their_path_and_tag_on_the_bootstrap_registry() {
        let repository = "10.100.0.11:5000";
        assert_eq!(
            rebased_image("quay.io/calico/node:v3.32.1", repository).as_deref(),
            Some("10.100.0.11:5000/calico/node:v3.32.1")
        );
        assert_eq!(
            rebased_image("localhost:5000/calico/cni:v1@sha256:abc", repository).as_deref(),
            Some("10.100.0.11:5000/calico/cni:v1@sha256:abc")
        );
        for refused in [
            "calico/node:v3.32.1",
            "quay.io/calico/node",
            "node:v1",
            "quay.io/:v1",
        ] {
            assert_eq!(rebased_image(refused, repository), None, "{refused}");
        }
    }
}
