//! berth's Prometheus metrics: what every CRI call and image pull adds to, and the
//! text exposition format (0.0.4) a scrape gets.
//!
//! The counters are process-wide ([`metrics`]) so the trace layer and the verbs add to
//! them without threading a handle through; they cost an uncontended lock per call
//! whether or not `telemetry.metrics.address` serves them. The runtimes crate reports
//! CNI plugin runs and supervisor events through the [`runtimes::metrics::Observer`]
//! the agent installs ([`observe_runtimes`]). Pods, containers and the state store are
//! counted when scraped, from the caller's [`ObjectCounts`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use runtimes::metrics::{Observer, SupervisorEvent};

/// Upper bounds (seconds) of the CRI latency buckets: kubelet's own
/// `kubelet_runtime_operations_duration_seconds` spans 5 ms to 50 s.
const CALL_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
];

/// Upper bounds (seconds) of the image pull buckets.
const PULL_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Upper bounds (seconds) of the CNI plugin run buckets: a bridge ADD takes tens of
/// milliseconds, a plugin waiting on IPAM or a cloud API seconds.
const CNI_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or under each bound (not yet cumulative).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], seconds: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// `name_bucket`/`_sum`/`_count` lines with `labels` (`k="v",…` or empty).
    fn write(&self, out: &mut String, name: &str, bounds: &[f64], labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(&self.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// By (method, gRPC code name).
    calls: BTreeMap<(String, &'static str), Histogram>,
    /// By method.
    in_flight: BTreeMap<String, i64>,
    /// By result (`ok` or the gRPC code name of the failure).
    pulls: BTreeMap<&'static str, u64>,
    pull_seconds: Histogram,
    pulled_bytes: u64,
    /// Failed pulls by reason.
    pull_failures: BTreeMap<&'static str, u64>,
    /// CNI plugin runs by (operation, network, plugin type, result).
    cni: BTreeMap<(String, String, String, &'static str), Histogram>,
    /// Supervisor events by event.
    supervisor: BTreeMap<&'static str, u64>,
    /// Streaming sessions open now, by kind.
    sessions: BTreeMap<&'static str, i64>,
    /// Streaming sessions opened, by kind.
    sessions_total: BTreeMap<&'static str, u64>,
}

/// What berth counts.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

/// What pods and containers are counted by.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The state (berth's own words: `ready`, `running`, …).
    pub state: &'static str,
    /// The runtime handler (of the pod, for a container).
    pub handler: String,
    /// The backend that runs it (of the pod, for a container).
    pub backend: String,
}

/// Pods, containers and the state store as a scrape counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Pod sandboxes.
    pub pods: BTreeMap<ObjectKey, u64>,
    /// Containers.
    pub containers: BTreeMap<ObjectKey, u64>,
    /// Bytes of the state store's files.
    pub store_bytes: u64,
    /// The state store's records, by table.
    pub store_records: BTreeMap<&'static str, u64>,
}

/// Why a pull failed, as `berth_image_pull_failures_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullFailure {
    /// The call's code.
    pub code: tonic::Code,
    /// A short reason (`not_found`, `unauthorized`, …).
    pub reason: &'static str,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        // A panic while counting must not stop counting.
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut counters)
    }

    /// A CRI call of `method` began; the guard ends it.
    pub fn call_started(&'static self, method: &str) -> InFlight {
        self.with(|c| *c.in_flight.entry(method.to_string()).or_default() += 1);
        InFlight {
            metrics: self,
            method: method.to_string(),
        }
    }

    /// A CRI call of `method` was answered with `code` after `took`.
    pub fn call_answered(&self, method: &str, code: tonic::Code, took: Duration) {
        self.with(|c| {
            c.calls
                .entry((method.to_string(), code_name(code)))
                .or_default()
                .observe(&CALL_BUCKETS, took.as_secs_f64())
        });
    }

    /// An image pull ended: `Ok(bytes of the image)` or how it failed.
    pub fn pull_ended(&self, result: Result<u64, PullFailure>, took: Duration) {
        self.with(|c| {
            let outcome = match result {
                Ok(bytes) => {
                    c.pulled_bytes += bytes;
                    c.pull_seconds.observe(&PULL_BUCKETS, took.as_secs_f64());
                    "ok"
                }
                Err(failure) => {
                    *c.pull_failures.entry(failure.reason).or_default() += 1;
                    code_name(failure.code)
                }
            };
            *c.pulls.entry(outcome).or_default() += 1;
        });
    }

    /// A streaming session of `kind` (`exec`, `attach`, `portforward`) began; the
    /// guard ends it.
    pub fn session_started(&'static self, kind: &'static str) -> Session {
        self.with(|c| {
            *c.sessions.entry(kind).or_default() += 1;
            *c.sessions_total.entry(kind).or_default() += 1;
        });
        Session {
            metrics: self,
            kind,
        }
    }

    /// The exposition text, with `objects` counted now.
    pub fn render(&self, objects: &ObjectCounts) -> String {
        let mut out = String::new();
        self.with(|c| {
            header(
                &mut out,
                "berth_cri_request_duration_seconds",
                "histogram",
                "Time to answer a CRI call, by method and gRPC code.",
            );
            for ((method, code), h) in &c.calls {
                let labels = format!("method=\"{method}\",code=\"{code}\"");
                h.write(
                    &mut out,
                    "berth_cri_request_duration_seconds",
                    &CALL_BUCKETS,
                    &labels,
                );
            }
            header(
                &mut out,
                "berth_cri_requests_in_flight",
                "gauge",
                "CRI calls being answered now, by method.",
            );
            for (method, n) in &c.in_flight {
                let _ = writeln!(
                    out,
                    "berth_cri_requests_in_flight{{method=\"{method}\"}} {n}"
                );
            }
            header(
                &mut out,
                "berth_image_pulls_total",
                "counter",
                "Image pulls ended, by result (ok or the gRPC code of the failure).",
            );
            for (result, n) in &c.pulls {
                let _ = writeln!(out, "berth_image_pulls_total{{result=\"{result}\"}} {n}");
            }
            header(
                &mut out,
                "berth_image_pulled_bytes_total",
                "counter",
                "Bytes of the images pulled successfully.",
            );
            let _ = writeln!(out, "berth_image_pulled_bytes_total {}", c.pulled_bytes);
            header(
                &mut out,
                "berth_image_pull_duration_seconds",
                "histogram",
                "Time a successful image pull took.",
            );
            c.pull_seconds.write(
                &mut out,
                "berth_image_pull_duration_seconds",
                &PULL_BUCKETS,
                "",
            );
            header(
                &mut out,
                "berth_image_pull_failures_total",
                "counter",
                "Image pulls that failed, by reason.",
            );
            for (reason, n) in &c.pull_failures {
                let _ = writeln!(
                    out,
                    "berth_image_pull_failures_total{{reason=\"{reason}\"}} {n}"
                );
            }
            header(
                &mut out,
                "berth_cni_operation_duration_seconds",
                "histogram",
                "Time one CNI plugin took, by operation (ADD, DEL; berth runs no CHECK), network list, plugin type and result.",
            );
            for ((operation, network, plugin, result), h) in &c.cni {
                let labels = format!(
                    "operation=\"{operation}\",network=\"{}\",plugin=\"{}\",result=\"{result}\"",
                    escape(network),
                    escape(plugin)
                );
                h.write(
                    &mut out,
                    "berth_cni_operation_duration_seconds",
                    &CNI_BUCKETS,
                    &labels,
                );
            }
            header(
                &mut out,
                "berth_supervisor_events_total",
                "counter",
                "Pod supervisors started, reconnected to after a berth restart, and found dead (their pods are not ready for good), by event.",
            );
            for (event, n) in &c.supervisor {
                let _ = writeln!(out, "berth_supervisor_events_total{{event=\"{event}\"}} {n}");
            }
            header(
                &mut out,
                "berth_streaming_sessions",
                "gauge",
                "Streaming sessions open now, by kind (exec, attach, portforward).",
            );
            for (kind, n) in &c.sessions {
                let _ = writeln!(out, "berth_streaming_sessions{{kind=\"{kind}\"}} {n}");
            }
            header(
                &mut out,
                "berth_streaming_sessions_total",
                "counter",
                "Streaming sessions opened, by kind (exec, attach, portforward).",
            );
            for (kind, n) in &c.sessions_total {
                let _ = writeln!(
                    out,
                    "berth_streaming_sessions_total{{kind=\"{kind}\"}} {n}"
                );
            }
        });
        let pulls = runtimes::image::pull_totals();
        header(
            &mut out,
            "berth_image_pulls_in_progress",
            "gauge",
            "Image pulls running now.",
        );
        let _ = writeln!(out, "berth_image_pulls_in_progress {}", pulls.in_progress);
        header(
            &mut out,
            "berth_image_layer_downloaded_bytes_total",
            "counter",
            "Layer bytes downloaded, counted as they arrive (a running pull's progress).",
        );
        let _ = writeln!(
            out,
            "berth_image_layer_downloaded_bytes_total {}",
            pulls.downloaded_bytes
        );
        for (name, help, counts) in [
            (
                "berth_pod_sandboxes",
                "Pod sandboxes, by state (creating, ready, notready), runtime handler and backend.",
                &objects.pods,
            ),
            (
                "berth_containers",
                "Containers, by state (creating, created, running, exited, unknown: as last seen), their pod's runtime handler and backend.",
                &objects.containers,
            ),
        ] {
            header(&mut out, name, "gauge", help);
            for (key, n) in counts {
                let _ = writeln!(
                    out,
                    "{name}{{state=\"{}\",handler=\"{}\",backend=\"{}\"}} {n}",
                    key.state,
                    escape(&key.handler),
                    escape(&key.backend)
                );
            }
        }
        header(
            &mut out,
            "berth_state_store_bytes",
            "gauge",
            "Size of the state store's files.",
        );
        let _ = writeln!(out, "berth_state_store_bytes {}", objects.store_bytes);
        header(
            &mut out,
            "berth_state_store_records",
            "gauge",
            "Records in the state store, by table.",
        );
        for (table, n) in &objects.store_records {
            let _ = writeln!(out, "berth_state_store_records{{table=\"{table}\"}} {n}");
        }
        out
    }
}

impl Observer for Metrics {
    fn cni_operation(
        &self,
        operation: &str,
        network: &str,
        plugin: &str,
        took: Duration,
        ok: bool,
    ) {
        let key = (
            operation.to_string(),
            network.to_string(),
            plugin.to_string(),
            if ok { "ok" } else { "error" },
        );
        self.with(|c| {
            c.cni
                .entry(key)
                .or_default()
                .observe(&CNI_BUCKETS, took.as_secs_f64())
        });
    }

    fn supervisor(&self, event: SupervisorEvent) {
        self.with(|c| *c.supervisor.entry(event.as_str()).or_default() += 1);
    }
}

/// Has the runtimes crate report to [`metrics`] (once per process; later calls do
/// nothing).
pub fn observe_runtimes() {
    /// Forwards to the process's metrics (the observer must be owned).
    struct Process;
    impl Observer for Process {
        fn cni_operation(
            &self,
            operation: &str,
            network: &str,
            plugin: &str,
            took: Duration,
            ok: bool,
        ) {
            metrics().cni_operation(operation, network, plugin, took, ok)
        }
        fn supervisor(&self, event: SupervisorEvent) {
            metrics().supervisor(event)
        }
    }
    runtimes::metrics::install(Arc::new(Process));
}

/// Counts a streaming session open until dropped.
pub struct Session {
    metrics: &'static Metrics,
    kind: &'static str,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.metrics.with(|c| {
            if let Some(n) = c.sessions.get_mut(self.kind) {
                *n -= 1;
            }
        });
    }
}

/// Counts a call in flight until dropped (answered, failed or cancelled alike).
pub struct InFlight {
    metrics: &'static Metrics,
    method: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.with(|c| {
            if let Some(n) = c.in_flight.get_mut(&self.method) {
                *n -= 1;
            }
        });
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format quotes it. Method names and codes are berth's own;
/// handlers come from the config and kubelet's requests.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// gRPC's name of `code` (`OK`, `NOT_FOUND`, …), as grpc-go's metrics label it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_calls_leave_flight() {
        let m: &'static Metrics = Box::leak(Box::default());
        let guard = m.call_started("Version");
        assert!(m
            .render(&ObjectCounts::default())
            .contains("berth_cri_requests_in_flight{method=\"Version\"} 1"));
        m.call_answered("Version", tonic::Code::Ok, Duration::from_millis(3));
        m.call_answered("Version", tonic::Code::Ok, Duration::from_millis(30));
        drop(guard);
        let text = m.render(&ObjectCounts::default());
        for line in [
            "berth_cri_requests_in_flight{method=\"Version\"} 0",
            "berth_cri_request_duration_seconds_bucket{method=\"Version\",code=\"OK\",le=\"0.0025\"} 0",
            "berth_cri_request_duration_seconds_bucket{method=\"Version\",code=\"OK\",le=\"0.005\"} 1",
            "berth_cri_request_duration_seconds_bucket{method=\"Version\",code=\"OK\",le=\"0.05\"} 2",
            "berth_cri_request_duration_seconds_bucket{method=\"Version\",code=\"OK\",le=\"+Inf\"} 2",
            "berth_cri_request_duration_seconds_count{method=\"Version\",code=\"OK\"} 2",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn pulls_count_bytes_only_when_they_succeed_and_failures_by_reason() {
        let m = Metrics::default();
        m.pull_ended(Ok(1000), Duration::from_secs(1));
        let missing = PullFailure {
            code: tonic::Code::NotFound,
            reason: "not_found",
        };
        m.pull_ended(Err(missing), Duration::from_secs(1));
        m.pull_ended(Err(missing), Duration::from_secs(1));
        let mut objects = ObjectCounts::default();
        let key = ObjectKey {
            state: "ready",
            handler: "we\"ird".into(),
            backend: "youki".into(),
        };
        objects.pods.insert(key, 2);
        objects.store_records.insert("containers", 3);
        let text = m.render(&objects);
        for line in [
            "berth_image_pulls_total{result=\"ok\"} 1",
            "berth_image_pulls_total{result=\"NOT_FOUND\"} 2",
            "berth_image_pull_failures_total{reason=\"not_found\"} 2",
            "berth_image_pulled_bytes_total 1000",
            "berth_image_pull_duration_seconds_count 1",
            "berth_pod_sandboxes{state=\"ready\",handler=\"we\\\"ird\",backend=\"youki\"} 2",
            "berth_state_store_records{table=\"containers\"} 3",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn cni_runs_supervisor_events_and_sessions_are_counted() {
        let m: &'static Metrics = Box::leak(Box::default());
        m.cni_operation("ADD", "berth", "bridge", Duration::from_millis(20), true);
        m.cni_operation("DEL", "berth", "bridge", Duration::from_millis(7), false);
        m.supervisor(SupervisorEvent::Started);
        m.supervisor(SupervisorEvent::Lost);
        let exec = m.session_started("exec");
        let _attach = m.session_started("attach");
        drop(exec);
        let text = m.render(&ObjectCounts::default());
        for line in [
            "# TYPE berth_cni_operation_duration_seconds histogram",
            "berth_cni_operation_duration_seconds_bucket{operation=\"ADD\",network=\"berth\",plugin=\"bridge\",result=\"ok\",le=\"0.025\"} 1",
            "berth_cni_operation_duration_seconds_count{operation=\"DEL\",network=\"berth\",plugin=\"bridge\",result=\"error\"} 1",
            "berth_supervisor_events_total{event=\"started\"} 1",
            "berth_supervisor_events_total{event=\"lost\"} 1",
            "berth_streaming_sessions{kind=\"exec\"} 0",
            "berth_streaming_sessions{kind=\"attach\"} 1",
            "berth_streaming_sessions_total{kind=\"exec\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
