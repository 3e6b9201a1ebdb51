//! CreateContainer: record the container (intent), have the pod's sandbox mount its
//! rootfs and image volumes and finish its spec (youki's own code: an image volume is
//! the same read-only overlay of berth's image store, its subPath resolved inside the
//! image, bound read-only), then create the container and its task in containerd
//! (runc shim v2), its stdout and stderr going to the log shim. A failure undoes all
//! of it; the image volumes go with the rootfs ([`Sandboxes::discard`]).
//!
//! [`Sandboxes::discard`]: crate::youki::Sandboxes::discard

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest,
};
use prost::Message;
use prost_types::Any;

use super::logger;
use super::object_id as key;
use super::records::{Phase, Record};
use super::{Containerd, NAME};
use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::types::ContainerSpec;
use crate::youki::stop_signal;

/// The type containerd files an OCI runtime spec under.
pub const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The annotation by which containerd's runc shim serves a group of containers from
/// one process.
pub const SHIM_GROUP: &str = "io.containerd.runc.v2.group";

/// The runc shim's type: the only runtime whose options berth knows.
const RUNC_V2: &str = "io.containerd.runc.v2";

/// `containerd.runc.v1.Options`: containerd-client does not generate the runc shim's
/// options (api/types/runc/options/oci.proto), so berth declares the fields it sets,
/// with the proto's tags, and sends them under the message's full name.
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
    /// The runc binary the shim runs (empty: `runc` in the shim's PATH).
    #[prost(string, tag = "6")]
    binary_name: String,
    /// runc's state directory. Its default, `/run/containerd/runc/<namespace>`, is
    /// shared by every containerd on the machine; berth keeps its tasks' state in a
    /// directory of its own.
    #[prost(string, tag = "7")]
    root: String,
}

/// The labels naming a container's pod and its CRI id, for whoever lists berth's
/// namespace.
const POD_LABEL: &str = "io.berth.pod";
const ID_LABEL: &str = "io.berth.container";

impl Containerd {
    /// CreateContainer.
    pub async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let signal = stop_signal(spec.stop_signal.as_deref())
            .map_err(|m| Error::InvalidSpec(format!("CreateContainer {id}: {m}")))?;
        let _guard = self.lock(id).await;
        if self
            .index()
            .get(id)
            .is_some_and(|r| r.phase == Phase::Removing)
        {
            // A removal whose teardown failed: finished first, or its error is this one.
            self.undo_create(id).await?;
        }
        if self.index().contains_key(id) {
            return Err(Error::AlreadyExists {
                kind: "container",
                id: id.to_string(),
            });
        }
        if !self.sandboxes.has_pod(sandbox) {
            return Err(Error::not_found("pod sandbox", sandbox));
        }
        let dir = self.sandboxes.container_dir(id);
        std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
        let mut record = Record {
            id: id.clone(),
            pod: sandbox.clone(),
            phase: Phase::Creating,
            created_at: SystemTime::now(),
            started_at: None,
            exit: None,
            log_path: spec.log_path.clone(),
            tty: spec.tty,
            stdin: spec.stdin,
            stdin_once: spec.stdin_once,
            stop_signal: signal,
            cgroup: String::new(),
            user: None,
            process: None,
        };
        self.save(&record)?;
        match self.make(&mut record, &dir, spec).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(cleanup) = self.undo_create(id).await {
                    tracing::warn!(container = %id, error = %cleanup, "undoing a failed create left work");
                }
                Err(e)
            }
        }
    }

    async fn make(&self, record: &mut Record, dir: &Path, spec: &ContainerSpec) -> Result<()> {
        let id = record.id.clone();
        let prepared = self.sandboxes.prepare(&record.pod, &id, spec).await?;
        let mut oci = prepared.oci;
        // A runc without `rro` passes it to mount(2) as data, which a bind mount
        // ignores: the mounts below would stay writable. Refused instead (kubelet
        // asks for it only where Status reports the feature).
        let rro = oci
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.options().iter().flatten().any(|option| option == "rro"));
        if let Some(mount) = rro.filter(|_| !self.recursive_read_only) {
            return Err(Error::InvalidSpec(format!(
                "CreateContainer {id}: the {NAME} handler has no recursive read-only mounts \
                 (mount {}): its runc does not list `rro` in `runc features`",
                mount.destination().display()
            )));
        }
        if let Some(process) = oci.process_mut() {
            process.set_terminal(Some(spec.tty));
        }
        // One runc shim serves every container of the pod, as containerd's CRI has it
        // (its shim groups by io.kubernetes.cri.sandbox-id): a shim a container made a
        // 1,000-container burst start a thousand shims, past any call deadline.
        let mut annotations = oci.annotations().clone().unwrap_or_default();
        annotations.insert(SHIM_GROUP.to_string(), key(&record.pod));
        oci.set_annotations(Some(annotations));
        record.cgroup = prepared.finished.cgroup.clone();
        record.user = Some(prepared.user);
        record.process = oci.process().clone();
        self.save(record)?;

        let k = key(&id);
        let value = serde_json::to_vec(&oci)
            .map_err(|e| Error::internal(NAME, format!("encoding the spec of {id}"), e))?;
        let container = Container {
            id: k.clone(),
            labels: HashMap::from([
                (POD_LABEL.to_string(), record.pod.to_string()),
                (ID_LABEL.to_string(), id.to_string()),
            ]),
            image: spec.image.clone(),
            runtime: Some(ContainerRuntime {
                name: self.config.runtime.clone(),
                options: None,
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE.to_string(),
                value,
            }),
            ..Default::default()
        };
        self.containers()
            .create(self.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(|s| self.fail(format!("creating container {id} in containerd"), &s))?;

        let task = if spec.stdin || spec.tty {
            self.fifo_io(record, dir).await?
        } else {
            let log = if record.log_path.is_some() {
                self.log_uri(dir)
            } else {
                String::new()
            };
            CreateTaskRequest {
                stdout: log.clone(),
                stderr: log,
                ..Default::default()
            }
        };
        let task = CreateTaskRequest {
            container_id: k,
            terminal: spec.tty,
            options: self.task_options(),
            ..task
        };
        self.tasks()
            .create(self.request(task))
            .await
            .map_err(|s| self.fail(format!("creating the task of {id}"), &s))?;
        record.phase = Phase::Created;
        self.save(record)
    }

    /// The stdio of a task with stdin or a terminal: FIFOs in `dir/io/`, served by a
    /// `berth log-shim --fifos` berth starts now. berth holds the output FIFOs open
    /// until the task started (see the log shim's doc).
    async fn fifo_io(&self, record: &Record, dir: &Path) -> Result<CreateTaskRequest> {
        let io = dir.join(logger::IO_DIR);
        let mut names = vec!["stdout"];
        if !record.tty {
            names.push("stderr");
        }
        if record.stdin {
            names.push("stdin");
        }
        let paths = super::exec::make_fifos(&io, &names)?;
        let mut held = Vec::new();
        for path in paths.iter().filter(|p| !p.ends_with("stdin")) {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .io_context(|| format!("opening {}", path.display()))?;
            held.push(file);
        }
        self.held().insert(record.id.clone(), held);
        logger::spawn(&self.exe, dir).await?;
        let path = |name: &str| {
            let p = io.join(name);
            if p.exists() {
                p.display().to_string()
            } else {
                String::new()
            }
        };
        Ok(CreateTaskRequest {
            stdin: path("stdin"),
            stdout: path("stdout"),
            stderr: path("stderr"),
            ..Default::default()
        })
    }

    /// The shim options of a task: runc's state directory, for the runc shim.
    fn task_options(&self) -> Option<Any> {
        (self.config.runtime == RUNC_V2).then(|| Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: RuncOptions {
                binary_name: self
                    .runc
                    .as_ref()
                    .map(|r| r.display().to_string())
                    .unwrap_or_default(),
                root: self.runc_root.display().to_string(),
            }
            .encode_to_vec(),
        })
    }

    /// The `binary://` URI under which the shim starts the log shim for the container
    /// whose directory is `dir` (it reads the log path from the record there).
    fn log_uri(&self, dir: &Path) -> String {
        format!(
            "binary://{}?{}={}",
            escape(&self.exe.display().to_string()),
            super::logger::ARG,
            escape(&dir.display().to_string())
        )
    }

    /// Undoes what a create made of `id`, in containerd and on the host; idempotent.
    pub(super) async fn undo_create(&self, id: &ContainerId) -> Result<()> {
        self.held().remove(id);
        let k = key(id);
        let mut errors = Vec::new();
        let deleted = self
            .tasks()
            .delete(self.request(DeleteTaskRequest {
                container_id: k.clone(),
            }))
            .await;
        if let Err(s) = deleted {
            if s.code() != tonic::Code::NotFound {
                errors.push(self.fail(format!("deleting the task of {id}"), &s));
            }
        }
        let deleted = self
            .containers()
            .delete(self.request(DeleteContainerRequest { id: k }))
            .await;
        if let Err(s) = deleted {
            if s.code() != tonic::Code::NotFound {
                errors.push(self.fail(format!("deleting container {id} from containerd"), &s));
            }
        }
        if errors.is_empty() {
            match self.sandboxes.discard(id).await {
                Ok(()) => {
                    self.index().remove(id);
                }
                Err(e) => errors.push(e),
            }
        }
        Error::combine(format!("removing container {id}"), errors)
    }
}

/// `text` escaped for a URI path or query value as Go's `url.Parse` reads it back.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '/' | '-' | '_' | '.' | '~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn uri_parts_survive_go_url_parsing() {
        assert_eq!(
            escape("/var/lib/berth/a b+c&d"),
            "/var/lib/berth/a%20b%2Bc%26d"
        );
        assert_eq!(escape("/x/é"), "/x/%C3%A9");
    }
}
