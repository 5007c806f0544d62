//! The shape of an inventory document: which fields each mapping has, which are required,
//! and what each value must look like.
//!
//! It mirrors the serde shape of `metalk8s_model::inventory` (unit tests keep the two in
//! step) and adds what serde cannot say: the rules a value must follow (DNS names, label
//! syntax, device paths) and an example shown when it is wrong.

/// What a YAML value must be.
#[derive(Debug)]
pub(crate) enum Shape {
    Struct(&'static StructShape),
    List {
        item: &'static Shape,
        non_empty: bool,
    },
    /// Kubernetes labels: label keys to label values.
    Labels,
    /// A mapping from role names to a structure.
    RoleMap(&'static StructShape),
    /// Kernel parameters: sysctl names to values.
    Sysctls,
    Text(Text),
    Bool,
    Integer {
        min: u64,
        max: u64,
    },
    Seconds,
    Cidr,
    Ip,
    Size,
    Choice(&'static Choice),
    Constant(&'static str),
}

/// The rule a string follows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Text {
    NonEmpty,
    DnsLabel,
    DnsSubdomain,
    Address,
    LabelKey,
    LabelValue,
    DevicePath,
    VolumeGroup,
    Url,
    KernelVersion,
    KernelModule,
    PackageName,
    NtpServer,
    /// A `noProxy` item: host, `.domain`, IP, CIDR or `*`.
    NoProxy,
    /// One `mkfs` argument.
    MkfsOption,
    /// One mount option, `name` or `name=value`.
    MountOption,
}

/// A closed set of words, with the words people coming from other tools use for them.
#[derive(Debug)]
pub(crate) struct Choice {
    pub noun: &'static str,
    pub values: &'static [&'static str],
    pub aliases: &'static [(&'static str, &'static str)],
}

#[derive(Debug)]
pub(crate) struct StructShape {
    /// What the mapping is, in a sentence: "a node", "a volume".
    pub noun: &'static str,
    pub fields: &'static [Field],
    /// A minimal valid value, in flow style.
    pub example: &'static str,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub required: bool,
    /// A valid value for this field, as written after `name: `.
    pub example: &'static str,
}

impl StructShape {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        // The shapes are statics, so their fields live forever.
        let fields: &'static [Field] = self.fields;
        fields.iter().find(|field| field.name == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|field| field.name).collect()
    }

    /// The field of a nested mapping called `name`, to say where a misplaced field belongs.
    pub fn home_of(&self, name: &str) -> Option<&'static str> {
        self.fields.iter().find_map(|field| match field.shape {
            Shape::Struct(inner) if inner.field(name).is_some() => Some(field.name),
            _ => None,
        })
    }
}

impl Shape {
    /// What the value must be, for "must be ..." messages.
    pub fn expected(&self) -> String {
        match self {
            Shape::Struct(_) => "a mapping".to_owned(),
            Shape::List { .. } => "a list".to_owned(),
            Shape::Labels => "a mapping of label keys to values".to_owned(),
            Shape::RoleMap(_) => "a mapping of role names".to_owned(),
            Shape::Sysctls => "a mapping of kernel parameters to values".to_owned(),
            Shape::Text(_) => "a string".to_owned(),
            Shape::Bool => "`true` or `false`".to_owned(),
            Shape::Integer { .. } => "a whole number".to_owned(),
            Shape::Seconds => "a number of seconds".to_owned(),
            Shape::Cidr => "a CIDR".to_owned(),
            Shape::Ip => "an IP address".to_owned(),
            Shape::Size => "a size".to_owned(),
            Shape::Choice(choice) => format!("a {}", choice.noun),
            Shape::Constant(value) => format!("`{value}`"),
        }
    }

    /// A valid value, for help texts about list items and map values.
    pub fn example(&self) -> String {
        match self {
            Shape::Struct(inner) => inner.example.to_owned(),
            Shape::List { item, .. } => format!("[{}]", item.example()),
            Shape::Labels => "{rack: r1}".to_owned(),
            Shape::RoleMap(inner) => format!("{{worker: {}}}", inner.example),
            Shape::Sysctls => "{vm.max_map_count: 262144}".to_owned(),
            Shape::Text(text) => text.example().to_owned(),
            Shape::Bool => "true".to_owned(),
            Shape::Integer { min, .. } => min.to_string(),
            Shape::Seconds => "2".to_owned(),
            Shape::Cidr => "10.10.0.0/16".to_owned(),
            Shape::Ip => "10.10.0.11".to_owned(),
            Shape::Size => "10Gi".to_owned(),
            Shape::Choice(choice) => choice.values[0].to_owned(),
            Shape::Constant(value) => (*value).to_owned(),
        }
    }
}

impl Text {
    fn example(self) -> &'static str {
        match self {
            Text::NonEmpty => "text",
            Text::DnsLabel => "node-1",
            Text::DnsSubdomain => "metalk8s-local",
            Text::Address => "10.10.0.11",
            Text::LabelKey => "example.com/rack",
            Text::LabelValue => "r1",
            Text::DevicePath => "/dev/vdb",
            Text::VolumeGroup => "vg_metalk8s",
            Text::Url => "http://proxy.example.com:3128",
            Text::KernelVersion => "4.18",
            Text::KernelModule => "ip_vs",
            Text::PackageName => "nfs-common",
            Text::NtpServer => "ntp.example.com",
            Text::NoProxy => ".example.com",
            Text::MkfsOption => "-m",
            Text::MountOption => "noatime",
        }
    }
}

pub(crate) static ROLE: Choice = Choice {
    noun: "role",
    values: &["bootstrap", "etcd", "control-plane", "worker", "infra"],
    aliases: &[
        ("master", "control-plane"),
        ("kube-master", "control-plane"),
        ("kube_control_plane", "control-plane"),
        ("controller", "control-plane"),
        ("node", "worker"),
        ("kube-node", "worker"),
        ("kube_node", "worker"),
    ],
};

pub(crate) static TAINT_EFFECT: Choice = Choice {
    noun: "taint effect",
    values: &["NoSchedule", "PreferNoSchedule", "NoExecute"],
    aliases: &[],
};

pub(crate) static FS_TYPE: Choice = Choice {
    noun: "filesystem type",
    values: &["ext4", "xfs"],
    aliases: &[],
};

pub(crate) static ENCAPSULATION: Choice = Choice {
    noun: "pod traffic encapsulation",
    values: &["ipip", "vxlan"],
    aliases: &[
        ("ip-in-ip", "ipip"),
        ("ipinip", "ipip"),
        ("IPIP", "ipip"),
        ("VXLAN", "vxlan"),
    ],
};

pub(crate) static ENCRYPTION: Choice = Choice {
    noun: "pod traffic encryption",
    values: &["wireguard"],
    aliases: &[("WireGuard", "wireguard")],
};

const fn required(name: &'static str, shape: Shape, example: &'static str) -> Field {
    Field {
        name,
        shape,
        required: true,
        example,
    }
}

const fn optional(name: &'static str, shape: Shape, example: &'static str) -> Field {
    Field {
        name,
        shape,
        required: false,
        example,
    }
}

const PORT: Shape = Shape::Integer { min: 1, max: 65535 };
const COUNT: Shape = Shape::Integer {
    min: 1,
    max: u32::MAX as u64,
};

pub(crate) static INVENTORY: StructShape = StructShape {
    noun: "the inventory",
    example: "{apiVersion: metalk8s.io/v1alpha1, kind: Inventory, name: demo, networks: {...}, nodes: [...]}",
    fields: &[
        required(
            "apiVersion",
            Shape::Constant(metalk8s_model::inventory::API_VERSION),
            metalk8s_model::inventory::API_VERSION,
        ),
        required(
            "kind",
            Shape::Constant(metalk8s_model::inventory::KIND),
            metalk8s_model::inventory::KIND,
        ),
        required("name", Shape::Text(Text::DnsLabel), "demo"),
        required(
            "networks",
            Shape::Struct(&NETWORKS),
            "{controlPlane: [10.10.0.0/16], workloadPlane: [10.20.0.0/16]}",
        ),
        optional(
            "proxy",
            Shape::Struct(&PROXY),
            "{https: http://proxy.example.com:3128}",
        ),
        optional("ssh", Shape::Struct(&SSH), "{user: centos, sudo: true}"),
        optional("prechecks", Shape::Struct(&PRECHECKS), "{minVarFree: 5Gi}"),
        optional(
            "os",
            Shape::Struct(&OS),
            "{ntp: {servers: [ntp.example.com]}}",
        ),
        required(
            "nodes",
            Shape::List {
                item: &Shape::Struct(&NODE),
                non_empty: true,
            },
            "[{name: node-1, address: 10.10.0.11, roles: [bootstrap, etcd, control-plane, worker]}]",
        ),
    ],
};

const CIDRS: Shape = Shape::List {
    item: &Shape::Cidr,
    non_empty: true,
};

pub(crate) static NETWORKS: StructShape = StructShape {
    noun: "the networks",
    example: "{controlPlane: [10.10.0.0/16], workloadPlane: [10.20.0.0/16]}",
    fields: &[
        required("controlPlane", CIDRS, "[10.10.0.0/16]"),
        required("workloadPlane", CIDRS, "[10.20.0.0/16]"),
        optional("pods", Shape::Cidr, "10.233.0.0/16"),
        optional("services", Shape::Cidr, "10.96.0.0/12"),
        optional("apiServerVIP", Shape::Ip, "10.10.0.10"),
        optional(
            "nameservers",
            Shape::List {
                item: &Shape::Ip,
                non_empty: false,
            },
            "[10.10.0.2, 10.10.0.3]",
        ),
        optional("encapsulation", Shape::Choice(&ENCAPSULATION), "vxlan"),
        optional("encryption", Shape::Choice(&ENCRYPTION), "wireguard"),
    ],
};

pub(crate) static PROXY: StructShape = StructShape {
    noun: "the proxy settings",
    example: "{https: http://proxy.example.com:3128}",
    fields: &[
        optional(
            "http",
            Shape::Text(Text::Url),
            "http://proxy.example.com:3128",
        ),
        optional(
            "https",
            Shape::Text(Text::Url),
            "http://proxy.example.com:3128",
        ),
        optional(
            "noProxy",
            Shape::List {
                item: &Shape::Text(Text::NoProxy),
                non_empty: false,
            },
            "[.example.com]",
        ),
    ],
};

pub(crate) static SSH: StructShape = StructShape {
    noun: "the SSH settings",
    example: "{user: centos, sudo: true}",
    fields: &[
        optional("user", Shape::Text(Text::NonEmpty), "centos"),
        optional("port", PORT, "22"),
        optional(
            "identityFile",
            Shape::Text(Text::NonEmpty),
            "~/.ssh/id_ed25519",
        ),
        optional("sudo", Shape::Bool, "true"),
        optional(
            "knownHostsFile",
            Shape::Text(Text::NonEmpty),
            "~/.ssh/known_hosts",
        ),
        optional("acceptNewHostKeys", Shape::Bool, "true"),
        optional("connectTimeoutSeconds", COUNT, "10"),
        optional("parallelism", COUNT, "20"),
    ],
};

pub(crate) static NODE_SSH: StructShape = StructShape {
    noun: "a node's SSH overrides",
    example: "{user: centos, port: 2222}",
    fields: &[
        optional("user", Shape::Text(Text::NonEmpty), "centos"),
        optional("port", PORT, "22"),
        optional(
            "identityFile",
            Shape::Text(Text::NonEmpty),
            "~/.ssh/id_ed25519",
        ),
        optional("sudo", Shape::Bool, "true"),
    ],
};

pub(crate) static PRECHECKS: StructShape = StructShape {
    noun: "the precheck thresholds",
    example: "{minVarFree: 5Gi}",
    fields: &[
        optional(
            "requirements",
            Shape::RoleMap(&REQUIREMENT),
            "{worker: {cpus: 4, memory: 16Gi}}",
        ),
        optional("minVarFree", Shape::Size, "5Gi"),
        optional("maxClockSkewSeconds", Shape::Seconds, "2"),
        optional("minKernel", Shape::Text(Text::KernelVersion), "4.18"),
    ],
};

pub(crate) static OS: StructShape = StructShape {
    noun: "the OS settings",
    example: "{ntp: {servers: [ntp.example.com]}}",
    fields: &[
        optional("sysctls", Shape::Sysctls, "{vm.max_map_count: 262144}"),
        optional(
            "kernelModules",
            Shape::List {
                item: &Shape::Text(Text::KernelModule),
                non_empty: false,
            },
            "[ip_vs]",
        ),
        optional(
            "packages",
            Shape::List {
                item: &Shape::Text(Text::PackageName),
                non_empty: false,
            },
            "[nfs-common]",
        ),
        optional("ntp", Shape::Struct(&NTP), "{servers: [ntp.example.com]}"),
        optional("journald", Shape::Struct(&JOURNALD), "{systemMaxUse: 4Gi}"),
        // Past the kernel's largest `fs.nr_open`, no limit can be set.
        optional(
            "nofile",
            Shape::Integer {
                min: 1024,
                max: MAX_NOFILE,
            },
            "1048576",
        ),
    ],
};

/// The largest `fs.nr_open` a 64-bit kernel accepts (`sysctl_nr_open_max`).
pub(crate) const MAX_NOFILE: u64 = 1_073_741_816;

pub(crate) static NTP: StructShape = StructShape {
    noun: "the NTP settings",
    example: "{servers: [ntp.example.com]}",
    fields: &[optional(
        "servers",
        Shape::List {
            item: &Shape::Text(Text::NtpServer),
            non_empty: false,
        },
        "[ntp1.example.com, 10.0.0.1]",
    )],
};

pub(crate) static JOURNALD: StructShape = StructShape {
    noun: "the journald settings",
    example: "{systemMaxUse: 4Gi}",
    fields: &[optional("systemMaxUse", Shape::Size, "4Gi")],
};

pub(crate) static REQUIREMENT: StructShape = StructShape {
    noun: "a requirement",
    example: "{cpus: 2, memory: 4Gi}",
    fields: &[
        required("cpus", COUNT, "2"),
        required("memory", Shape::Size, "4Gi"),
    ],
};

pub(crate) static NODE: StructShape = StructShape {
    noun: "a node",
    example: "{name: node-1, address: 10.10.0.11, roles: [worker]}",
    fields: &[
        required("name", Shape::Text(Text::DnsLabel), "node-1"),
        required("address", Shape::Text(Text::Address), "10.10.0.11"),
        optional("controlPlaneIP", Shape::Ip, "10.10.0.11"),
        optional("workloadPlaneIP", Shape::Ip, "10.20.0.11"),
        required(
            "roles",
            Shape::List {
                item: &Shape::Choice(&ROLE),
                non_empty: true,
            },
            "[etcd, control-plane, worker]",
        ),
        optional("labels", Shape::Labels, "{example.com/rack: r1}"),
        optional(
            "taints",
            Shape::List {
                item: &Shape::Struct(&TAINT),
                non_empty: false,
            },
            "[{key: dedicated, value: storage, effect: NoSchedule}]",
        ),
        optional("ssh", Shape::Struct(&NODE_SSH), "{port: 2222}"),
        optional("storage", Shape::Struct(&STORAGE), "{volumes: [...]}"),
    ],
};

pub(crate) static TAINT: StructShape = StructShape {
    noun: "a taint",
    example: "{key: dedicated, value: storage, effect: NoSchedule}",
    fields: &[
        required("key", Shape::Text(Text::LabelKey), "dedicated"),
        optional("value", Shape::Text(Text::LabelValue), "storage"),
        required("effect", Shape::Choice(&TAINT_EFFECT), "NoSchedule"),
    ],
};

pub(crate) static STORAGE: StructShape = StructShape {
    noun: "a node's storage",
    example: "{volumes: [{name: data, sparse: {size: 10Gi}}]}",
    fields: &[optional(
        "volumes",
        Shape::List {
            item: &Shape::Struct(&VOLUME),
            non_empty: false,
        },
        "[{name: data, sparse: {size: 10Gi}}]",
    )],
};

pub(crate) static VOLUME: StructShape = StructShape {
    noun: "a volume",
    example: "{name: data, sparse: {size: 10Gi}}",
    fields: &[
        required("name", Shape::Text(Text::DnsSubdomain), "data"),
        optional(
            "lvm",
            Shape::Struct(&LVM),
            "{vg: vg_metalk8s, size: 10Gi, devices: [/dev/vdb]}",
        ),
        optional("sparse", Shape::Struct(&SPARSE), "{size: 10Gi}"),
        optional("rawBlock", Shape::Struct(&RAW_BLOCK), "{device: /dev/vdc}"),
        optional("fsType", Shape::Choice(&FS_TYPE), "xfs"),
        optional(
            "mkfsOptions",
            Shape::List {
                item: &Shape::Text(Text::MkfsOption),
                non_empty: false,
            },
            "[-m, '0']",
        ),
        optional(
            "mountOptions",
            Shape::List {
                item: &Shape::Text(Text::MountOption),
                non_empty: false,
            },
            "[noatime]",
        ),
        optional(
            "storageClass",
            Shape::Text(Text::DnsSubdomain),
            "metalk8s-local",
        ),
        optional("labels", Shape::Labels, "{app: prometheus}"),
    ],
};

pub(crate) static LVM: StructShape = StructShape {
    noun: "an LVM volume",
    example: "{vg: vg_metalk8s, size: 10Gi, devices: [/dev/vdb]}",
    fields: &[
        required("vg", Shape::Text(Text::VolumeGroup), "vg_metalk8s"),
        required("size", Shape::Size, "10Gi"),
        optional(
            "devices",
            Shape::List {
                item: &Shape::Text(Text::DevicePath),
                non_empty: false,
            },
            "[/dev/vdb]",
        ),
    ],
};

pub(crate) static SPARSE: StructShape = StructShape {
    noun: "a sparse-file volume",
    example: "{size: 10Gi}",
    fields: &[required("size", Shape::Size, "10Gi")],
};

pub(crate) static RAW_BLOCK: StructShape = StructShape {
    noun: "a raw block device volume",
    example: "{device: /dev/vdc}",
    fields: &[required(
        "device",
        Shape::Text(Text::DevicePath),
        "/dev/vdc",
    )],
};

#[cfg(test)]
mod tests {
    use super::*;
    use metalk8s_model::inventory::{Encapsulation, Encryption, FsType, Role, TaintEffect};

    fn serialized<T: serde::Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn choices_match_the_model_enums() {
        let roles: Vec<String> = Role::ALL.into_iter().map(serialized).collect();
        assert_eq!(roles, ROLE.values);
        let effects: Vec<String> = [
            TaintEffect::NoSchedule,
            TaintEffect::PreferNoSchedule,
            TaintEffect::NoExecute,
        ]
        .into_iter()
        .map(serialized)
        .collect();
        assert_eq!(effects, TAINT_EFFECT.values);
        let fs_types: Vec<String> = [FsType::Ext4, FsType::Xfs]
            .into_iter()
            .map(serialized)
            .collect();
        assert_eq!(fs_types, FS_TYPE.values);
        let encapsulations: Vec<String> = [Encapsulation::Ipip, Encapsulation::Vxlan]
            .into_iter()
            .map(serialized)
            .collect();
        assert_eq!(encapsulations, ENCAPSULATION.values);
        let encryptions: Vec<String> = [Encryption::Wireguard]
            .into_iter()
            .map(serialized)
            .collect();
        assert_eq!(encryptions, ENCRYPTION.values);
    }

    /// Every field the model's JSON Schema declares is described here and the other way
    /// round, with the same required set, so the shape cannot drift from the model.
    #[test]
    fn shapes_match_the_model_schema() {
        let schema =
            serde_json::to_value(schemars::schema_for!(metalk8s_model::Inventory)).unwrap();
        let definitions = &schema["$defs"];
        let pairs: [(&StructShape, &serde_json::Value); 16] = [
            (&INVENTORY, &schema),
            (&NETWORKS, &definitions["Networks"]),
            (&PROXY, &definitions["Proxy"]),
            (&SSH, &definitions["SshSettings"]),
            (&NODE_SSH, &definitions["SshOverrides"]),
            (&PRECHECKS, &definitions["Prechecks"]),
            (&OS, &definitions["OsSettings"]),
            (&NTP, &definitions["Ntp"]),
            (&JOURNALD, &definitions["Journald"]),
            (&REQUIREMENT, &definitions["Requirement"]),
            (&NODE, &definitions["Node"]),
            (&TAINT, &definitions["Taint"]),
            (&STORAGE, &definitions["Storage"]),
            (&VOLUME, &definitions["Volume"]),
            (&LVM, &definitions["LvmVolume"]),
            (&SPARSE, &definitions["SparseVolume"]),
        ];
        let raw_block = (&RAW_BLOCK, &definitions["RawBlockVolume"]);
        for (shape, definition) in pairs.into_iter().chain([raw_block]) {
            let mut in_model: Vec<&str> = definition["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no properties for {}", shape.noun))
                .keys()
                .map(String::as_str)
                .collect();
            in_model.sort_unstable();
            let mut in_shape = shape.names();
            in_shape.sort_unstable();
            assert_eq!(in_shape, in_model, "fields of {}", shape.noun);

            let mut required_in_model: Vec<&str> = definition["required"]
                .as_array()
                .map(|names| names.iter().filter_map(|name| name.as_str()).collect())
                .unwrap_or_default();
            required_in_model.sort_unstable();
            let mut required_in_shape: Vec<&str> = shape
                .fields
                .iter()
                .filter(|field| field.required)
                .map(|field| field.name)
                .collect();
            required_in_shape.sort_unstable();
            assert_eq!(
                required_in_shape, required_in_model,
                "required fields of {}",
                shape.noun
            );
        }
    }
}
