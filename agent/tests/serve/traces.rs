//! `telemetry.otlp`: berth exports its spans to an OTLP/gRPC receiver run here (the
//! collector's generated tonic server). Calls that carry a W3C `traceparent` are
//! children of the caller's span, and the work under them (backend, supervisor, CNI,
//! image pull) hangs under the call's server span. The delegate's spans join the node
//! agent's trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_proto::cri::v1::*;
use nix::sys::signal::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::world::{Client, World};

/// The caller's trace and span, as kubelet would send them.
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// One received span, flattened: ids in hex, attributes as strings.
#[derive(Debug, Clone)]
pub struct Got {
    pub service: String,
    pub instance: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    pub kind: i32,
    pub attributes: HashMap<String, String>,
}

/// An OTLP/gRPC trace receiver on a free loopback port, keeping every span.
#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

#[async_trait::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = attributes(
                &resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default(),
            );
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Got {
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    instance: resource
                        .get("service.instance.id")
                        .cloned()
                        .unwrap_or_default(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on a free port; the endpoint berth's config names.
    pub async fn start() -> Result<(Receiver, String)> {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Ok((receiver, endpoint))
    }

    pub fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until a span satisfies `found`.
    pub async fn wait_for(&self, what: &str, found: impl Fn(&Got) -> bool) -> Result<Got> {
        let start = Instant::now();
        loop {
            if let Some(span) = self.spans().into_iter().find(&found) {
                return Ok(span);
            }
            ensure!(
                start.elapsed() < Duration::from_secs(30),
                "no span {what} among {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The spans of `trace_id` as an indented tree, roots (spans whose parent was not
    /// received) first.
    pub fn tree(&self, trace_id: &str) -> String {
        let spans: Vec<Got> = self
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let mut out = String::new();
        fn walk(spans: &[Got], parent: &str, depth: usize, out: &mut String) {
            for span in spans.iter().filter(|s| s.parent == parent) {
                let mut ids: Vec<String> = ["pod_sandbox_id", "container_id", "berth_id"]
                    .iter()
                    .filter_map(|k| span.attributes.get(*k).map(|v| format!("{k}={v}")))
                    .collect();
                ids.truncate(2);
                let line = format!(
                    "{}{} [{}] {}",
                    "  ".repeat(depth),
                    span.name,
                    span.instance,
                    ids.join(" ")
                );
                out.push_str(line.trim_end());
                out.push('\n');
                walk(spans, &span.span_id, depth + 1, out);
            }
        }
        let roots: Vec<String> = spans
            .iter()
            .filter(|s| !ids.contains(&s.parent.as_str()))
            .map(|s| s.parent.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for root in roots {
            out.push_str(&format!("(parent {root})\n"));
            walk(&spans, &root, 1, &mut out);
        }
        out
    }
}

/// `request` with the caller's `traceparent`.
fn traced<T>(request: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
    );
    request
}

/// The server span of CRI `method` in the caller's trace.
pub async fn server_span(receiver: &Receiver, method: &str) -> Result<Got> {
    let name = format!("/runtime.v1.RuntimeService/{method}");
    receiver
        .wait_for(&name, |s| s.name == name && s.trace_id == TRACE_ID)
        .await
}

/// The spans below `parent` (at any depth).
pub fn below(spans: &[Got], parent: &Got) -> Vec<Got> {
    let mut found = Vec::new();
    let mut frontier = vec![parent.span_id.clone()];
    while let Some(id) = frontier.pop() {
        for span in spans.iter().filter(|s| s.parent == id) {
            frontier.push(span.span_id.clone());
            found.push(span.clone());
        }
    }
    found
}

/// RunPodSandbox, CreateContainer and StartContainer with the caller's context.
pub async fn run_traced(
    client: &mut Client,
    world: &World,
    handler: &str,
    name: &str,
) -> Result<(String, String)> {
    let pod_config = world.pod(name, &[]);
    let pod = client
        .run_pod_sandbox(traced(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.into(),
        }))
        .await?
        .into_inner()
        .pod_sandbox_id;
    let container = client
        .create_container(traced(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(world.container("app", &["sleep", "60"])),
            sandbox_config: Some(pod_config),
        }))
        .await?
        .into_inner()
        .container_id;
    client
        .start_container(traced(StartContainerRequest {
            container_id: container.clone(),
        }))
        .await?;
    Ok((pod, container))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_calls_are_server_spans_of_the_callers_trace_with_the_work_below() -> Result<()> {
    let (receiver, endpoint) = Receiver::start().await?;
    let world = World::with_config(&format!(
        "telemetry:\n  otlp:\n    endpoint: {endpoint}\n    resource_attributes: {{k8s.cluster.name: test}}\n"
    ))
    .await?;
    let node = format!("e2e-{}", world.tag);
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let (pod, container) = run_traced(&mut client, &world, "", "traced").await?;
    crate::world::stop_and_remove_pod(&mut client, &pod).await?;
    // SIGTERM: berth sends what its batch still holds before it exits.
    berth.signal(Signal::SIGTERM)?;
    berth.wait(Duration::from_secs(30)).await?;

    let run = server_span(&receiver, "RunPodSandbox").await?;
    let create = server_span(&receiver, "CreateContainer").await?;
    let start = server_span(&receiver, "StartContainer").await?;
    eprintln!("trace {TRACE_ID}:\n{}", receiver.tree(TRACE_ID));
    let spans = receiver.spans();
    for span in [&run, &create, &start] {
        ensure!(span.parent == PARENT_ID, "{span:?}");
        ensure!(span.kind == SpanKind::Server as i32, "{span:?}");
        ensure!(span.service == "berth" && span.instance == node, "{span:?}");
        ensure!(span.attributes.contains_key("berth_id"), "{span:?}");
    }
    ensure!(run.attributes["pod_sandbox_id"] == pod, "{run:?}");
    ensure!(run.attributes["name"].ends_with("/traced"), "{run:?}");
    ensure!(run.attributes["attempt"] == "0", "{run:?}");
    ensure!(create.attributes["container_id"] == container, "{create:?}");
    ensure!(create.attributes["pod_sandbox_id"] == pod, "{create:?}");
    ensure!(create.attributes["name"] == "app", "{create:?}");
    ensure!(start.attributes["container_id"] == container, "{start:?}");

    // Each call's backend span is its child, carrying the object's ContainerId; the
    // supervisor's and the CNI plugins' spans hang below it.
    let child = |parent: &Got, name: &str| {
        spans
            .iter()
            .find(|s| s.parent == parent.span_id && s.name == name)
            .cloned()
            .with_context(|| format!("no {name} under {parent:?}"))
    };
    let backend_run = child(&run, "youki RunPodSandbox")?;
    ensure!(backend_run.attributes["berth_id"] == run.attributes["berth_id"]);
    ensure!(
        below(&spans, &backend_run)
            .iter()
            .any(|s| s.name == "CNI ADD bridge" && s.attributes["cni.plugin"] == "bridge"),
        "no CNI ADD under {backend_run:?}"
    );
    let backend_create = child(&create, "youki CreateContainer")?;
    ensure!(backend_create.attributes["berth_id"] == create.attributes["berth_id"]);
    child(&backend_create, "supervisor Create")?;
    let backend_start = child(&start, "youki StartContainer")?;
    let supervisor = child(&backend_start, "supervisor Start")?;
    ensure!(supervisor.kind == SpanKind::Client as i32, "{supervisor:?}");
    for span in below(&spans, &run)
        .iter()
        .chain(&below(&spans, &create))
        .chain(&below(&spans, &start))
    {
        ensure!(span.trace_id == TRACE_ID, "{span:?}");
    }

    // The pull the world made (no traceparent): a trace of its own, under the call's
    // backend span, per layer below.
    let pull = receiver
        .wait_for("pull image", |s| s.name == "pull image")
        .await?;
    eprintln!(
        "trace {}:\n{}",
        pull.trace_id,
        receiver.tree(&pull.trace_id)
    );
    let backend_pull = spans
        .iter()
        .find(|s| s.span_id == pull.parent)
        .with_context(|| format!("no parent of {pull:?}"))?;
    ensure!(backend_pull.name == "youki PullImage", "{backend_pull:?}");
    ensure!(
        spans
            .iter()
            .any(|s| s.span_id == backend_pull.parent
                && s.name == "/runtime.v1.ImageService/PullImage"),
        "{backend_pull:?} is not under the PullImage call"
    );
    let layers = below(&spans, &pull);
    ensure!(
        layers.iter().any(|s| s.name == "download layer")
            && layers.iter().any(|s| s.name == "unpack layer"),
        "{layers:#?}"
    );
    Ok(())
}
