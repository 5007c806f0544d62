//! Hostile strings, and inventories that carry one in a chosen field.

use proptest::prelude::*;

/// Pieces an attacker puts in a value: quotes and separators of the files the values land
/// in (apt.conf, systemd units, sysctl.d, fstab, chrony.conf, dnf.conf, shell), line
/// breaks, expansions, comment starters, Unicode controls and look-alikes.
pub const HOSTILE: &[&str] = &[
    "\"",
    "'",
    "`",
    ";",
    "\n",
    "\r",
    "\r\n",
    "\t",
    " ",
    "${IFS}",
    "$(id)",
    "`id`",
    "\\\"",
    "\\",
    "\\n",
    "{",
    "}",
    "#",
    "//",
    "/*",
    "%",
    "%%",
    "%n",
    "%0a",
    "%22",
    "=",
    ",",
    "*",
    "|",
    "&",
    "<",
    ">",
    "!",
    "~",
    "[",
    "]",
    "@",
    ":",
    "\u{0}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "é",
    "ｅ",
    "\";APT::Update::Pre-Invoke{\"touch${IFS}/tmp/pwned\";};//",
    "\nExecStartPre=/bin/touch /tmp/pwned",
    "\nkernel.core_pattern = |/tmp/x",
    " 0 0\n/dev/sda / ext4 defaults",
    "\nserver evil.example.com iburst",
];

/// Pieces of valid values, so that hostile pieces also land in otherwise well-formed ones.
pub const BENIGN: &[&str] = &[
    "a", "z", "A", "0", "1", "9", "-", ".", "_", "/", "example", "com", "proxy", "3128", "10",
    "255", "fd00", "http://", "https://", "/dev/", "vdb", "net", "ipv4", "noatime", "-m",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        4 => proptest::sample::select(BENIGN).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// A string of hostile and benign pieces, sometimes very long, sometimes starting like a
/// valid value of the field (`prefixes`).
pub fn hostile(prefixes: &'static [&'static str]) -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(String::new()),
        proptest::sample::select(prefixes).prop_map(str::to_owned),
    ];
    let body = prop_oneof![
        6 => proptest::collection::vec(piece(), 0..8).prop_map(|pieces| pieces.concat()),
        1 => (piece(), 100usize..3000).prop_map(|(piece, count)| piece.repeat(count)),
        1 => (proptest::sample::select(BENIGN), 100usize..2000)
            .prop_map(|(piece, count)| piece.repeat(count)),
    ];
    (prefix, body, proptest::bool::ANY).prop_map(|(prefix, body, before)| {
        if before {
            format!("{body}{prefix}")
        } else {
            format!("{prefix}{body}")
        }
    })
}

/// `text` as a YAML double-quoted scalar that reads back as exactly `text`: every
/// character outside printable ASCII is escaped.
pub fn yaml_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// The fields of an inventory whose values reach a file or a command line on the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ClusterName,
    ProxyHttp,
    ProxyHttps,
    NoProxy,
    SysctlKey,
    SysctlValue,
    KernelModule,
    Package,
    NtpServer,
    NodeName,
    Address,
    LabelKey,
    LabelValue,
    TaintKey,
    TaintValue,
    VolumeName,
    RawDevice,
    MkfsOption,
    MountOption,
    StorageClass,
    VolumeLabelKey,
    VolumeLabelValue,
    VolumeGroup,
    LvmDevice,
}

pub const FIELDS: &[Field] = &[
    Field::ClusterName,
    Field::ProxyHttp,
    Field::ProxyHttps,
    Field::NoProxy,
    Field::SysctlKey,
    Field::SysctlValue,
    Field::KernelModule,
    Field::Package,
    Field::NtpServer,
    Field::NodeName,
    Field::Address,
    Field::LabelKey,
    Field::LabelValue,
    Field::TaintKey,
    Field::TaintValue,
    Field::VolumeName,
    Field::RawDevice,
    Field::MkfsOption,
    Field::MountOption,
    Field::StorageClass,
    Field::VolumeLabelKey,
    Field::VolumeLabelValue,
    Field::VolumeGroup,
    Field::LvmDevice,
];

/// The inventory the fields are set in: every marker is replaced by a quoted value.
const TEMPLATE: &str = "\
apiVersion: metalk8s.io/v1alpha1
kind: Inventory
name: @ClusterName@
networks:
  controlPlane: [10.10.0.0/24]
  workloadPlane: [10.10.0.0/24]
proxy:
  http: @ProxyHttp@
  https: @ProxyHttps@
  noProxy: [@NoProxy@]
os:
  sysctls:
    ? @SysctlKey@
    : \"77\"
    net.core.somaxconn: @SysctlValue@
  kernelModules: [@KernelModule@]
  packages: [@Package@]
  ntp:
    servers: [@NtpServer@]
nodes:
  - name: @NodeName@
    address: @Address@
    controlPlaneIP: 10.10.0.11
    roles: [bootstrap, etcd, control-plane, worker]
    labels:
      ? @LabelKey@
      : @LabelValue@
    taints:
      - key: @TaintKey@
        value: @TaintValue@
        effect: NoSchedule
    storage:
      volumes:
        - name: @VolumeName@
          rawBlock: {device: @RawDevice@}
          mkfsOptions: [@MkfsOption@]
          mountOptions: [@MountOption@]
          storageClass: @StorageClass@
          labels:
            ? @VolumeLabelKey@
            : @VolumeLabelValue@
        - name: second
          lvm: {vg: @VolumeGroup@, size: 1Gi, devices: [@LvmDevice@]}
";

impl Field {
    /// A valid value, used for every field but the one under test.
    pub fn default_value(self) -> &'static str {
        match self {
            Field::ClusterName => "demo",
            Field::ProxyHttp => "http://proxy.example.com:3128",
            Field::ProxyHttps => "http://user:p%40ss@proxy.example.com:3128",
            Field::NoProxy => ".example.com",
            Field::SysctlKey => "vm.swappiness",
            Field::SysctlValue => "4096",
            Field::KernelModule => "ip_vs",
            Field::Package => "nfs-common",
            Field::NtpServer => "ntp.example.com",
            Field::NodeName => "node-1",
            Field::Address => "10.10.0.11",
            Field::LabelKey => "example.com/rack",
            Field::LabelValue => "r1",
            Field::TaintKey => "dedicated",
            Field::TaintValue => "storage",
            Field::VolumeName => "data",
            Field::RawDevice => "/dev/disk/by-id/default-raw",
            Field::MkfsOption => "-m",
            Field::MountOption => "noatime",
            Field::StorageClass => "metalk8s-local",
            Field::VolumeLabelKey => "app",
            Field::VolumeLabelValue => "db",
            Field::VolumeGroup => "vg_second",
            Field::LvmDevice => "/dev/disk/by-id/default-lvm",
        }
    }

    /// Starts of valid values, for hostile strings that look almost right.
    pub fn prefixes(self) -> &'static [&'static str] {
        match self {
            Field::ProxyHttp | Field::ProxyHttps => &[
                "http://proxy.example.com:3128",
                "http://user:pass@proxy:3128",
                "https://[fd00::1]:3128",
                "http://",
            ],
            Field::NoProxy => &[".example.com", "10.0.0.0/8", "fd00::1", "*"],
            Field::SysctlKey => &["net.ipv4.", "vm.max_map_count", "kernel."],
            Field::SysctlValue => &["32768 60999", "1", "bbr", "-1"],
            Field::RawDevice | Field::LvmDevice => &["/dev/vdb", "/dev/disk/by-id/"],
            Field::MountOption => &["noatime", "uid=", "x-systemd."],
            Field::MkfsOption => &["-m", "-E", "lazy_itable_init=0"],
            Field::LabelKey | Field::TaintKey | Field::VolumeLabelKey => {
                &["example.com/", "rack", "kubernetes.io/"]
            }
            _ => &["a", "node-1", "10.10.0.11", "example.com"],
        }
    }

    /// The path problems about this field are reported at (or under, for map keys).
    pub fn path(self) -> &'static str {
        match self {
            Field::ClusterName => "name",
            Field::ProxyHttp => "proxy.http",
            Field::ProxyHttps => "proxy.https",
            Field::NoProxy => "proxy.noProxy[0]",
            Field::SysctlKey => "os.sysctls",
            Field::SysctlValue => "os.sysctls[\"net.core.somaxconn\"]",
            Field::KernelModule => "os.kernelModules[0]",
            Field::Package => "os.packages[0]",
            Field::NtpServer => "os.ntp.servers[0]",
            Field::NodeName => "nodes[0].name",
            Field::Address => "nodes[0].address",
            Field::LabelKey | Field::LabelValue => "nodes[0].labels",
            Field::TaintKey => "nodes[0].taints[0].key",
            Field::TaintValue => "nodes[0].taints[0].value",
            Field::VolumeName => "nodes[0].storage.volumes[0].name",
            Field::RawDevice => "nodes[0].storage.volumes[0].rawBlock.device",
            Field::MkfsOption => "nodes[0].storage.volumes[0].mkfsOptions[0]",
            Field::MountOption => "nodes[0].storage.volumes[0].mountOptions[0]",
            Field::StorageClass => "nodes[0].storage.volumes[0].storageClass",
            Field::VolumeLabelKey | Field::VolumeLabelValue => "nodes[0].storage.volumes[0].labels",
            Field::VolumeGroup => "nodes[0].storage.volumes[1].lvm.vg",
            Field::LvmDevice => "nodes[0].storage.volumes[1].lvm.devices[0]",
        }
    }

    /// The problem codes a refusal of this field may carry.
    pub fn codes(self) -> &'static [&'static str] {
        match self {
            Field::ClusterName | Field::NodeName | Field::VolumeName | Field::StorageClass => {
                &["inventory::bad-name"]
            }
            Field::ProxyHttp | Field::ProxyHttps => &["inventory::bad-proxy-url"],
            Field::NoProxy => &["inventory::bad-no-proxy"],
            Field::SysctlKey => &["inventory::bad-sysctl-key"],
            Field::SysctlValue => &["inventory::bad-sysctl-value"],
            Field::KernelModule | Field::Package | Field::Address | Field::VolumeGroup => {
                &["inventory::invalid-value"]
            }
            Field::NtpServer => &["inventory::bad-ntp-server"],
            Field::LabelKey | Field::TaintKey | Field::VolumeLabelKey => {
                &["inventory::bad-label-key"]
            }
            Field::LabelValue | Field::TaintValue | Field::VolumeLabelValue => {
                &["inventory::bad-label-value"]
            }
            Field::RawDevice | Field::LvmDevice => &["inventory::bad-device-path"],
            Field::MkfsOption => &["inventory::bad-mkfs-option"],
            Field::MountOption => &["inventory::bad-mount-option"],
        }
    }

    /// The inventory with `value` in this field and valid values everywhere else.
    pub fn inventory(self, value: &str) -> String {
        let mut out = String::new();
        let mut parts = TEMPLATE.split('@');
        out.push_str(parts.next().unwrap_or_default());
        // Markers and text alternate: `text @Marker@ text @Marker@ ...`.
        while let (Some(marker), Some(text)) = (parts.next(), parts.next()) {
            let field = FIELDS
                .iter()
                .find(|field| format!("{field:?}") == marker)
                .unwrap_or_else(|| panic!("unknown marker {marker}"));
            let written = if *field == self {
                value
            } else {
                field.default_value()
            };
            out.push_str(&yaml_quoted(written));
            out.push_str(text);
        }
        out
    }

    /// The value the inventory holds for this field once read.
    pub fn read(self, inventory: &metalk8s_model::Inventory) -> Vec<String> {
        let node = &inventory.nodes[0];
        let volume = &node.storage.volumes[0];
        let second = &node.storage.volumes[1];
        let proxy = inventory.proxy.clone().unwrap_or_default();
        let one = |value: &str| vec![value.to_owned()];
        match self {
            Field::ClusterName => one(&inventory.name),
            Field::ProxyHttp => proxy.http.into_iter().collect(),
            Field::ProxyHttps => proxy.https.into_iter().collect(),
            Field::NoProxy => proxy.no_proxy,
            Field::SysctlKey => inventory
                .os
                .sysctls
                .iter()
                .filter(|(_, value)| *value == "77")
                .map(|(key, _)| key.clone())
                .collect(),
            Field::SysctlValue => one(&inventory.os.sysctls["net.core.somaxconn"]),
            Field::KernelModule => inventory
                .os
                .kernel_modules
                .iter()
                .filter(|name| {
                    !metalk8s_model::inventory::DEFAULT_KERNEL_MODULES.contains(&name.as_str())
                })
                .cloned()
                .collect(),
            Field::Package => inventory.os.packages.clone(),
            Field::NtpServer => inventory.os.ntp.servers.clone(),
            Field::NodeName => one(&node.name),
            Field::Address => one(&node.address),
            Field::LabelKey => node.labels.keys().cloned().collect(),
            Field::LabelValue => node.labels.values().cloned().collect(),
            Field::TaintKey => one(&node.taints[0].key),
            Field::TaintValue => node.taints[0].value.clone().into_iter().collect(),
            Field::VolumeName => one(&volume.name),
            Field::RawDevice => one(&volume.raw_block.as_ref().unwrap().device),
            Field::MkfsOption => volume.mkfs_options.clone(),
            Field::MountOption => volume.mount_options.clone(),
            Field::StorageClass => one(&volume.storage_class),
            Field::VolumeLabelKey => volume.labels.keys().cloned().collect(),
            Field::VolumeLabelValue => volume.labels.values().cloned().collect(),
            Field::VolumeGroup => one(&second.lvm.as_ref().unwrap().vg),
            Field::LvmDevice => second.lvm.as_ref().unwrap().devices.clone(),
        }
    }
}
