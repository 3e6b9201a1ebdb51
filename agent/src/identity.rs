//! Choosing the [`ContainerId`] of a new pod sandbox or container. Pure: the caller
//! passes the ids already allocated (from the store, inside the transaction that
//! records the new one), so the choice and its recording are atomic.
//!
//! - **service**: the pod's workload qualified by its namespace (`web.default`). The
//!   workload is the `app.kubernetes.io/name` label, else the `app` label, else the pod
//!   name without the suffix its controller generated: StatefulSet `db-0` → `db`,
//!   Deployment `web-7d9f8b6c5d-x2x9k` → `web`, DaemonSet/Job/ReplicaSet `x-abcde` → `x`,
//!   CronJob `backup-28374610-abcde` → `backup`. Lowercased into the ContainerId
//!   service charset.
//! - **role**: `sandbox` for the sandbox, else the container name (lowercased, other
//!   characters turned into `-`).
//! - **replica**: for a sandbox, the StatefulSet ordinal when the pod has one and it is
//!   free, else the lowest number free for (service, `sandbox`); for a container, its
//!   sandbox's replica when free, else the lowest number free for (service, role). So a
//!   restarted container's next attempt, created while kubelet still keeps the previous
//!   one, gets an id of its own.
//! - **node**: the configured node id.

use std::collections::{BTreeSet, HashMap};

use runtimes::id::{IdError, SANDBOX_ROLE};
use runtimes::ContainerId;

/// The label under which a sandbox's or container's ContainerId is shown.
pub const CONTAINER_ID_LABEL: &str = "berth.dev/container-id";

/// Recommended workload-name label (Kubernetes' common labels).
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The older convention for the workload name.
const APP_LABEL: &str = "app";
/// Set by the Deployment controller on its ReplicaSets' pods.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Set by the StatefulSet controller: the pod's own name.
const STATEFULSET_POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Set by the StatefulSet (and indexed Job) controller: the pod's ordinal.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Set by the Job controller, whose CronJob-made Jobs carry a scheduled-time suffix.
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

/// The alphabet of the random suffixes Kubernetes generates (no vowels, no `0`, `1`,
/// `3`, so they never spell words): what tells a generated suffix from a name part.
const GENERATED_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// The length of a pod's generated suffix.
const POD_SUFFIX_LEN: usize = 5;
/// The lengths of a ReplicaSet's pod-template hash.
const TEMPLATE_HASH_LEN: std::ops::RangeInclusive<usize> = 6..=10;

/// The role a container named `sandbox` gets, so that only a sandbox has the role
/// [`SANDBOX_ROLE`] (`ContainerId::is_sandbox` relies on it).
const SANDBOX_NAMED_CONTAINER_ROLE: &str = "sandbox-container";

/// What the identity of a pod is derived from (its CRI metadata and labels).
#[derive(Debug, Clone, Copy)]
pub struct Pod<'a> {
    /// The pod's name.
    pub name: &'a str,
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's labels.
    pub labels: &'a HashMap<String, String>,
}

impl Pod<'_> {
    /// The service: the workload name qualified by the namespace.
    pub fn service(&self) -> String {
        let workload = [NAME_LABEL, APP_LABEL]
            .iter()
            .filter_map(|key| self.labels.get(*key))
            .map(|value| normalize_service_part(value))
            .find(|value| !value.is_empty())
            .unwrap_or_else(|| normalize_service_part(self.workload_name()));
        let workload = if workload.is_empty() {
            "pod".to_string()
        } else {
            workload
        };
        let namespace = normalize_service_part(self.namespace);
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            &namespace
        };
        format!("{workload}.{namespace}")
    }

    /// The StatefulSet ordinal: the `apps.kubernetes.io/pod-index` label, else the
    /// `-N` suffix of a pod the StatefulSet controller named.
    pub fn ordinal(&self) -> Option<u32> {
        if let Some(index) = self.labels.get(POD_INDEX_LABEL) {
            return index.parse().ok();
        }
        if self.labels.contains_key(STATEFULSET_POD_NAME_LABEL) {
            return ordinal_suffix(self.name).map(|(_, n)| n);
        }
        None
    }

    /// The pod name without the suffix its controller generated.
    fn workload_name(&self) -> &str {
        let name = self.name;
        let stateful = self.labels.contains_key(STATEFULSET_POD_NAME_LABEL)
            || self.labels.contains_key(POD_INDEX_LABEL);
        if stateful {
            if let Some((base, _)) = ordinal_suffix(name) {
                return base;
            }
        }
        if let Some(hash) = self.labels.get(POD_TEMPLATE_HASH_LABEL) {
            if let Some(at) = name.rfind(&format!("-{hash}-")).filter(|&at| at > 0) {
                return &name[..at];
            }
        }
        let Some(base) = strip_generated(name, POD_SUFFIX_LEN..=POD_SUFFIX_LEN) else {
            return name;
        };
        if JOB_NAME_LABELS.iter().any(|l| self.labels.contains_key(*l)) {
            // A CronJob's Job is `<cronjob>-<scheduled minute>`.
            return digits_suffix(base).unwrap_or(base);
        }
        // A Deployment's pod without its label: `<deployment>-<hash>-<suffix>`.
        strip_generated(base, TEMPLATE_HASH_LEN).unwrap_or(base)
    }
}

/// The id of a new sandbox of `pod` on `node`, not among `taken`.
pub fn sandbox_id(
    pod: &Pod<'_>,
    node: &str,
    taken: &BTreeSet<ContainerId>,
) -> Result<ContainerId, IdError> {
    let base = ContainerId::new(pod.service(), SANDBOX_ROLE, 0, node)?;
    Ok(first_free(&base, pod.ordinal(), taken))
}

/// The id of a new container called `name` in the sandbox `sandbox`, not among `taken`.
pub fn container_id(
    sandbox: &ContainerId,
    name: &str,
    taken: &BTreeSet<ContainerId>,
) -> Result<ContainerId, IdError> {
    let base = sandbox.with_role(role(name))?;
    Ok(first_free(&base, Some(sandbox.replica()), taken))
}

/// The role of a container called `name`.
pub fn role(name: &str) -> String {
    let role = normalize(name, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    });
    match role.as_str() {
        "" => "container".to_string(),
        SANDBOX_ROLE => SANDBOX_NAMED_CONTAINER_ROLE.to_string(),
        _ => role,
    }
}

/// `base` with `preferred` as replica when that is free, else the lowest free replica.
fn first_free(
    base: &ContainerId,
    preferred: Option<u32>,
    taken: &BTreeSet<ContainerId>,
) -> ContainerId {
    if let Some(id) = preferred
        .map(|n| base.with_replica(n))
        .filter(|id| !taken.contains(id))
    {
        return id;
    }
    // Among taken.len() + 1 numbers at least one is free.
    let last = u32::try_from(taken.len()).unwrap_or(u32::MAX);
    (0..=last)
        .map(|n| base.with_replica(n))
        .find(|id| !taken.contains(id))
        .unwrap_or_else(|| base.with_replica(u32::MAX))
}

/// A part of a service: lowercase letters, digits, `-` and `.`, with no `-` or `.`
/// at either end.
fn normalize_service_part(value: &str) -> String {
    let part = normalize(value, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
    });
    part.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// Lowercases `value`, turns every character `allowed` refuses into `-`, and trims `-`
/// from both ends.
fn normalize(value: &str, allowed: impl Fn(char) -> bool) -> String {
    let mapped: String = value
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// `name` split at a final `-N`.
fn ordinal_suffix(name: &str) -> Option<(&str, u32)> {
    let (base, n) = name.rsplit_once('-')?;
    let canonical = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (canonical && !base.is_empty())
        .then(|| n.parse().ok().map(|n| (base, n)))
        .flatten()
}

/// `name` without a final `-<digits>`.
fn digits_suffix(name: &str) -> Option<&str> {
    ordinal_suffix(name).map(|(base, _)| base)
}

/// `name` without a final `-<generated>` whose length is in `lengths`.
fn strip_generated(name: &str, lengths: std::ops::RangeInclusive<usize>) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('-')?;
    let generated =
        lengths.contains(&suffix.len()) && suffix.bytes().all(|b| GENERATED_ALPHABET.contains(&b));
    (generated && !base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn service(name: &str, namespace: &str, pairs: &[(&str, &str)]) -> String {
        let labels = labels(pairs);
        Pod {
            name,
            namespace,
            labels: &labels,
        }
        .service()
    }

    #[test]
    fn generated_suffixes_are_stripped_per_controller() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            // Deployment, with and without its pod-template-hash label.
            (
                "web-7d9f8b6c5d-x2x9k",
                &[("pod-template-hash", "7d9f8b6c5d")],
                "web.default",
            ),
            ("web-7d9f8b6c5d-x2x9k", &[], "web.default"),
            ("my-api-5c4f9d8b7-zq2xw", &[], "my-api.default"),
            // DaemonSet / ReplicaSet / Job pods: one generated suffix.
            ("node-exporter-x2x9k", &[], "node-exporter.default"),
            (
                "migrate-bcdfg",
                &[("job-name", "migrate")],
                "migrate.default",
            ),
            // CronJob: the Job's scheduled-minute suffix goes too.
            (
                "backup-28374610-kqv8z",
                &[("batch.kubernetes.io/job-name", "backup-28374610")],
                "backup.default",
            ),
            // StatefulSet, by either label.
            (
                "db-0",
                &[("statefulset.kubernetes.io/pod-name", "db-0")],
                "db.default",
            ),
            (
                "db-12",
                &[("apps.kubernetes.io/pod-index", "12")],
                "db.default",
            ),
            // A plain pod keeps its name, also when it looks like a StatefulSet's.
            ("nginx", &[], "nginx.default"),
            ("worker-2", &[], "worker-2.default"),
            // Words are not generated suffixes (they have vowels).
            ("web-frontend", &[], "web-frontend.default"),
        ];
        for (name, pairs, want) in cases {
            assert_eq!(service(name, "default", pairs), *want, "{name}");
        }
    }

    #[test]
    fn labels_take_precedence_over_the_name() {
        let both = [("app.kubernetes.io/name", "shop"), ("app", "legacy")];
        assert_eq!(service("web-x2x9k", "prod", &both), "shop.prod");
        assert_eq!(
            service("web-x2x9k", "prod", &[("app", "legacy")]),
            "legacy.prod"
        );
        // A label that normalizes to nothing is skipped.
        assert_eq!(
            service(
                "web-x2x9k",
                "prod",
                &[("app.kubernetes.io/name", "__"), ("app", "b")]
            ),
            "b.prod"
        );
    }

    #[test]
    fn services_are_qualified_and_normalized() {
        assert_eq!(service("Web_App", "Team-A", &[]), "web-app.team-a");
        assert_eq!(
            service("x", "kube-system", &[("app", "My.App_")]),
            "my.app.kube-system"
        );
        assert_eq!(service("---", "", &[]), "pod.default");
        for s in [
            service("Ünïcode-pod", "ns", &[]),
            service("-a-", "-b-", &[]),
            service("a", "ns", &[("app", ".-.x.-.")]),
        ] {
            assert!(ContainerId::new(s.clone(), "r", 0, "n").is_ok(), "{s}");
        }
    }

    #[test]
    fn roles_are_dns_labels_and_never_the_sandbox_role() {
        assert_eq!(role("nginx"), "nginx");
        assert_eq!(
            role("container-for-execSync-test-1f2e"),
            "container-for-execsync-test-1f2e"
        );
        assert_eq!(role("a.b_c"), "a-b-c");
        assert_eq!(role("--"), "container");
        assert_eq!(role("sandbox"), "sandbox-container");
    }

    #[test]
    fn ordinals_come_from_the_index_label_or_the_statefulset_name() {
        let pod = |name, pairs: &[(&str, &str)]| {
            let labels = labels(pairs);
            Pod {
                name,
                namespace: "ns",
                labels: &labels,
            }
            .ordinal()
        };
        assert_eq!(
            pod("db-3", &[("apps.kubernetes.io/pod-index", "3")]),
            Some(3)
        );
        assert_eq!(
            pod("db-3", &[("statefulset.kubernetes.io/pod-name", "db-3")]),
            Some(3)
        );
        assert_eq!(pod("db-3", &[]), None);
        assert_eq!(
            pod("db-x", &[("statefulset.kubernetes.io/pod-name", "db-x")]),
            None
        );
    }

    fn pod_id(name: &str, pairs: &[(&str, &str)], taken: &BTreeSet<ContainerId>) -> ContainerId {
        let labels = labels(pairs);
        let pod = Pod {
            name,
            namespace: "default",
            labels: &labels,
        };
        sandbox_id(&pod, "node-a", taken).unwrap()
    }

    #[test]
    fn replicas_are_the_lowest_free_number_per_service() {
        let mut taken = BTreeSet::new();
        for (expected, name) in
            (0..).zip(["web-7d9f8b6c5d-x2x9b", "web-7d9f8b6c5d-x2x9c", "web-x2x9d"])
        {
            let id = pod_id(name, &[], &taken);
            assert_eq!(
                (id.service(), id.role(), id.replica()),
                ("web.default", "sandbox", expected)
            );
            assert_eq!(id.node(), "node-a");
            taken.insert(id);
        }
        // Another service starts at 0; a freed number is reused.
        assert_eq!(pod_id("db-x2x9k", &[], &taken).replica(), 0);
        taken.remove(&ContainerId::new("web.default", "sandbox", 1, "node-a").unwrap());
        assert_eq!(pod_id("web-7d9f8b6c5d-zzzzz", &[], &taken).replica(), 1);
    }

    #[test]
    fn a_statefulset_ordinal_is_the_replica_when_free() {
        fn sts(n: &str) -> [(&str, &str); 1] {
            [("statefulset.kubernetes.io/pod-name", n)]
        }
        let mut taken = BTreeSet::new();
        let db2 = pod_id("db-2", &sts("db-2"), &taken);
        assert_eq!(db2.replica(), 2);
        taken.insert(db2);
        // The same ordinal again (a new attempt while the old sandbox exists): lowest free.
        assert_eq!(pod_id("db-2", &sts("db-2"), &taken).replica(), 0);
    }

    #[test]
    fn containers_share_their_sandbox_replica_and_attempts_coexist() {
        let sandbox = ContainerId::new("web.default", "sandbox", 4, "node-a").unwrap();
        let mut taken = BTreeSet::from([sandbox.clone()]);
        let first = container_id(&sandbox, "nginx", &taken).unwrap();
        assert_eq!((first.role(), first.replica()), ("nginx", 4));
        taken.insert(first.clone());
        // The next attempt of the same container while the first is still recorded.
        let second = container_id(&sandbox, "nginx", &taken).unwrap();
        assert_eq!((second.role(), second.replica()), ("nginx", 0));
        taken.insert(second.clone());
        let third = container_id(&sandbox, "nginx", &taken).unwrap();
        assert_eq!(third.replica(), 1);
        // Each one is recovered from its display form, and they are all distinct.
        for id in [&sandbox, &first, &second, &third] {
            assert_eq!(
                ContainerId::parse_display(&id.to_string()).as_ref(),
                Some(id)
            );
        }
        let distinct: BTreeSet<String> = [&first, &second, &third]
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn parse_display_recovers_every_allocated_id() {
        let mut taken = BTreeSet::new();
        for (name, pairs) in [
            ("my-web-app-5c4f9d8b7-zq2xw", vec![]),
            ("pg-1", vec![("statefulset.kubernetes.io/pod-name", "pg-1")]),
            ("x", vec![("app.kubernetes.io/name", "Front-End")]),
        ] {
            let sandbox = pod_id(name, &pairs, &taken);
            taken.insert(sandbox.clone());
            let container = container_id(&sandbox, "side-car_Proxy", &taken).unwrap();
            for id in [sandbox, container] {
                assert_eq!(ContainerId::parse_display(&id.to_string()), Some(id));
            }
        }
    }

    #[test]
    fn a_bad_node_is_refused() {
        let labels = HashMap::new();
        let pod = Pod {
            name: "p",
            namespace: "ns",
            labels: &labels,
        };
        assert!(sandbox_id(&pod, "two words", &BTreeSet::new()).is_err());
    }
}
