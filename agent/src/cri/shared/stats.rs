//! Backend usage numbers as CRI's stats messages, and the CPU rate (nano-cores)
//! kubelet wants, computed from two readings.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use berth_proto::cri::v1 as cri;
use runtimes::types::{ContainerStats, MemoryStats, SandboxStats};

use super::container::attributes;
use super::objects::{shown_labels, unix_nanos};
use crate::store::{ContainerRecord, SandboxRecord};

/// The last CPU reading per CRI id, to turn cumulative CPU time into a rate.
#[derive(Default)]
pub(in crate::cri) struct CpuRates {
    last: Mutex<HashMap<String, (SystemTime, u64)>>,
}

impl CpuRates {
    /// The CPU rate of `id` in nanoseconds of CPU per second (nano-cores) since its
    /// previous reading; `None` for the first reading or a counter that went back.
    pub(in crate::cri) fn nano_cores(
        &self,
        id: &str,
        at: SystemTime,
        usage_ns: u64,
    ) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.insert(id.to_string(), (at, usage_ns))?;
        let elapsed = at.duration_since(previous.0).ok()?.as_nanos();
        let used = u128::from(usage_ns.checked_sub(previous.1)?);
        (elapsed > 0)
            .then(|| used * 1_000_000_000 / elapsed)
            .and_then(|rate| u64::try_from(rate).ok())
    }

    /// Drops the readings of a removed object.
    pub(in crate::cri) fn forget(&self, id: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

fn value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// CRI's memory usage from a backend's numbers (containers and pods alike).
fn memory(m: &MemoryStats, timestamp: i64) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp,
        working_set_bytes: value(m.working_set),
        available_bytes: None,
        usage_bytes: value(m.usage),
        rss_bytes: value(m.rss),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        psi: None,
    }
}

/// CPU usage of the object `id`, with its rate since the previous reading.
fn cpu(rates: &CpuRates, id: &str, at: SystemTime, usage_ns: u64) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: unix_nanos(at),
        usage_core_nano_seconds: value(usage_ns),
        usage_nano_cores: rates.nano_cores(id, at, usage_ns).and_then(value),
        psi: None,
    }
}

/// CRI's stats of `record` from its backend's numbers.
pub(in crate::cri) fn container_stats(
    rates: &CpuRates,
    record: &ContainerRecord,
    s: &ContainerStats,
) -> cri::ContainerStats {
    let timestamp = unix_nanos(s.timestamp);
    cri::ContainerStats {
        attributes: Some(attributes(record)),
        cpu: Some(cpu(rates, &record.id, s.timestamp, s.cpu_usage_ns)),
        memory: Some(memory(&s.memory, timestamp)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: s.writable_layer.display().to_string(),
            }),
            used_bytes: value(s.writable_layer_bytes),
            inodes_used: value(s.writable_layer_inodes),
        }),
        swap: None,
        io: None,
    }
}

/// CRI's stats of the pod `record` from its backend's numbers and its containers'.
pub(in crate::cri) fn sandbox_stats(
    rates: &CpuRates,
    record: &SandboxRecord,
    s: &SandboxStats,
    containers: Vec<cri::ContainerStats>,
) -> cri::PodSandboxStats {
    let timestamp = unix_nanos(s.timestamp);
    let network = s.network.as_ref().map(|n| {
        let interface = cri::NetworkInterfaceUsage {
            name: n.interface.clone(),
            rx_bytes: value(n.rx_bytes),
            rx_errors: value(n.rx_errors),
            tx_bytes: value(n.tx_bytes),
            tx_errors: value(n.tx_errors),
        };
        cri::NetworkUsage {
            timestamp,
            default_interface: Some(interface.clone()),
            interfaces: vec![interface],
        }
    });
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: record.id.clone(),
            metadata: record.config.metadata.clone(),
            labels: shown_labels(&record.config.labels, &record.container_id),
            annotations: record.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(rates, &record.id, s.timestamp, s.cpu_usage_ns)),
            memory: Some(memory(&s.memory, timestamp)),
            network,
            process: Some(cri::ProcessUsage {
                timestamp,
                process_count: value(s.processes),
            }),
            containers,
            io: None,
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_rate_needs_two_readings_and_a_growing_counter() {
        let rates = CpuRates::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(rates.nano_cores("a", t0, 1_000), None);
        // Half a CPU for two seconds.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            rates.nano_cores("a", t1, 1_000 + 1_000_000_000),
            Some(500_000_000)
        );
        // Another object has its own readings.
        assert_eq!(rates.nano_cores("b", t1, 5), None);
        // A counter that went back (a restarted container) starts over.
        assert_eq!(rates.nano_cores("a", t1 + Duration::from_secs(1), 10), None);
        assert_eq!(
            rates.nano_cores("a", t1 + Duration::from_secs(2), 10),
            Some(0)
        );
        rates.forget("a");
        assert_eq!(rates.nano_cores("a", t1 + Duration::from_secs(3), 20), None);
    }
}
