//! One streaming server on a local runtime, and crictl pointed at a CRI stub that
//! hands out its URLs: what every streaming test starts from.

use std::sync::Arc;

use berth::streaming::{StreamingConfig, StreamingServer};
use berth_proto::cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use berth_testkit::crictl::Crictl;
use runtimes::types::{self, ExecStreamRequest, StdioRequest};
use runtimes::ContainerId;
use tempfile::TempDir;
use tonic::Status;

use crate::cri_stub::{self, Stub};
use crate::local_runtime::LocalRuntime;

/// The CRI id of the one container the stub knows.
pub const CTR: &str = "ctr0";
/// The CRI id of its pod.
pub const POD: &str = "pod0";
/// Both transports crictl speaks.
pub const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

pub fn pod_id() -> ContainerId {
    ContainerId::new("web.default", runtimes::id::SANDBOX_ROLE, 0, "node").unwrap()
}

pub fn ctr_id() -> ContainerId {
    pod_id().with_role("app").unwrap()
}

/// A streaming server on a local runtime, and crictl pointed at a CRI stub that
/// hands out its URLs.
pub struct Harness {
    pub runtime: LocalRuntime,
    pub server: Arc<StreamingServer>,
    pub crictl: Crictl,
    cri: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with_config(StreamingConfig::default()).await
    }

    pub async fn with_config(config: StreamingConfig) -> Harness {
        // RUST_LOG=berth=debug shows the server's side of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let runtime = LocalRuntime::default();
        let server = StreamingServer::start(&config, Arc::new(runtime.clone()))
            .await
            .unwrap();
        let server = Arc::new(server);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let cri = cri_stub::serve(stub(server.clone()), &socket);
        let crictl = Crictl::new(dir.path(), &socket);
        Harness {
            runtime,
            server,
            crictl,
            cri,
            _dir: dir,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cri.abort();
    }
}

fn container(id: &str) -> Result<ContainerId, Status> {
    (id == CTR)
        .then(ctr_id)
        .ok_or_else(|| Status::not_found(format!("container {id} not found")))
}

fn stdio(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> StdioRequest {
    StdioRequest {
        tty,
        stdin,
        stdout,
        stderr,
    }
}

/// What the CRI verbs will do at integration: check the object, then ask the
/// streaming server for a URL.
fn stub(server: Arc<StreamingServer>) -> Stub {
    let (exec, attach, forward) = (server.clone(), server.clone(), server);
    Stub {
        exec: Arc::new(move |r: ExecRequest| {
            let server = exec.clone();
            Box::pin(async move {
                let stdio = stdio(r.tty, r.stdin, r.stdout, r.stderr);
                let request = ExecStreamRequest { cmd: r.cmd, stdio };
                let id = container(&r.container_id)?;
                server
                    .get_exec_url(&id, request)
                    .map_err(berth::status::from_runtime)
            })
        }),
        attach: Arc::new(move |r: AttachRequest| {
            let server = attach.clone();
            Box::pin(async move {
                let request = types::AttachRequest {
                    stdio: stdio(r.tty, r.stdin, r.stdout, r.stderr),
                };
                let id = container(&r.container_id)?;
                server
                    .get_attach_url(&id, request)
                    .map_err(berth::status::from_runtime)
            })
        }),
        port_forward: Arc::new(move |r: PortForwardRequest| {
            let server = forward.clone();
            Box::pin(async move {
                if r.pod_sandbox_id != POD {
                    return Err(Status::not_found(format!(
                        "pod sandbox {} not found",
                        r.pod_sandbox_id
                    )));
                }
                let ports = berth::streaming::validate_ports(&r.port)
                    .map_err(berth::status::from_runtime)?;
                server
                    .get_port_forward_url(&pod_id(), ports)
                    .map_err(berth::status::from_runtime)
            })
        }),
    }
}
