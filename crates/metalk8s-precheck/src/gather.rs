//! Facts gathering: one shell script, one SSH round trip per host, parsed into [`Facts`].
//!
//! The script prints sections introduced by `@@name [argument]` lines; each section is
//! parsed by a small pure function so that the parsing is unit-tested without a host.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use metalk8s_model::facts::{
    DeviceFacts, Facts, Interface, InterfaceAddress, Listener, ModuleAvailability, OsRelease, Route,
};
use metalk8s_transport::{Command, Host, HostError, quote};

/// Packages whose presence conflicts with the container runtime metalk8s installs.
pub const CONFLICTING_PACKAGES: &[&str] = &[
    "docker-ce",
    "docker-ce-cli",
    "docker.io",
    "containerd.io",
    "moby-engine",
    "moby-containerd",
    "podman-docker",
];

/// What to ask a host beyond its own description.
#[derive(Clone, Debug, Default)]
pub struct GatherRequest {
    /// Names whose resolution is checked on the host.
    pub names: Vec<String>,
    /// Block devices to inspect.
    pub devices: Vec<String>,
    /// Only what the planner needs (identity, OS, addresses): no ports, packages, disks
    /// or clock, so that a no-op deploy spends as little as possible before its steps.
    pub planning_only: bool,
}

impl GatherRequest {
    pub fn for_planning() -> Self {
        GatherRequest {
            planning_only: true,
            ..GatherRequest::default()
        }
    }
}

/// The sections the planner reads.
const PLANNING_SCRIPT: &str = r#"export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo @@hostname; hostname
echo @@os; cat /etc/os-release 2>/dev/null
echo @@kernel; uname -r
echo @@cpus; nproc
echo @@meminfo; grep -E '^(MemTotal|SwapTotal):' /proc/meminfo
echo @@addresses; ip -o addr show 2>/dev/null
echo @@links; ip -o link show 2>/dev/null
"#;

/// Which way the running kernel offers WireGuard
/// ([`metalk8s_model::facts::ModuleAvailability`]); /sys/module also lists built-in
/// modules that have parameters, so it is asked first.
const WIREGUARD_SECTION: &str = r#"echo @@wireguard
modules="/lib/modules/$(uname -r)"
if [ -d /sys/module/wireguard ]; then echo loaded
elif grep -qE '(^|/)wireguard[.]ko' "$modules/modules.builtin" 2>/dev/null; then echo builtIn
elif grep -qE '(^|/)wireguard[.]ko' "$modules/modules.dep" 2>/dev/null; then echo loadable
else echo missing; fi
"#;

/// Every route of every table but the kernel's `local` one, IPv4 then IPv6.
const ROUTES_SECTION: &str = "echo @@routes4; ip -4 route show table all 2>/dev/null
echo @@routes6; ip -6 route show table all 2>/dev/null
";

/// What kubeadm has done on the node ([`metalk8s_model::facts::KubernetesFacts`]).
fn kubernetes_section() -> String {
    format!(
        "echo @@kubernetes\n[ -e {marker} ] && echo joined\n",
        marker = metalk8s_model::facts::KUBEADM_DONE_MARKER
    )
}

/// The resolvers of the node's /etc/resolv.conf ([`metalk8s_model::facts::Facts::nameservers`]).
const NAMESERVERS_SECTION: &str =
    "echo @@nameservers; awk '$1 == \"nameserver\" {print $2}' /etc/resolv.conf 2>/dev/null\n";

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("gathering facts on {host} exited with status {status}: {stderr}")]
    Script {
        host: String,
        status: i32,
        stderr: String,
    },
    #[error("cannot read the facts reported by {host}: {reason}")]
    Parse { host: String, reason: String },
}

/// The script run on each host. It only reads; it needs root for `ss -p` and `blkid -p`.
pub fn gather_script(request: &GatherRequest) -> String {
    if request.planning_only {
        return format!(
            "{PLANNING_SCRIPT}{WIREGUARD_SECTION}{NAMESERVERS_SECTION}{}echo @@end\n",
            kubernetes_section()
        );
    }
    let mut script = String::from(
        r#"export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo @@hostname; hostname
echo @@os; cat /etc/os-release 2>/dev/null
echo @@kernel; uname -r
echo @@cpus; nproc
echo @@meminfo; grep -E '^(MemTotal|SwapTotal):' /proc/meminfo
echo @@varfree; df -P -B1 /var | tail -n 1
echo @@addresses; ip -o addr show 2>/dev/null
echo @@links; ip -o link show 2>/dev/null
echo @@listening; ss -H -ltnp 2>/dev/null
echo @@packages
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n' __PACKAGES__ 2>/dev/null
elif command -v rpm >/dev/null 2>&1; then
  rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE} ii\n' __PACKAGES__ 2>/dev/null | grep -v 'is not installed'
fi
"#,
    );
    script = script.replace("__PACKAGES__", &CONFLICTING_PACKAGES.join(" "));
    script.push_str(ROUTES_SECTION);
    script.push_str(WIREGUARD_SECTION);
    script.push_str(NAMESERVERS_SECTION);
    script.push_str(&kubernetes_section());
    for name in &request.names {
        let quoted = quote(name);
        script.push_str(&format!(
            "echo @@resolve {quoted}; getent ahosts {quoted} | awk '{{print $1}}' | sort -u\n"
        ));
    }
    for device in &request.devices {
        let quoted = quote(device);
        script.push_str(&format!(
            r#"echo @@device {quoted}
if [ -e {quoted} ]; then echo exists; fi
if [ -b {quoted} ]; then
  echo block; echo "size $(blockdev --getsize64 {quoted})"
  blkid -p -o export {quoted} 2>/dev/null | sed -n 's/^\(TYPE\|PTTYPE\)=/signature /p'
  lsblk -nrpo NAME,MOUNTPOINT {quoted} 2>/dev/null | sed 's/^/lsblk /'
fi
"#
        ));
    }
    script.push_str("echo @@end\n");
    script
}

/// Splits the script output into `(header, argument, lines)` sections.
fn sections(output: &str) -> Vec<(&str, &str, Vec<&str>)> {
    let mut sections: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for line in output.lines() {
        if let Some(header) = line.strip_prefix("@@") {
            let (name, argument) = header.split_once(' ').unwrap_or((header, ""));
            sections.push((name, argument, Vec::new()));
        } else if let Some((_, _, lines)) = sections.last_mut() {
            lines.push(line);
        }
    }
    sections
}

/// Parses the output of [`gather_script`]; the clock fields are left at zero.
pub fn parse_facts(output: &str) -> Result<Facts, String> {
    let sections = sections(output);
    if !sections.iter().any(|(name, _, _)| *name == "end") {
        return Err("the output stopped before its end marker".to_owned());
    }
    let mut facts = Facts::default();
    for (name, argument, lines) in sections {
        match name {
            "hostname" => facts.hostname = lines.first().unwrap_or(&"").trim().to_owned(),
            "os" => facts.os = parse_os_release(&lines),
            "kernel" => facts.kernel = lines.first().unwrap_or(&"").trim().to_owned(),
            "cpus" => facts.cpus = parse_number(&lines, "nproc")? as u32,
            "meminfo" => (facts.memory_bytes, facts.swap_bytes) = parse_meminfo(&lines)?,
            "varfree" => facts.var_free_bytes = parse_df(&lines)?,
            "addresses" => {
                facts.addresses = lines.iter().filter_map(|l| parse_ip_addr(l)).collect()
            }
            "links" => facts.interfaces = lines.iter().filter_map(|l| parse_ip_link(l)).collect(),
            "routes4" => facts
                .routes
                .extend(lines.iter().filter_map(|l| parse_route(l, false))),
            "routes6" => facts
                .routes
                .extend(lines.iter().filter_map(|l| parse_route(l, true))),
            "wireguard" => facts.wireguard = parse_module_availability(&lines),
            "listening" => facts.listening = lines.iter().filter_map(|l| parse_ss(l)).collect(),
            "packages" => facts.packages = parse_packages(&lines),
            "kubernetes" => {
                facts.kubernetes.joined = lines.contains(&"joined");
            }
            "nameservers" => facts.nameservers = parse_nameservers(&lines),
            "resolve" => {
                let addresses = lines.iter().filter_map(|l| l.trim().parse().ok()).collect();
                facts.resolved.insert(unquote(argument), addresses);
            }
            "device" => {
                facts
                    .devices
                    .insert(unquote(argument), parse_device(&lines));
            }
            _ => {}
        }
    }
    Ok(facts)
}

/// The addresses of resolv.conf's `nameserver` lines, in order; a link-local IPv6
/// address's `%zone` is dropped, anything else unreadable is skipped.
fn parse_nameservers(lines: &[&str]) -> Vec<IpAddr> {
    lines
        .iter()
        .filter_map(|line| line.trim().split('%').next()?.parse().ok())
        .collect()
}

/// Section arguments are echoed by the shell, so they arrive already unquoted.
fn unquote(argument: &str) -> String {
    argument.to_owned()
}

fn parse_number(lines: &[&str], what: &str) -> Result<u64, String> {
    let text = lines.first().map(|l| l.trim()).unwrap_or("");
    text.parse()
        .map_err(|_| format!("`{what}` printed `{text}`, not a number"))
}

fn parse_os_release(lines: &[&str]) -> OsRelease {
    let mut os = OsRelease::default();
    for line in lines {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match key {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

fn parse_meminfo(lines: &[&str]) -> Result<(u64, u64), String> {
    let field = |name: &str| -> Result<u64, String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("/proc/meminfo has no {name}"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("cannot read `{line}` from /proc/meminfo"))?;
        Ok(kib * 1024)
    };
    Ok((field("MemTotal:")?, field("SwapTotal:").unwrap_or(0)))
}

/// `df -P -B1` columns: filesystem, size, used, available, capacity, mountpoint.
fn parse_df(lines: &[&str]) -> Result<u64, String> {
    let line = lines.first().ok_or("df printed nothing for /var")?;
    line.split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("cannot read free space from `{line}`"))
}

/// `ip -o addr show` lines: `2: eth0    inet 172.30.1.11/24 brd ... scope global eth0`.
fn parse_ip_addr(line: &str) -> Option<InterfaceAddress> {
    let mut words = line.split_whitespace();
    words.next()?;
    let interface = words.next()?.split('@').next()?.to_owned();
    let family = words.next()?;
    if family != "inet" && family != "inet6" {
        return None;
    }
    let (address, prefix) = words.next()?.split_once('/')?;
    Some(InterfaceAddress {
        interface,
        address: address.parse().ok()?,
        prefix_len: prefix.parse().ok()?,
    })
}

/// `ip -o link show` lines: `2: eth0@if12: <BROADCAST,UP> mtu 1500 qdisc noqueue ...`.
fn parse_ip_link(line: &str) -> Option<Interface> {
    let mut words = line.split_whitespace();
    words.next()?;
    let name = words
        .next()?
        .trim_end_matches(':')
        .split('@')
        .next()?
        .to_owned();
    words.find(|word| *word == "mtu")?;
    Some(Interface {
        name,
        mtu: words.next()?.parse().ok()?,
    })
}

/// Route types that are not a path out of the node: the kernel's own and broadcast
/// addresses, multicast, anycast.
const NOT_A_ROUTE: &[&str] = &["local", "broadcast", "multicast", "anycast", "nat"];

/// Route types ip prints before the destination, kept in [`Route::kind`].
const ROUTE_KINDS: &[&str] = &["unicast", "blackhole", "unreachable", "prohibit", "throw"];

/// `ip route show table all` lines: `[type] destination [via gateway] [dev device] ...`,
/// e.g. `default via 172.30.1.1 dev eth0`, `blackhole 10.233.1.0/26 proto bird`,
/// `10.233.1.5 dev cali12ab scope link`. The `local` table, and multipath `nexthop`
/// continuation lines, are left out.
fn parse_route(line: &str, ipv6: bool) -> Option<Route> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let (kind, rest) = match words.split_first()? {
        (first, _) if NOT_A_ROUTE.contains(first) => return None,
        (first, rest) if ROUTE_KINDS.contains(first) => {
            ((*first != "unicast").then(|| (*first).to_owned()), rest)
        }
        _ => (None, words.as_slice()),
    };
    let value_of = |key: &str| {
        rest.windows(2)
            .find(|pair| pair[0] == key)
            .map(|pair| pair[1])
    };
    if value_of("table") == Some("local") {
        return None;
    }
    let destination = match *rest.first()? {
        "default" if ipv6 => IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).ok()?,
        "default" => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).ok()?,
        text if text.contains('/') => text.parse().ok()?,
        text => IpNet::from(text.parse::<IpAddr>().ok()?),
    };
    Some(Route {
        destination,
        gateway: value_of("via").and_then(|gateway| gateway.parse().ok()),
        device: value_of("dev").map(str::to_owned),
        kind,
    })
}

fn parse_module_availability(lines: &[&str]) -> Option<ModuleAvailability> {
    match lines.first()?.trim() {
        "loaded" => Some(ModuleAvailability::Loaded),
        "builtIn" => Some(ModuleAvailability::BuiltIn),
        "loadable" => Some(ModuleAvailability::Loadable),
        "missing" => Some(ModuleAvailability::Missing),
        _ => None,
    }
}

/// `ss -H -ltnp` lines: `LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))`.
fn parse_ss(line: &str) -> Option<Listener> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let local = words.get(3)?;
    let (address, port) = local.rsplit_once(':')?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    // A zone suffix (`fe80::1%eth0`) or a wildcard `*` are not IpAddr syntax.
    let address = address.split('%').next()?;
    let address: IpAddr = if address == "*" {
        IpAddr::from([0, 0, 0, 0])
    } else {
        address.parse().ok()?
    };
    let process = words
        .iter()
        .find_map(|w| w.strip_prefix("users:((\""))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    Some(Listener {
        address,
        port: port.parse().ok()?,
        process,
    })
}

/// `Package Version Status` lines; only fully installed packages (`ii`) count.
fn parse_packages(lines: &[&str]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, version, status) = (words.next()?, words.next()?, words.next()?);
            status
                .starts_with("ii")
                .then(|| (name.to_owned(), version.to_owned()))
        })
        .collect()
}

fn parse_device(lines: &[&str]) -> DeviceFacts {
    let mut device = DeviceFacts::default();
    for (index, line) in lines.iter().enumerate() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "exists" => device.exists = true,
            "block" => device.is_block = true,
            "size" => device.size_bytes = value.trim().parse().unwrap_or(0),
            "signature" => device.signatures.push(value.trim().to_owned()),
            "lsblk" => {
                let mut words = value.split_whitespace();
                let name = words.next().unwrap_or("");
                // The first lsblk line is the device itself, the rest its partitions.
                let is_child = lines[..index].iter().any(|l| l.starts_with("lsblk "));
                if is_child {
                    device.children.push(name.to_owned());
                }
                if let Some(mountpoint) = words.next() {
                    device.mountpoints.push(mountpoint.to_owned());
                }
            }
            _ => {}
        }
    }
    device
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Gathers the facts of one host: the script, then a separate clock reading whose round
/// trip is short enough to bound the offset's error.
pub async fn gather(host: &dyn Host, request: &GatherRequest) -> Result<Facts, GatherError> {
    let command = Command::new(gather_script(request))
        .as_root()
        .timeout(Duration::from_secs(60));
    let output = host.run(&command).await?;
    if !output.success() {
        return Err(GatherError::Script {
            host: host.name().to_owned(),
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    let mut facts = parse_facts(&output.stdout_text()).map_err(|reason| GatherError::Parse {
        host: host.name().to_owned(),
        reason,
    })?;
    if !request.planning_only {
        (facts.clock_offset, facts.clock_uncertainty) = read_clock(host).await?;
    }
    Ok(facts)
}

async fn read_clock(host: &dyn Host) -> Result<(f64, f64), GatherError> {
    let command = Command::new("date +%s.%N").timeout(Duration::from_secs(10));
    let before = unix_now();
    let output = host.run(&command).await?;
    let after = unix_now();
    let text = output.stdout_text();
    let remote: f64 = text.trim().parse().map_err(|_| GatherError::Parse {
        host: host.name().to_owned(),
        reason: format!("`date +%s.%N` printed `{}`", text.trim()),
    })?;
    Ok((remote - (before + after) / 2.0, (after - before) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"@@hostname
node1
@@os
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
@@kernel
6.1.0-18-amd64
@@cpus
4
@@meminfo
MemTotal:        8039000 kB
SwapTotal:       1048572 kB
@@varfree
/dev/vda1 52710469632 10871402496 39129128960 22% /
@@addresses
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0@if12    inet 172.30.1.11/24 brd 172.30.1.255 scope global eth0\       valid_lft forever preferred_lft forever
2: eth0@if12    inet6 fe80::42:acff:fe1e:10b/64 scope link \       valid_lft forever preferred_lft forever
@@links
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default \    link/ether 02:42:ac:1e:01:0b brd ff:ff:ff:ff:ff:ff link-netnsid 0
3: eth1@if14: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default \    link/ether 02:42:ac:1f:01:0b brd ff:ff:ff:ff:ff:ff link-netnsid 0
@@routes4
default via 172.30.1.1 dev eth0
172.30.1.0/24 dev eth0 proto kernel scope link src 172.30.1.11
blackhole 10.233.1.0/26 proto bird
10.233.1.5 dev cali12ab scope link
unicast 192.168.8.0/24 via 172.30.1.254 dev eth0 table 100
10.40.0.0/16 proto static
	nexthop via 172.30.1.2 dev eth0 weight 1
local 172.30.1.11 dev eth0 table local proto kernel scope host src 172.30.1.11
broadcast 172.30.1.255 dev eth0 table local proto kernel scope link src 172.30.1.11
@@routes6
default via fe80::1 dev eth0 metric 1024 pref medium
fe80::/64 dev eth0 proto kernel metric 256 pref medium
local ::1 dev lo table local proto kernel metric 0 pref medium
multicast ff00::/8 dev eth0 table local proto kernel metric 256 pref medium
@@wireguard
loadable
@@listening
LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=87,fd=3))
LISTEN 0      4096     172.30.1.11:2379      0.0.0.0:*    users:(("nc",pid=300,fd=3))
LISTEN 0      128             [::]:22           [::]:*    users:(("sshd",pid=87,fd=4))
LISTEN 0      128                *:9100            *:*
@@packages
docker.io 20.10.24+dfsg1-1+b3 ii 
containerd.io 1.6.0 un 
@@resolve node2
172.30.1.12
@@resolve nowhere
@@device /dev/vdb
exists
block
size 2147483648
signature ext4
lsblk /dev/vdb 
@@device /dev/vdc
exists
block
size 2147483648
lsblk /dev/vdc 
lsblk /dev/vdc1 /mnt/data
@@device /dev/vdz
@@nameservers
10.0.0.53
fe80::1%eth0
not-an-address
@@kubernetes
joined
@@end
"#;

    #[test]
    fn parses_every_section() {
        let facts = parse_facts(SAMPLE).unwrap();
        assert_eq!(facts.hostname, "node1");
        assert_eq!(facts.os.id, "debian");
        assert_eq!(facts.os.version_id, "12");
        assert_eq!(facts.kernel, "6.1.0-18-amd64");
        assert_eq!(facts.cpus, 4);
        assert_eq!(facts.memory_bytes, 8039000 * 1024);
        assert_eq!(facts.swap_bytes, 1048572 * 1024);
        assert_eq!(facts.var_free_bytes, 39129128960);
        let nameservers: Vec<String> = facts.nameservers.iter().map(ToString::to_string).collect();
        assert_eq!(nameservers, ["10.0.0.53", "fe80::1"]);
        assert_eq!(facts.addresses.len(), 3);
        assert_eq!(facts.addresses[1].interface, "eth0");
        assert_eq!(facts.addresses[1].address.to_string(), "172.30.1.11");
        assert_eq!(facts.addresses[1].prefix_len, 24);
        let ports: Vec<u16> = facts.listening.iter().map(|l| l.port).collect();
        assert_eq!(ports, [22, 2379, 22, 9100]);
        assert_eq!(facts.listening[1].process.as_deref(), Some("nc"));
        assert_eq!(facts.listening[3].address.to_string(), "0.0.0.0");
        assert_eq!(facts.packages.keys().collect::<Vec<_>>(), ["docker.io"]);
        assert_eq!(facts.resolved["node2"].len(), 1);
        assert!(facts.resolved["nowhere"].is_empty());
        let vdb = &facts.devices["/dev/vdb"];
        assert!(vdb.exists && vdb.is_block);
        assert_eq!(vdb.signatures, ["ext4"]);
        assert!(vdb.children.is_empty() && vdb.mountpoints.is_empty());
        let vdc = &facts.devices["/dev/vdc"];
        assert_eq!(vdc.children, ["/dev/vdc1"]);
        assert_eq!(vdc.mountpoints, ["/mnt/data"]);
        assert!(!facts.devices["/dev/vdz"].exists);
        assert!(facts.kubernetes.joined);
        let mtus: Vec<(&str, u32)> = facts
            .interfaces
            .iter()
            .map(|i| (i.name.as_str(), i.mtu))
            .collect();
        assert_eq!(mtus, [("lo", 65536), ("eth0", 1500), ("eth1", 1450)]);
        assert_eq!(facts.wireguard, Some(ModuleAvailability::Loadable));
    }

    #[test]
    fn routes_of_every_table_but_local() {
        let facts = parse_facts(SAMPLE).unwrap();
        let routes: Vec<String> = facts
            .routes
            .iter()
            .map(|route| {
                format!(
                    "{} via {} dev {} {}",
                    route.destination,
                    route.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    route.device.as_deref().unwrap_or(""),
                    route.kind.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                "0.0.0.0/0 via 172.30.1.1 dev eth0 ",
                "172.30.1.0/24 via  dev eth0 ",
                "10.233.1.0/26 via  dev  blackhole",
                "10.233.1.5/32 via  dev cali12ab ",
                "192.168.8.0/24 via 172.30.1.254 dev eth0 ",
                "10.40.0.0/16 via  dev  ",
                "::/0 via fe80::1 dev eth0 ",
                "fe80::/64 via  dev eth0 ",
            ]
        );
        assert!(facts.routes[0].is_default() && facts.routes[6].is_default());
        assert!(!facts.routes[1].is_default());
    }

    #[test]
    fn wireguard_answers() {
        for (line, expected) in [
            ("loaded", Some(ModuleAvailability::Loaded)),
            ("builtIn", Some(ModuleAvailability::BuiltIn)),
            ("missing", Some(ModuleAvailability::Missing)),
            ("", None),
        ] {
            assert_eq!(parse_module_availability(&[line]), expected, "{line}");
        }
        assert_eq!(parse_module_availability(&[]), None);
    }

    #[test]
    fn the_planning_script_reports_what_the_planner_reads() {
        let script = gather_script(&GatherRequest::for_planning());
        for section in [
            "@@hostname",
            "@@os",
            "@@cpus",
            "@@meminfo",
            "@@addresses",
            "@@links",
            "@@wireguard",
            "@@kubernetes",
            "@@end",
        ] {
            assert!(script.contains(section), "{section}");
        }
        assert!(!script.contains("ss -H") && !script.contains("dpkg-query"));
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let facts = parse_facts(&String::from_utf8_lossy(&output.stdout)).unwrap();
        assert!(!facts.hostname.is_empty() && !facts.os.id.is_empty());
        assert!(facts.addresses.iter().any(|a| a.address.is_loopback()));
        assert!(facts.cpus > 0 && facts.memory_bytes > 0);
        assert!(facts.interfaces.iter().any(|i| i.name == "lo" && i.mtu > 0));
        assert!(facts.wireguard.is_some());
    }

    #[test]
    fn truncated_output_is_refused() {
        let truncated = SAMPLE.replace("@@end\n", "");
        assert!(parse_facts(&truncated).unwrap_err().contains("end marker"));
    }

    #[test]
    fn script_quotes_names_and_devices() {
        let script = gather_script(&GatherRequest {
            names: vec!["it's".into()],
            devices: vec!["/dev/vdb".into()],
            planning_only: false,
        });
        assert!(script.contains(r"echo @@resolve 'it'\''s'"));
        assert!(script.contains("blkid -p -o export /dev/vdb"));
        assert!(script.contains("docker-ce containerd.io") || script.contains("containerd.io"));
    }
}
