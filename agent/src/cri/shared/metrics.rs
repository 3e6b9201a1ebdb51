//! CRI's metrics (`ListMetricDescriptors`, `ListPodSandboxMetrics`): the cAdvisor
//! metric families kubelet serves on `/metrics/cadvisor` when it takes them from the
//! runtime (`PodAndContainerStatsFromCRI`), filled from the backends' stats and the
//! records.
//!
//! Every metric carries the labels [`BASE_LABELS`] and then its family's own, in the
//! order its descriptor lists them: kubelet pairs values and keys by position.
//! Values are whole units of the family's name (`_seconds`, `_bytes`): CRI's values
//! are integers.

use std::time::{Duration, SystemTime};

use berth_proto::cri::v1 as cri;
use runtimes::types::{ContainerStats, MemoryStats, SandboxStats, UsageDetail};

use super::objects::unix_nanos;
use crate::store::{ContainerRecord, SandboxRecord};

use cri::MetricType::{Counter, Gauge};

/// The labels of every metric: the container's name in its pod (`POD` for the pod's
/// network, empty for the pod's own cgroup), its id, its image, its runtime name, and
/// its pod's namespace and name (as cAdvisor's, the `id` being the CRI id).
const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// One metric family: name, help, type and the label keys after [`BASE_LABELS`].
struct Family {
    name: &'static str,
    help: &'static str,
    kind: cri::MetricType,
    labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    help: &'static str,
    kind: cri::MetricType,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        kind,
        labels,
    }
}

const DEVICE: &[&str] = &["device"];
const INTERFACE: &[&str] = &["interface"];

/// The families berth describes: those kubelet's cAdvisor provider serves, less the
/// ones it has nothing for at all yet (hugetlb, pressure stall, soft ulimits, memory
/// reservation, CFS quota), which it does not announce.
const FAMILIES: &[Family] = &[
    family(
        "container_blkio_device_usage_total",
        "Bytes and operations of block I/O, by device and operation.",
        Counter,
        &["device", "major", "minor", "operation"],
    ),
    family(
        "container_cpu_cfs_periods_total",
        "CFS enforcement periods that have elapsed.",
        Counter,
        &[],
    ),
    family(
        "container_cpu_cfs_throttled_periods_total",
        "CFS enforcement periods in which the container was throttled.",
        Counter,
        &[],
    ),
    family(
        "container_cpu_cfs_throttled_seconds_total",
        "Time the container has been throttled, in seconds.",
        Counter,
        &[],
    ),
    family(
        "container_cpu_system_seconds_total",
        "CPU time spent in the kernel, in seconds.",
        Counter,
        &[],
    ),
    family(
        "container_cpu_usage_seconds_total",
        "CPU time used, in seconds.",
        Counter,
        &["cpu"],
    ),
    family(
        "container_cpu_user_seconds_total",
        "CPU time spent in user space, in seconds.",
        Counter,
        &[],
    ),
    family(
        "container_file_descriptors",
        "Open file descriptors.",
        Gauge,
        &[],
    ),
    family(
        "container_fs_inodes_free",
        "Free inodes of the filesystem.",
        Gauge,
        DEVICE,
    ),
    family(
        "container_fs_inodes_total",
        "Inodes of the filesystem.",
        Gauge,
        DEVICE,
    ),
    family(
        "container_fs_limit_bytes",
        "Bytes the container can use on the filesystem.",
        Gauge,
        DEVICE,
    ),
    family(
        "container_fs_reads_bytes_total",
        "Bytes read from the filesystem.",
        Counter,
        DEVICE,
    ),
    family(
        "container_fs_reads_total",
        "Reads from the filesystem.",
        Counter,
        DEVICE,
    ),
    family(
        "container_fs_usage_bytes",
        "Bytes the container uses on the filesystem (its writable layer).",
        Gauge,
        DEVICE,
    ),
    family(
        "container_fs_writes_bytes_total",
        "Bytes written to the filesystem.",
        Counter,
        DEVICE,
    ),
    family(
        "container_fs_writes_total",
        "Writes to the filesystem.",
        Counter,
        DEVICE,
    ),
    family(
        "container_last_seen",
        "When the runtime last read the container's usage, in seconds since the epoch.",
        Gauge,
        &[],
    ),
    family(
        "container_memory_cache",
        "Page cache memory, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_memory_failcnt",
        "Times the memory usage hit its limit.",
        Counter,
        &[],
    ),
    family(
        "container_memory_failures_total",
        "Page faults, by type (pgfault, pgmajfault) and scope.",
        Counter,
        &["failure_type", "scope"],
    ),
    family(
        "container_memory_kernel_usage",
        "Kernel memory, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_memory_mapped_file",
        "Memory-mapped file memory, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_memory_max_usage_bytes",
        "Highest memory usage recorded, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_memory_rss",
        "Anonymous memory (RSS), in bytes.",
        Gauge,
        &[],
    ),
    family("container_memory_swap", "Swap used, in bytes.", Gauge, &[]),
    family(
        "container_memory_usage_bytes",
        "Memory usage, page cache included, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_memory_working_set_bytes",
        "Working set (usage less inactive files), in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_network_receive_bytes_total",
        "Bytes received.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_receive_errors_total",
        "Errors while receiving.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_receive_packets_dropped_total",
        "Packets dropped while receiving.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_receive_packets_total",
        "Packets received.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_transmit_bytes_total",
        "Bytes sent.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_transmit_errors_total",
        "Errors while sending.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_transmit_packets_dropped_total",
        "Packets dropped while sending.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_network_transmit_packets_total",
        "Packets sent.",
        Counter,
        INTERFACE,
    ),
    family(
        "container_oom_events_total",
        "Out-of-memory kills.",
        Counter,
        &[],
    ),
    family("container_processes", "Processes.", Gauge, &[]),
    family("container_sockets", "Open sockets.", Gauge, &[]),
    family(
        "container_spec_cpu_period",
        "CFS period of the container, in microseconds.",
        Gauge,
        &[],
    ),
    family(
        "container_spec_cpu_shares",
        "CPU shares of the container.",
        Gauge,
        &[],
    ),
    family(
        "container_spec_memory_limit_bytes",
        "Memory limit of the container, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_spec_memory_swap_limit_bytes",
        "Memory and swap limit of the container, in bytes.",
        Gauge,
        &[],
    ),
    family(
        "container_start_time_seconds",
        "When the container was created, in seconds since the epoch.",
        Gauge,
        &[],
    ),
    family("container_threads", "Threads.", Gauge, &[]),
    family("container_threads_max", "Most threads allowed.", Gauge, &[]),
];

/// The descriptors of every family berth describes.
pub(in crate::cri) fn descriptors() -> Vec<cri::MetricDescriptor> {
    FAMILIES
        .iter()
        .map(|f| cri::MetricDescriptor {
            name: f.name.to_string(),
            help: f.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(f.labels)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// Collects the metrics of one object: its base label values and reading time.
struct Metrics {
    base: [String; 6],
    timestamp: i64,
    out: Vec<cri::Metric>,
}

impl Metrics {
    fn new(base: [String; 6], at: SystemTime) -> Self {
        Self {
            base,
            timestamp: unix_nanos(at),
            out: Vec::new(),
        }
    }

    /// Adds `value` to the family `name` with its own label values `extra`.
    fn add(&mut self, name: &str, extra: &[&str], value: u64) {
        let Some(f) = FAMILIES.iter().find(|f| f.name == name) else {
            debug_assert!(false, "metric {name} has no descriptor");
            return;
        };
        debug_assert_eq!(f.labels.len(), extra.len(), "labels of {name}");
        self.out.push(cri::Metric {
            name: name.to_string(),
            timestamp: self.timestamp,
            metric_type: f.kind as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(extra.iter().map(|v| v.to_string()))
                .collect(),
            value: Some(cri::UInt64Value { value }),
        });
    }

    /// The families of a cgroup's further numbers.
    fn detail(&mut self, d: &UsageDetail) {
        let seconds = |ns: u64| Duration::from_nanos(ns).as_secs();
        for (name, value) in [
            ("container_cpu_user_seconds_total", seconds(d.cpu_user_ns)),
            (
                "container_cpu_system_seconds_total",
                seconds(d.cpu_system_ns),
            ),
            ("container_cpu_cfs_periods_total", d.cfs_periods),
            (
                "container_cpu_cfs_throttled_periods_total",
                d.cfs_throttled_periods,
            ),
            (
                "container_cpu_cfs_throttled_seconds_total",
                seconds(d.cfs_throttled_ns),
            ),
            ("container_memory_cache", d.memory_cache),
            ("container_memory_mapped_file", d.memory_mapped_file),
            ("container_memory_failcnt", d.memory_failcnt),
            ("container_memory_kernel_usage", d.memory_kernel),
            ("container_memory_max_usage_bytes", d.memory_max_usage),
            ("container_memory_swap", d.memory_swap),
            ("container_oom_events_total", d.oom_events),
            ("container_threads", d.threads),
            ("container_threads_max", d.threads_max),
            ("container_file_descriptors", d.file_descriptors),
            ("container_sockets", d.sockets),
        ] {
            self.add(name, &[], value);
        }
    }

    /// The CPU and memory families of a cgroup.
    fn cgroup(&mut self, cpu_ns: u64, memory: &MemoryStats, at: SystemTime) {
        self.add(
            "container_cpu_usage_seconds_total",
            &["total"],
            Duration::from_nanos(cpu_ns).as_secs(),
        );
        self.add("container_memory_usage_bytes", &[], memory.usage);
        self.add(
            "container_memory_working_set_bytes",
            &[],
            memory.working_set,
        );
        self.add("container_memory_rss", &[], memory.rss);
        for (kind, value) in [
            ("pgfault", memory.page_faults),
            ("pgmajfault", memory.major_page_faults),
        ] {
            self.add(
                "container_memory_failures_total",
                &[kind, "container"],
                value,
            );
        }
        self.add("container_last_seen", &[], unix_seconds(at));
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The pod's namespace and name.
fn pod_names(sandbox: &SandboxRecord) -> (String, String) {
    let m = sandbox.config.metadata.clone().unwrap_or_default();
    (m.namespace, m.name)
}

/// The metrics of the container `record` of `sandbox` from its backend's numbers.
pub(in crate::cri) fn container_metrics(
    sandbox: &SandboxRecord,
    record: &ContainerRecord,
    s: &ContainerStats,
) -> cri::ContainerMetrics {
    let (namespace, pod) = pod_names(sandbox);
    let image = record
        .config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    let name = record.config.metadata.clone().unwrap_or_default().name;
    let base = [
        name,
        record.id.clone(),
        image,
        record.name(),
        namespace,
        pod,
    ];
    let mut m = Metrics::new(base, s.timestamp);
    m.cgroup(s.cpu_usage_ns, &s.memory, s.timestamp);
    m.detail(&s.detail);
    let device = s.writable_layer.display().to_string();
    for (name, value) in [
        ("container_fs_usage_bytes", s.writable_layer_bytes),
        ("container_fs_limit_bytes", s.detail.fs_limit_bytes),
        ("container_fs_inodes_total", s.detail.fs_inodes_total),
        ("container_fs_inodes_free", s.detail.fs_inodes_free),
    ] {
        m.add(name, &[&device], value);
    }
    if let Some(r) = &record.resources {
        // What was applied, as cAdvisor reads it back from the cgroup: a period and
        // shares always, a memory limit only when one was set.
        m.add(
            "container_spec_cpu_period",
            &[],
            u64::try_from(r.cpu_period).unwrap_or(0),
        );
        m.add(
            "container_spec_cpu_shares",
            &[],
            u64::try_from(r.cpu_shares).unwrap_or(0),
        );
        if let Ok(limit @ 1..) = u64::try_from(r.memory_limit_in_bytes) {
            m.add("container_spec_memory_limit_bytes", &[], limit);
        }
        if let Ok(limit @ 1..) = u64::try_from(r.memory_swap_limit_in_bytes) {
            m.add("container_spec_memory_swap_limit_bytes", &[], limit);
        }
    }
    let created = SystemTime::UNIX_EPOCH
        + Duration::from_nanos(u64::try_from(record.created_at).unwrap_or(0));
    m.add("container_start_time_seconds", &[], unix_seconds(created));
    cri::ContainerMetrics {
        container_id: record.id.clone(),
        metrics: m.out,
    }
}

/// The metrics of the pod `record` from its backend's numbers (its cgroup as a whole,
/// and its network as the `POD` container's, as cAdvisor shows the pause
/// container's), with its containers' metrics.
pub(in crate::cri) fn sandbox_metrics(
    record: &SandboxRecord,
    s: &SandboxStats,
    containers: Vec<cri::ContainerMetrics>,
) -> cri::PodSandboxMetrics {
    let (namespace, pod) = pod_names(record);
    let base = |container: &str| {
        [
            container.to_string(),
            record.id.clone(),
            String::new(),
            String::new(),
            namespace.clone(),
            pod.clone(),
        ]
    };
    let mut m = Metrics::new(base(""), s.timestamp);
    m.cgroup(s.cpu_usage_ns, &s.memory, s.timestamp);
    m.detail(&s.detail);
    m.add("container_processes", &[], s.processes);
    let mut metrics = m.out;
    if let Some(n) = &s.network {
        let mut net = Metrics::new(base("POD"), s.timestamp);
        let interface = [n.interface.as_str()];
        for (name, value) in [
            ("container_network_receive_bytes_total", n.rx_bytes),
            ("container_network_receive_errors_total", n.rx_errors),
            ("container_network_transmit_bytes_total", n.tx_bytes),
            ("container_network_transmit_errors_total", n.tx_errors),
            ("container_network_receive_packets_total", n.rx_packets),
            (
                "container_network_receive_packets_dropped_total",
                n.rx_dropped,
            ),
            ("container_network_transmit_packets_total", n.tx_packets),
            (
                "container_network_transmit_packets_dropped_total",
                n.tx_dropped,
            ),
        ] {
            net.add(name, &interface, value);
        }
        metrics.extend(net.out);
    }
    cri::PodSandboxMetrics {
        pod_sandbox_id: record.id.clone(),
        metrics,
        container_metrics: containers,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn descriptors_are_unique_with_help_and_base_labels_first() {
        let all = descriptors();
        let names: HashSet<_> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), all.len());
        for d in &all {
            assert!(!d.help.is_empty(), "{}", d.name);
            assert_eq!(d.label_keys[..6], BASE_LABELS, "{}", d.name);
        }
    }
}
