//! How much CPU and memory the kubelet keeps away from pods (`kubeReserved`,
//! `systemReserved`), from the node's size.
//!
//! `kubeReserved` (kubelet, containerd and their overhead) follows GKE's published table
//! (<https://cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes>), which grows
//! with the machine and is the one MetalK8s 2.x used:
//!
//! | CPU | reserved |            | memory | reserved |
//! |---|---|---|---|---|
//! | first core | 6 % | | below 1 GiB in total | 255 MiB |
//! | second core | 1 % | | first 4 GiB | 25 % |
//! | cores 3–4 | 0.5 % | | next 4 GiB (up to 8) | 20 % |
//! | above 4 cores | 0.25 % | | next 8 GiB (up to 16) | 10 % |
//! | | | | next 112 GiB (up to 128) | 6 % |
//! | | | | above 128 GiB | 2 % |
//!
//! `systemReserved` (the OS: systemd, journald, sshd, chrony, the metalk8s agent) is smaller
//! and flatter: 100m CPU plus 0.5 % of every core beyond the first (on-prem nodes run
//! little besides), and 1 % of memory, at least 200 MiB and at most 1 GiB.
//!
//! CPU is rounded to whole millicores and memory to whole MiB, down, so the values are
//! stable and readable in `kubectl describe node`.

use serde::Serialize;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// CPU in millicores and memory in MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

impl Reservation {
    /// `{"cpu": "80m", "memory": "2662Mi"}` as the KubeletConfiguration wants it.
    pub fn to_map(self) -> std::collections::BTreeMap<String, String> {
        [
            ("cpu".to_owned(), format!("{}m", self.cpu_millis)),
            ("memory".to_owned(), format!("{}Mi", self.memory_mib)),
        ]
        .into()
    }
}

/// GKE's reservation for the kubelet and the container runtime.
pub fn kube_reserved(cpus: u32, memory_bytes: u64) -> Reservation {
    let cores = u64::from(cpus);
    // Per-core tiers in hundredths of a percent of a core (1 core = 1000m): 6 %, 1 %, 0.5 %,
    // 0.25 % → 600, 100, 50, 25 hundredths-of-millicores per core.
    let tier = |from: u64, to: Option<u64>| -> u64 {
        let upper = to.map_or(cores, |to| cores.min(to));
        upper.saturating_sub(from)
    };
    let cpu_hundredths = 600 * tier(0, Some(1))
        + 100 * tier(1, Some(2))
        + 50 * tier(2, Some(4))
        + 25 * tier(4, None);
    let cpu_millis = cpu_hundredths / 10;

    let memory_mib = if memory_bytes < GIB {
        255
    } else {
        let band = |from: u64, to: Option<u64>| -> u64 {
            let upper = to.map_or(memory_bytes, |to| memory_bytes.min(to));
            upper.saturating_sub(from)
        };
        // Percent × bytes / 100, summed in bytes before one rounding.
        let reserved_bytes = (25 * band(0, Some(4 * GIB))
            + 20 * band(4 * GIB, Some(8 * GIB))
            + 10 * band(8 * GIB, Some(16 * GIB))
            + 6 * band(16 * GIB, Some(128 * GIB))
            + 2 * band(128 * GIB, None))
            / 100;
        reserved_bytes / MIB
    };
    Reservation {
        cpu_millis,
        memory_mib,
    }
}

/// The reservation for the operating system's own daemons.
pub fn system_reserved(cpus: u32, memory_bytes: u64) -> Reservation {
    let extra_cores = u64::from(cpus.saturating_sub(1));
    // 0.5 % of a core = 5 millicores.
    let cpu_millis = 100 + 5 * extra_cores;
    let memory_mib = (memory_bytes / 100 / MIB).clamp(200, 1024);
    Reservation {
        cpu_millis,
        memory_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reserved_cpu_follows_the_gke_tiers() {
        // 6 % of the first core.
        assert_eq!(kube_reserved(1, 4 * GIB).cpu_millis, 60);
        // + 1 % of the second.
        assert_eq!(kube_reserved(2, 4 * GIB).cpu_millis, 70);
        // + 0.5 % of cores 3 and 4.
        assert_eq!(kube_reserved(4, 4 * GIB).cpu_millis, 80);
        // + 0.25 % of each core above 4: 8 cores → 90m, 32 cores → 150m, 64 → 230m.
        assert_eq!(kube_reserved(8, 4 * GIB).cpu_millis, 90);
        assert_eq!(kube_reserved(32, 4 * GIB).cpu_millis, 150);
        assert_eq!(kube_reserved(64, 4 * GIB).cpu_millis, 230);
    }

    #[test]
    fn kube_reserved_memory_follows_the_gke_bands() {
        // Under 1 GiB: a flat 255 MiB.
        assert_eq!(kube_reserved(1, 512 * MIB).memory_mib, 255);
        // 25 % of 4 GiB.
        assert_eq!(kube_reserved(2, 4 * GIB).memory_mib, 1024);
        // + 20 % of the next 4 GiB: 8 GiB → 1843 MiB (1024 + 819.2).
        assert_eq!(kube_reserved(2, 8 * GIB).memory_mib, 1843);
        // + 10 % of the next 8: 16 GiB → 2662 MiB (1843.2 + 819.2).
        assert_eq!(kube_reserved(4, 16 * GIB).memory_mib, 2662);
        // + 6 % of the next 112: 128 GiB → 9543 MiB (2662.4 + 6881.28).
        assert_eq!(kube_reserved(4, 128 * GIB).memory_mib, 9543);
        // + 2 % above 128: 256 GiB → 12165 MiB (9543.68 + 2621.44).
        assert_eq!(kube_reserved(4, 256 * GIB).memory_mib, 12165);
    }

    #[test]
    fn system_reserved_is_small_and_bounded() {
        assert_eq!(
            system_reserved(2, 4 * GIB),
            Reservation {
                cpu_millis: 105,
                memory_mib: 200
            }
        );
        assert_eq!(system_reserved(16, 64 * GIB).memory_mib, 655);
        assert_eq!(system_reserved(64, 512 * GIB).memory_mib, 1024);
        assert_eq!(system_reserved(64, 512 * GIB).cpu_millis, 415);
        assert_eq!(system_reserved(0, 0).cpu_millis, 100);
    }

    #[test]
    fn reservations_render_as_quantities() {
        let map = kube_reserved(4, 16 * GIB).to_map();
        assert_eq!(map["cpu"], "80m");
        assert_eq!(map["memory"], "2662Mi");
    }
}
