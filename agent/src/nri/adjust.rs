//! `CreateContainer`'s adjustments: what the plugins change in a container's OCI spec
//! before it is created, and the resource updates they ask for other containers.
//! Merged in plugin order, each field owned by one plugin: two plugins setting the
//! same annotation, variable, mount, device, rlimit, sysctl or resource field is a
//! conflict that fails the creation (as NRI's adaptation does). A key (or mount
//! destination, device path) starting with `-` removes it. Hooks are appended.
//!
//! What berth cannot apply is refused, naming the plugin and the field, never
//! skipped: CDI devices (no CDI registry), `linux.cgroups_path` (a container lives
//! in its pod's cgroup), namespaces (the pod decides them), blockio/RDT classes and
//! `linux.rdt`, I/O priority, scheduler, memory policy, seccomp policy and network
//! devices.
//!
//! Hooks run on the host as root: they come only from plugins, which connect to a
//! 0600 socket as root (NRI's trust model), never from the container's request.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::nri as api;
use oci_spec::runtime::{LinuxResources, Mount, Spec};
use serde_json::{json, Map, Value};

use super::NriError;
use crate::spec::HostFacts;

/// Who set what, to find conflicts: `kind:key` → plugin.
#[derive(Debug, Default, Clone, PartialEq)]
struct Owners(HashMap<String, String>);

impl Owners {
    fn claim(&mut self, plugin: &str, kind: &str, key: &str) -> Result<(), NriError> {
        match self.0.insert(format!("{kind}:{key}"), plugin.to_string()) {
            Some(other) if other != plugin => Err(NriError::Adjustment {
                plugin: plugin.into(),
                why: format!("{kind} {key:?} is set by plugin {other} too"),
            }),
            _ => Ok(()),
        }
    }
}

fn refuse(plugin: &str, why: String) -> NriError {
    NriError::Adjustment {
        plugin: plugin.into(),
        why,
    }
}

/// Changes to OCI `linux.resources`, each field as the OCI spec's JSON names it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resources {
    /// `memory.*` fields set.
    memory: Map<String, Value>,
    /// `cpu.*` fields set.
    cpu: Map<String, Value>,
    /// `pids.limit`.
    pids: Option<i64>,
    /// Hugepage limits, by page size (replacing one of the same size).
    hugepages: Vec<(String, i64)>,
    /// cgroup v2 unified keys.
    unified: Vec<(String, String)>,
    /// Device cgroup rules appended.
    rules: Vec<Value>,
}

impl Resources {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Adds `plugin`'s resources; `scope` names the container in ownership keys.
    fn merge(
        &mut self,
        owners: &mut Owners,
        plugin: &str,
        scope: &str,
        r: api::LinuxResources,
    ) -> Result<(), NriError> {
        if r.blockio_class.is_some() {
            return Err(refuse(
                plugin,
                "linux.resources.blockio_class: berth has no block I/O classes".into(),
            ));
        }
        if r.rdt_class.is_some() {
            return Err(refuse(
                plugin,
                "linux.resources.rdt_class: berth has no RDT classes".into(),
            ));
        }
        let mut set = |map: &mut Map<String, Value>, kind: &str, field: &str, value: Value| {
            owners.claim(plugin, &format!("{scope}{kind}"), field)?;
            map.insert(field.to_string(), value);
            Ok::<_, NriError>(())
        };
        if let Some(m) = r.memory {
            let mem = &mut self.memory;
            let fields = [
                ("limit", m.limit.map(|v| json!(v.value))),
                ("reservation", m.reservation.map(|v| json!(v.value))),
                ("swap", m.swap.map(|v| json!(v.value))),
                ("kernel", m.kernel.map(|v| json!(v.value))),
                ("kernelTCP", m.kernel_tcp.map(|v| json!(v.value))),
                ("swappiness", m.swappiness.map(|v| json!(v.value))),
                (
                    "disableOOMKiller",
                    m.disable_oom_killer.map(|v| json!(v.value)),
                ),
                ("useHierarchy", m.use_hierarchy.map(|v| json!(v.value))),
            ];
            for (field, value) in fields {
                if let Some(value) = value {
                    set(mem, "memory", field, value)?;
                }
            }
        }
        if let Some(c) = r.cpu {
            let cpu = &mut self.cpu;
            let fields = [
                ("shares", c.shares.map(|v| json!(v.value))),
                ("quota", c.quota.map(|v| json!(v.value))),
                ("period", c.period.map(|v| json!(v.value))),
                (
                    "realtimeRuntime",
                    c.realtime_runtime.map(|v| json!(v.value)),
                ),
                ("realtimePeriod", c.realtime_period.map(|v| json!(v.value))),
                (
                    "cpus",
                    Some(c.cpus).filter(|s| !s.is_empty()).map(Value::from),
                ),
                (
                    "mems",
                    Some(c.mems).filter(|s| !s.is_empty()).map(Value::from),
                ),
            ];
            for (field, value) in fields {
                if let Some(value) = value {
                    set(cpu, "cpu", field, value)?;
                }
            }
        }
        if let Some(pids) = r.pids {
            owners.claim(plugin, &format!("{scope}pids"), "limit")?;
            self.pids = Some(pids.limit);
        }
        for h in r.hugepage_limits {
            let limit = i64::try_from(h.limit).map_err(|_| {
                refuse(
                    plugin,
                    format!(
                        "hugepage limit {} for {:?} is too large",
                        h.limit, h.page_size
                    ),
                )
            })?;
            owners.claim(plugin, &format!("{scope}hugepage limit"), &h.page_size)?;
            self.hugepages.retain(|(size, _)| size != &h.page_size);
            self.hugepages.push((h.page_size, limit));
        }
        let mut unified: Vec<_> = r.unified.into_iter().collect();
        unified.sort();
        for (key, value) in unified {
            owners.claim(plugin, &format!("{scope}unified"), &key)?;
            self.unified.retain(|(k, _)| k != &key);
            self.unified.push((key, value));
        }
        for d in r.devices {
            let rule = device_rule(
                plugin,
                d.allow,
                &d.r#type,
                d.major.map(|m| m.value),
                d.minor.map(|m| m.value),
                &d.access,
            )?;
            self.rules.push(rule);
        }
        Ok(())
    }

    /// Applies it to `resources` (OCI `linux.resources` as JSON). A memory limit
    /// without a swap limit caps swap at the same value where swap is limited (as
    /// the agent does for CRI limits, containerd's default).
    fn apply(&self, resources: &mut Map<String, Value>, swap_controller: bool) {
        if !self.memory.is_empty() {
            let memory = object(resources, "memory");
            memory.extend(self.memory.clone());
            if let (Some(limit), None, true) = (
                self.memory.get("limit"),
                self.memory.get("swap"),
                swap_controller,
            ) {
                memory.insert("swap".into(), limit.clone());
            }
        }
        if !self.cpu.is_empty() {
            object(resources, "cpu").extend(self.cpu.clone());
        }
        if let Some(limit) = self.pids {
            resources.insert("pids".into(), json!({ "limit": limit }));
        }
        if !self.hugepages.is_empty() {
            let list = array(resources, "hugepageLimits");
            for (size, limit) in &self.hugepages {
                list.retain(|l| l.get("pageSize").and_then(Value::as_str) != Some(size));
                list.push(json!({ "pageSize": size, "limit": limit }));
            }
        }
        if !self.unified.is_empty() {
            let unified = object(resources, "unified");
            for (key, value) in &self.unified {
                unified.insert(key.clone(), Value::from(value.clone()));
            }
        }
        if !self.rules.is_empty() {
            array(resources, "devices").extend(self.rules.iter().cloned());
        }
    }

    /// As OCI resources to update a container with (what it leaves `None` is
    /// unchanged).
    pub fn to_oci(&self, swap_controller: bool) -> Result<LinuxResources, NriError> {
        let mut resources = Map::new();
        self.apply(&mut resources, swap_controller);
        serde_json::from_value(Value::Object(resources)).map_err(|e| NriError::Adjustment {
            plugin: "(merged)".into(),
            why: format!("the resources do not make OCI resources: {e}"),
        })
    }

    /// Applies it to `resources` (what an update asked), in place.
    pub fn apply_to(
        &self,
        resources: &mut LinuxResources,
        swap_controller: bool,
    ) -> Result<(), NriError> {
        let mut value = serde_json::to_value(&*resources).map_err(merged)?;
        if let Value::Object(map) = &mut value {
            self.apply(map, swap_controller);
        }
        *resources = serde_json::from_value(value).map_err(merged)?;
        Ok(())
    }
}

fn merged(e: serde_json::Error) -> NriError {
    NriError::Adjustment {
        plugin: "(merged)".into(),
        why: format!("the result is no OCI spec: {e}"),
    }
}

/// A device cgroup rule, checked.
fn device_rule(
    plugin: &str,
    allow: bool,
    typ: &str,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<Value, NriError> {
    if !matches!(typ, "" | "a" | "c" | "b") {
        return Err(refuse(plugin, format!("device cgroup rule type {typ:?}")));
    }
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(refuse(
            plugin,
            format!("device cgroup rule access {access:?}"),
        ));
    }
    let mut rule = json!({ "allow": allow, "access": access });
    if !typ.is_empty() {
        rule["type"] = json!(typ);
    }
    if let Some(major) = major {
        rule["major"] = json!(major);
    }
    if let Some(minor) = minor {
        rule["minor"] = json!(minor);
    }
    Ok(rule)
}

/// The object at `key` of `map`, made when missing (or not an object).
fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object")
}

/// The array at `key` of `map`, made when missing (or not an array).
fn array<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let entry = map.entry(key).or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = json!([]);
    }
    entry.as_array_mut().expect("made an array")
}

/// The plugins' resource updates of other containers, merged by container.
#[derive(Debug, Default, Clone)]
pub struct Updates {
    /// Container id → (its resources, whether a failure is ignored), in order.
    pub updates: Vec<(String, Resources, bool)>,
    owners: Owners,
}

impl Updates {
    /// Adds `plugin`'s updates; `own` is the container the event is about, which
    /// a `CreateContainer` answer may not update (it adjusts it instead).
    pub fn merge(
        &mut self,
        plugin: &str,
        own: Option<&str>,
        updates: Vec<api::ContainerUpdate>,
    ) -> Result<(), NriError> {
        for u in updates {
            if own == Some(u.container_id.as_str()) {
                return Err(refuse(
                    plugin,
                    format!("asked an update of {} during its creation", u.container_id),
                ));
            }
            let index = match self
                .updates
                .iter()
                .position(|(id, _, _)| id == &u.container_id)
            {
                Some(index) => index,
                None => {
                    let entry = (u.container_id.clone(), Resources::default(), true);
                    self.updates.push(entry);
                    self.updates.len() - 1
                }
            };
            let entry = &mut self.updates[index];
            entry.2 &= u.ignore_failure;
            if let Some(resources) = u.linux.and_then(|l| l.resources) {
                let scope = format!("{}: ", u.container_id);
                entry.1.merge(&mut self.owners, plugin, &scope, resources)?;
            }
        }
        Ok(())
    }
}

/// The plugins' merged adjustments.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Adjustment {
    /// Annotation → value (`None`: removed).
    annotations: Vec<(String, Option<String>)>,
    /// Variable → value (`None`: removed).
    env: Vec<(String, Option<String>)>,
    /// Mounts added (replacing any at their destination).
    mounts: Vec<api::Mount>,
    /// Destinations whose mounts are removed.
    unmounts: Vec<String>,
    /// The process's new arguments.
    args: Option<Vec<String>>,
    /// OCI hooks appended: (the `hooks` list, the hook as OCI JSON).
    hooks: Vec<(&'static str, Value)>,
    /// Device nodes added (OCI JSON; replacing any at their path) with their cgroup
    /// rules.
    devices: Vec<Value>,
    /// Paths whose device nodes are removed.
    removed_devices: Vec<String>,
    /// `linux.resources` changes.
    resources: Resources,
    /// rlimits (OCI JSON; replacing one of the same type).
    rlimits: Vec<Value>,
    /// `process.oomScoreAdj`.
    oom_score_adj: Option<i32>,
    /// sysctl → value (`None`: removed).
    sysctl: Vec<(String, Option<String>)>,
    owners: Owners,
}

impl Adjustment {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty()
            && self.env.is_empty()
            && self.mounts.is_empty()
            && self.unmounts.is_empty()
            && self.args.is_none()
            && !self.edits_json()
    }

    /// Whether it changes what is applied through the spec's JSON.
    fn edits_json(&self) -> bool {
        !(self.hooks.is_empty()
            && self.devices.is_empty()
            && self.removed_devices.is_empty()
            && self.resources.is_empty()
            && self.rlimits.is_empty()
            && self.oom_score_adj.is_none()
            && self.sysctl.is_empty())
    }

    fn claim(&mut self, plugin: &str, kind: &str, key: &str) -> Result<(), NriError> {
        self.owners.claim(plugin, kind, key)
    }

    /// Adds `plugin`'s adjustment.
    pub fn merge(
        &mut self,
        plugin: &str,
        adjust: api::ContainerAdjustment,
    ) -> Result<(), NriError> {
        let invalid = |why: String| refuse(plugin, why);
        if let Some(cdi) = adjust.cdi_devices.first() {
            return Err(invalid(format!(
                "CDI_devices ({:?}): berth has no CDI registry to resolve them",
                cdi.name
            )));
        }
        let mut annotations: Vec<_> = adjust.annotations.into_iter().collect();
        annotations.sort();
        for (key, value) in annotations {
            let (key, value) = removal(key, value);
            if key.is_empty() {
                return Err(invalid("an annotation has an empty key".into()));
            }
            self.claim(plugin, "annotation", &key)?;
            self.annotations.push((key, value));
        }
        for kv in adjust.env {
            let (key, value) = removal(kv.key, kv.value);
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(format!("environment variable name {key:?}")));
            }
            self.claim(plugin, "environment variable", &key)?;
            self.env.push((key, value));
        }
        for mount in adjust.mounts {
            if let Some(destination) = mount.destination.strip_prefix('-') {
                self.unmounts.push(destination.to_string());
                continue;
            }
            if !mount.destination.starts_with('/') {
                return Err(invalid(format!(
                    "mount destination {:?} is not absolute",
                    mount.destination
                )));
            }
            self.claim(plugin, "mount", &mount.destination)?;
            self.mounts.push(mount);
        }
        if !adjust.args.is_empty() {
            self.claim(plugin, "args", "")?;
            self.args = Some(adjust.args);
        }
        if let Some(hooks) = adjust.hooks {
            self.merge_hooks(plugin, hooks)?;
        }
        for l in adjust.rlimits {
            let rlimit = json!({ "type": l.r#type, "hard": l.hard, "soft": l.soft });
            if serde_json::from_value::<oci_spec::runtime::PosixRlimit>(rlimit.clone()).is_err() {
                return Err(invalid(format!("rlimit type {:?}", l.r#type)));
            }
            if l.soft > l.hard {
                return Err(invalid(format!(
                    "rlimit {}: soft {} is above hard {}",
                    l.r#type, l.soft, l.hard
                )));
            }
            self.claim(plugin, "rlimit", &l.r#type)?;
            self.rlimits.retain(|r| r["type"] != rlimit["type"]);
            self.rlimits.push(rlimit);
        }
        if let Some(linux) = adjust.linux {
            self.merge_linux(plugin, linux)?;
        }
        Ok(())
    }

    fn merge_hooks(&mut self, plugin: &str, hooks: api::Hooks) -> Result<(), NriError> {
        let lists = [
            ("prestart", hooks.prestart),
            ("createRuntime", hooks.create_runtime),
            ("createContainer", hooks.create_container),
            ("startContainer", hooks.start_container),
            ("poststart", hooks.poststart),
            ("poststop", hooks.poststop),
        ];
        for (list, hooks) in lists {
            for hook in hooks {
                if !hook.path.starts_with('/') {
                    return Err(refuse(
                        plugin,
                        format!("{list} hook path {:?} is not absolute", hook.path),
                    ));
                }
                let mut oci = json!({ "path": hook.path });
                if !hook.args.is_empty() {
                    oci["args"] = json!(hook.args);
                }
                if !hook.env.is_empty() {
                    oci["env"] = json!(hook.env);
                }
                if let Some(timeout) = hook.timeout {
                    if timeout.value <= 0 {
                        return Err(refuse(
                            plugin,
                            format!("{list} hook {}: timeout {}", hook.path, timeout.value),
                        ));
                    }
                    oci["timeout"] = json!(timeout.value);
                }
                self.hooks.push((list, oci));
            }
        }
        Ok(())
    }

    fn merge_linux(
        &mut self,
        plugin: &str,
        linux: api::LinuxContainerAdjustment,
    ) -> Result<(), NriError> {
        let invalid = |why: String| refuse(plugin, why);
        let unsupported = [
            (
                !linux.cgroups_path.is_empty(),
                "linux.cgroups_path: a container lives in its pod's cgroup",
            ),
            (
                linux.io_priority.is_some(),
                "linux.io_priority: not supported",
            ),
            (
                linux.seccomp_policy.is_some(),
                "linux.seccomp_policy: the container's seccomp profile comes from its request",
            ),
            (
                !linux.namespaces.is_empty(),
                "linux.namespaces: the pod decides its containers' namespaces",
            ),
            (
                !linux.net_devices.is_empty(),
                "linux.net_devices: not supported",
            ),
            (linux.scheduler.is_some(), "linux.scheduler: not supported"),
            (linux.rdt.is_some(), "linux.rdt: berth has no RDT support"),
            (
                linux.memory_policy.is_some(),
                "linux.memory_policy: not supported",
            ),
        ];
        if let Some((_, why)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(invalid(why.to_string()));
        }
        for d in linux.devices {
            if let Some(path) = d.path.strip_prefix('-') {
                self.removed_devices.push(path.to_string());
                continue;
            }
            if !d.path.starts_with("/dev/") {
                return Err(invalid(format!(
                    "device path {:?} is not under /dev",
                    d.path
                )));
            }
            if !matches!(d.r#type.as_str(), "c" | "b" | "u" | "p") {
                return Err(invalid(format!("device {}: type {:?}", d.path, d.r#type)));
            }
            self.claim(plugin, "device", &d.path)?;
            let mut node = json!({
                "path": d.path, "type": d.r#type, "major": d.major, "minor": d.minor,
            });
            if let Some(mode) = d.file_mode {
                node["fileMode"] = json!(mode.value);
            }
            if let Some(uid) = d.uid {
                node["uid"] = json!(uid.value);
            }
            if let Some(gid) = d.gid {
                node["gid"] = json!(gid.value);
            }
            self.devices.retain(|n| n["path"] != node["path"]);
            self.devices.push(node);
            // As containerd: the node is allowed in the device cgroup (read, write,
            // and mknod for a block device); a pipe needs no rule.
            if matches!(d.r#type.as_str(), "c" | "b" | "u") {
                let typ = if d.r#type == "b" { "b" } else { "c" };
                let access = if typ == "b" { "rwm" } else { "rw" };
                let rule = device_rule(plugin, true, typ, Some(d.major), Some(d.minor), access)?;
                self.resources.rules.push(rule);
            }
        }
        if let Some(resources) = linux.resources {
            let owners = &mut self.owners;
            self.resources.merge(owners, plugin, "", resources)?;
        }
        if let Some(adj) = linux.oom_score_adj {
            if !(-1000..=1000).contains(&adj.value) {
                return Err(invalid(format!(
                    "oom_score_adj {} is outside -1000..=1000",
                    adj.value
                )));
            }
            self.claim(plugin, "oom_score_adj", "")?;
            self.oom_score_adj = Some(adj.value as i32);
        }
        let mut sysctl: Vec<_> = linux.sysctl.into_iter().collect();
        sysctl.sort();
        for (key, value) in sysctl {
            let (key, value) = removal(key, value);
            if key.is_empty() || key.contains('/') {
                return Err(invalid(format!("sysctl name {key:?}")));
            }
            self.claim(plugin, "sysctl", &key)?;
            self.sysctl.push((key, value));
        }
        Ok(())
    }

    /// Applies it to the container's spec; annotations also go to `annotations`
    /// (what the container's status reports). An `oom_score_adj` below the agent's
    /// own is raised to it (lowering needs CAP_SYS_RESOURCE, as for CRI's).
    pub fn apply(
        &self,
        spec: &mut Spec,
        annotations: &mut HashMap<String, String>,
        host: &HostFacts,
    ) -> Result<(), NriError> {
        let spec_annotations = spec.annotations_mut().get_or_insert_with(HashMap::new);
        for (key, value) in &self.annotations {
            match value {
                Some(value) => {
                    spec_annotations.insert(key.clone(), value.clone());
                    annotations.insert(key.clone(), value.clone());
                }
                None => {
                    spec_annotations.remove(key);
                    annotations.remove(key);
                }
            }
        }
        if let Some(process) = spec.process_mut() {
            let env = process.env_mut().get_or_insert_with(Vec::new);
            for (key, value) in &self.env {
                let prefix = format!("{key}=");
                env.retain(|e| !e.starts_with(&prefix));
                if let Some(value) = value {
                    env.push(format!("{key}={value}"));
                }
            }
            if let Some(args) = &self.args {
                process.set_args(Some(args.clone()));
            }
        }
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        for destination in &self.unmounts {
            mounts.retain(|m| m.destination() != &PathBuf::from(destination));
        }
        for added in &self.mounts {
            let destination = PathBuf::from(&added.destination);
            mounts.retain(|m| m.destination() != &destination);
            let mut mount = Mount::default();
            mount
                .set_destination(destination)
                .set_typ(Some(added.r#type.clone()).filter(|t| !t.is_empty()))
                .set_source(
                    Some(PathBuf::from(&added.source)).filter(|s| !s.as_os_str().is_empty()),
                )
                .set_options(Some(added.options.clone()).filter(|o| !o.is_empty()));
            mounts.push(mount);
        }
        if self.edits_json() {
            let mut value = serde_json::to_value(&*spec).map_err(merged)?;
            self.apply_json(&mut value, host);
            *spec = serde_json::from_value(value).map_err(merged)?;
        }
        Ok(())
    }

    /// The edits made on the spec as JSON (hooks, devices, resources, rlimits,
    /// oom_score_adj, sysctls).
    fn apply_json(&self, spec: &mut Value, host: &HostFacts) {
        let Some(spec) = spec.as_object_mut() else {
            return;
        };
        for (list, hook) in &self.hooks {
            array(object(spec, "hooks"), list).push(hook.clone());
        }
        if !self.rlimits.is_empty() {
            let rlimits = array(object(spec, "process"), "rlimits");
            for rlimit in &self.rlimits {
                rlimits.retain(|r| r["type"] != rlimit["type"]);
                rlimits.push(rlimit.clone());
            }
        }
        if let Some(adj) = self.oom_score_adj {
            let adj = json!(adj.max(host.oom_score_adj));
            object(spec, "process").insert("oomScoreAdj".into(), adj);
        }
        let linux = object(spec, "linux");
        if !self.devices.is_empty() || !self.removed_devices.is_empty() {
            let devices = array(linux, "devices");
            for path in &self.removed_devices {
                devices.retain(|d| d["path"] != json!(path));
            }
            for device in &self.devices {
                devices.retain(|d| d["path"] != device["path"]);
                devices.push(device.clone());
            }
        }
        if !self.resources.is_empty() {
            self.resources
                .apply(object(linux, "resources"), host.swap_controller);
        }
        if !self.sysctl.is_empty() {
            let sysctl = object(linux, "sysctl");
            for (key, value) in &self.sysctl {
                match value {
                    Some(value) => sysctl.insert(key.clone(), json!(value)),
                    None => sysctl.remove(key),
                };
            }
        }
    }
}

/// NRI marks a removal with a `-` before the key.
fn removal(key: String, value: String) -> (String, Option<String>) {
    match key.strip_prefix('-') {
        Some(key) => (key.to_string(), None),
        None => (key, Some(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjustment(annotation: &str, env: &str) -> api::ContainerAdjustment {
        api::ContainerAdjustment {
            annotations: [(annotation.to_string(), "v".to_string())].into(),
            env: vec![api::KeyValue {
                key: env.into(),
                value: "1".into(),
            }],
            mounts: vec![api::Mount {
                destination: "/nri".into(),
                r#type: "bind".into(),
                source: "/tmp".into(),
                options: vec!["rbind".into(), "ro".into()],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn adjustments_change_the_spec_and_conflicts_fail() {
        let mut merged = Adjustment::default();
        merged.merge("10-a", adjustment("a", "A")).unwrap();
        let mut spec = Spec::default();
        let mut annotations = HashMap::from([("kept".to_string(), "x".to_string())]);
        merged
            .apply(&mut spec, &mut annotations, &HostFacts::default())
            .unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"A=1".to_string()), "{env:?}");
        assert_eq!(annotations.get("a").map(String::as_str), Some("v"));
        assert!(annotations.contains_key("kept"));
        let mount = spec.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(mount.destination(), &PathBuf::from("/nri"));
        // A second plugin setting the same annotation conflicts.
        let err = merged.merge("20-b", adjustment("a", "B")).unwrap_err();
        assert!(err.to_string().contains("10-a"), "{err}");
        // A removal drops what the spec had.
        let mut removal = Adjustment::default();
        removal
            .merge(
                "30-c",
                api::ContainerAdjustment {
                    env: vec![api::KeyValue {
                        key: "-A".into(),
                        value: String::new(),
                    }],
                    mounts: vec![api::Mount {
                        destination: "-/nri".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .unwrap();
        removal
            .apply(&mut spec, &mut annotations, &HostFacts::default())
            .unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(!env.iter().any(|e| e.starts_with("A=")), "{env:?}");
        assert!(!spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == &PathBuf::from("/nri")));
        let bad = Adjustment::default().merge(
            "40-d",
            api::ContainerAdjustment {
                mounts: vec![api::Mount {
                    destination: "relative".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert!(bad.is_err());
    }

    fn int64(value: i64) -> Option<api::OptionalInt64> {
        Some(api::OptionalInt64 { value })
    }

    fn linux(linux: api::LinuxContainerAdjustment) -> api::ContainerAdjustment {
        api::ContainerAdjustment {
            linux: Some(linux),
            ..Default::default()
        }
    }

    fn memory_limit(limit: i64) -> api::ContainerAdjustment {
        linux(api::LinuxContainerAdjustment {
            resources: Some(api::LinuxResources {
                memory: Some(api::LinuxMemory {
                    limit: int64(limit),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn host(oom_score_adj: i32, swap_controller: bool) -> HostFacts {
        HostFacts {
            oom_score_adj,
            swap_controller,
            ..Default::default()
        }
    }

    /// A spec as the agent builds it: a process, CRI's limits, a device rule.
    fn built() -> Spec {
        serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "process": {
                "cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
                "oomScoreAdj": 0,
            },
            "linux": {
                "resources": {
                    "memory": {"limit": 1000, "swap": 1000},
                    "cpu": {"shares": 2},
                    "devices": [{"allow": false, "access": "rwm"}],
                },
                "sysctl": {"kernel.shm_rmid_forced": "1"},
            },
        }))
        .unwrap()
    }

    fn applied(merged: &Adjustment, host: &HostFacts) -> Spec {
        let mut spec = built();
        merged.apply(&mut spec, &mut HashMap::new(), host).unwrap();
        spec
    }

    #[test]
    fn resources_are_applied_field_by_field_and_swap_follows_the_limit() {
        let mut merged = Adjustment::default();
        merged.merge("10-a", memory_limit(64 << 20)).unwrap();
        merged
            .merge(
                "20-b",
                linux(api::LinuxContainerAdjustment {
                    resources: Some(api::LinuxResources {
                        cpu: Some(api::LinuxCpu {
                            quota: int64(50_000),
                            period: Some(api::OptionalUInt64 { value: 100_000 }),
                            cpus: "0".into(),
                            ..Default::default()
                        }),
                        pids: Some(api::LinuxPids { limit: 42 }),
                        hugepage_limits: vec![api::HugepageLimit {
                            page_size: "2MB".into(),
                            limit: 4 << 20,
                        }],
                        unified: [("memory.high".to_string(), "max".to_string())].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
            .unwrap();
        assert!(!merged.is_empty());
        let spec = applied(&merged, &host(0, true));
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let memory = r.memory().unwrap();
        assert_eq!(
            (memory.limit(), memory.swap()),
            (Some(64 << 20), Some(64 << 20))
        );
        let cpu = r.cpu().clone().unwrap();
        // What no plugin set stays as CRI asked.
        assert_eq!(cpu.shares(), Some(2));
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(r.pids().unwrap().limit(), 42);
        let huge = &r.hugepage_limits().clone().unwrap()[0];
        assert_eq!((huge.page_size().as_str(), huge.limit()), ("2MB", 4 << 20));
        assert_eq!(r.unified().clone().unwrap()["memory.high"], "max");
        // Without a swap controller the swap limit is left as it was.
        let spec = applied(&merged, &host(0, false));
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(r.memory().unwrap().swap(), Some(1000));
        // A second plugin setting the memory limit conflicts, naming the first.
        let err = merged.merge("30-c", memory_limit(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("memory \"limit\" is set by plugin 10-a"),
            "{err}"
        );
        // A field the first plugin did not set is free.
        let mut free = merged.clone();
        free.merge(
            "30-c",
            linux(api::LinuxContainerAdjustment {
                resources: Some(api::LinuxResources {
                    memory: Some(api::LinuxMemory {
                        reservation: int64(1 << 20),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .unwrap();
    }

    #[test]
    fn devices_are_added_with_their_cgroup_rule_and_removed_by_path() {
        let mut merged = Adjustment::default();
        let fuse = api::LinuxDevice {
            path: "/dev/fuse".into(),
            r#type: "c".into(),
            major: 10,
            minor: 229,
            file_mode: Some(api::OptionalFileMode { value: 0o666 }),
            ..Default::default()
        };
        merged
            .merge(
                "10-a",
                linux(api::LinuxContainerAdjustment {
                    devices: vec![fuse.clone()],
                    ..Default::default()
                }),
            )
            .unwrap();
        let spec = applied(&merged, &HostFacts::default());
        let linux_spec = spec.linux().as_ref().unwrap();
        let device = &linux_spec.devices().clone().unwrap()[0];
        assert_eq!(device.path(), &PathBuf::from("/dev/fuse"));
        assert_eq!((device.major(), device.minor()), (10, 229));
        assert_eq!(device.file_mode(), Some(0o666));
        let rules = linux_spec
            .resources()
            .clone()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        // The agent's deny-all stays first; the allow rule follows it.
        assert_eq!(rules.len(), 2);
        assert!(!rules[0].allow());
        let rule = &rules[1];
        assert!(rule.allow());
        assert_eq!((rule.major(), rule.minor()), (Some(10), Some(229)));
        assert_eq!(rule.access().as_deref(), Some("rw"));
        // Another plugin adding the same path conflicts; removing it drops the node.
        let again = merged.clone().merge(
            "20-b",
            linux(api::LinuxContainerAdjustment {
                devices: vec![fuse],
                ..Default::default()
            }),
        );
        assert!(again.unwrap_err().to_string().contains("10-a"));
        let mut removal = Adjustment::default();
        removal
            .merge(
                "20-b",
                linux(api::LinuxContainerAdjustment {
                    devices: vec![api::LinuxDevice {
                        path: "-/dev/fuse".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            )
            .unwrap();
        let mut spec = spec;
        removal
            .apply(&mut spec, &mut HashMap::new(), &HostFacts::default())
            .unwrap();
        assert!(spec
            .linux()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap()
            .is_empty());
        for (path, typ) in [("/etc/passwd", "c"), ("/dev/x", "x"), ("relative", "c")] {
            let bad = Adjustment::default().merge(
                "30-c",
                linux(api::LinuxContainerAdjustment {
                    devices: vec![api::LinuxDevice {
                        path: path.into(),
                        r#type: typ.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            );
            assert!(bad.is_err(), "{path} {typ}");
        }
    }

    #[test]
    fn hooks_are_appended_rlimits_replace_and_oom_score_adj_is_clamped() {
        let hook = |path: &str| api::Hook {
            path: path.into(),
            args: vec![path.into(), "x".into()],
            timeout: Some(api::OptionalInt { value: 5 }),
            ..Default::default()
        };
        let mut merged = Adjustment::default();
        for (plugin, path) in [("10-a", "/bin/a"), ("20-b", "/bin/b")] {
            merged
                .merge(
                    plugin,
                    api::ContainerAdjustment {
                        hooks: Some(api::Hooks {
                            create_runtime: vec![hook(path)],
                            poststop: vec![hook(path)],
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        merged
            .merge(
                "10-a",
                api::ContainerAdjustment {
                    rlimits: vec![api::PosixRlimit {
                        r#type: "RLIMIT_NOFILE".into(),
                        hard: 4096,
                        soft: 2048,
                    }],
                    linux: Some(api::LinuxContainerAdjustment {
                        oom_score_adj: Some(api::OptionalInt { value: -900 }),
                        sysctl: [
                            ("net.core.somaxconn".to_string(), "1024".to_string()),
                            ("-kernel.shm_rmid_forced".to_string(), String::new()),
                        ]
                        .into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .unwrap();
        let spec = applied(&merged, &host(-500, false));
        let hooks = spec.hooks().clone().unwrap();
        let paths = |hooks: &Option<Vec<oci_spec::runtime::Hook>>| -> Vec<PathBuf> {
            hooks.iter().flatten().map(|h| h.path().clone()).collect()
        };
        let both = vec![PathBuf::from("/bin/a"), PathBuf::from("/bin/b")];
        assert_eq!(paths(hooks.create_runtime()), both);
        assert_eq!(paths(hooks.poststop()), both);
        assert_eq!(
            hooks.create_runtime().clone().unwrap()[0].timeout(),
            Some(5)
        );
        let process = spec.process().clone().unwrap();
        let rlimits = process.rlimits().clone().unwrap();
        assert_eq!(rlimits.len(), 1);
        assert_eq!((rlimits[0].hard(), rlimits[0].soft()), (4096, 2048));
        // -900 is below the agent's own -500: raised to it.
        assert_eq!(process.oom_score_adj(), Some(-500));
        let sysctl = spec.linux().as_ref().unwrap().sysctl().clone().unwrap();
        assert_eq!(
            sysctl.get("net.core.somaxconn").map(String::as_str),
            Some("1024")
        );
        assert!(!sysctl.contains_key("kernel.shm_rmid_forced"), "{sysctl:?}");
        // Owned fields conflict; bad values are refused.
        let conflict = merged.clone().merge(
            "20-b",
            api::ContainerAdjustment {
                rlimits: vec![api::PosixRlimit {
                    r#type: "RLIMIT_NOFILE".into(),
                    hard: 1,
                    soft: 1,
                }],
                ..Default::default()
            },
        );
        assert!(conflict.unwrap_err().to_string().contains("rlimit"));
        let bad: [api::ContainerAdjustment; 4] = [
            api::ContainerAdjustment {
                rlimits: vec![api::PosixRlimit {
                    r#type: "RLIMIT_BOGUS".into(),
                    hard: 1,
                    soft: 1,
                }],
                ..Default::default()
            },
            api::ContainerAdjustment {
                rlimits: vec![api::PosixRlimit {
                    r#type: "RLIMIT_NPROC".into(),
                    hard: 1,
                    soft: 2,
                }],
                ..Default::default()
            },
            api::ContainerAdjustment {
                hooks: Some(api::Hooks {
                    prestart: vec![hook("relative")],
                    ..Default::default()
                }),
                ..Default::default()
            },
            linux(api::LinuxContainerAdjustment {
                oom_score_adj: Some(api::OptionalInt { value: 1001 }),
                ..Default::default()
            }),
        ];
        for adjust in bad {
            let err = Adjustment::default().merge("30-c", adjust.clone());
            assert!(err.is_err(), "{adjust:?}");
        }
    }

    #[test]
    fn what_berth_does_not_apply_is_refused_naming_the_plugin_and_field() {
        let unsupported = api::Unsupported {};
        let resources = |r: api::LinuxResources| {
            linux(api::LinuxContainerAdjustment {
                resources: Some(r),
                ..Default::default()
            })
        };
        let cases: Vec<(&str, api::ContainerAdjustment)> = vec![
            (
                "CDI_devices",
                api::ContainerAdjustment {
                    cdi_devices: vec![api::CdiDevice {
                        name: "vendor.com/gpu=0".into(),
                    }],
                    ..Default::default()
                },
            ),
            (
                "linux.cgroups_path",
                linux(api::LinuxContainerAdjustment {
                    cgroups_path: "/elsewhere".into(),
                    ..Default::default()
                }),
            ),
            (
                "linux.namespaces",
                linux(api::LinuxContainerAdjustment {
                    namespaces: vec![api::LinuxNamespace {
                        r#type: "network".into(),
                        path: "/proc/1/ns/net".into(),
                    }],
                    ..Default::default()
                }),
            ),
            (
                "linux.seccomp_policy",
                linux(api::LinuxContainerAdjustment {
                    seccomp_policy: Some(unsupported),
                    ..Default::default()
                }),
            ),
            (
                "linux.io_priority",
                linux(api::LinuxContainerAdjustment {
                    io_priority: Some(unsupported),
                    ..Default::default()
                }),
            ),
            (
                "linux.scheduler",
                linux(api::LinuxContainerAdjustment {
                    scheduler: Some(unsupported),
                    ..Default::default()
                }),
            ),
            (
                "linux.rdt",
                linux(api::LinuxContainerAdjustment {
                    rdt: Some(unsupported),
                    ..Default::default()
                }),
            ),
            (
                "linux.memory_policy",
                linux(api::LinuxContainerAdjustment {
                    memory_policy: Some(unsupported),
                    ..Default::default()
                }),
            ),
            (
                "linux.net_devices",
                linux(api::LinuxContainerAdjustment {
                    net_devices: [("eth1".to_string(), unsupported)].into(),
                    ..Default::default()
                }),
            ),
            (
                "blockio_class",
                resources(api::LinuxResources {
                    blockio_class: Some(api::OptionalString { value: "x".into() }),
                    ..Default::default()
                }),
            ),
            (
                "rdt_class",
                resources(api::LinuxResources {
                    rdt_class: Some(api::OptionalString { value: "x".into() }),
                    ..Default::default()
                }),
            ),
        ];
        for (field, adjust) in cases {
            let err = Adjustment::default()
                .merge("10-gpu", adjust)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("10-gpu") && err.contains(field),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn updates_merge_by_container_and_never_target_the_created_one() {
        let update = |id: &str, limit: i64, ignore_failure: bool| api::ContainerUpdate {
            container_id: id.into(),
            linux: Some(api::LinuxContainerUpdate {
                resources: Some(api::LinuxResources {
                    memory: Some(api::LinuxMemory {
                        limit: int64(limit),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ignore_failure,
        };
        let mut updates = Updates::default();
        updates
            .merge("10-a", Some("new"), vec![update("other", 1 << 20, true)])
            .unwrap();
        let err = updates
            .merge("20-b", Some("new"), vec![update("other", 2 << 20, true)])
            .unwrap_err();
        assert!(err.to_string().contains("10-a"), "{err}");
        let err = updates
            .merge("20-b", Some("new"), vec![update("new", 1, true)])
            .unwrap_err();
        assert!(err.to_string().contains("during its creation"), "{err}");
        updates
            .merge("20-b", Some("new"), vec![update("third", 3 << 20, false)])
            .unwrap();
        let (id, resources, ignore) = &updates.updates[0];
        assert_eq!((id.as_str(), *ignore), ("other", true));
        let oci = resources.to_oci(false).unwrap();
        assert_eq!(oci.memory().unwrap().limit(), Some(1 << 20));
        assert!(oci.cpu().is_none() && oci.memory().unwrap().swap().is_none());
        assert!(!updates.updates[1].2);
        // Applied to what an update asked: the plugin's field wins, the rest stays.
        let mut asked = resources_with_shares();
        resources.apply_to(&mut asked, true).unwrap();
        assert_eq!(asked.memory().unwrap().limit(), Some(1 << 20));
        assert_eq!(asked.memory().unwrap().swap(), Some(1 << 20));
        assert_eq!(asked.cpu().clone().unwrap().shares(), Some(512));
    }

    fn resources_with_shares() -> LinuxResources {
        serde_json::from_value(json!({"cpu": {"shares": 512}})).unwrap()
    }
}
