//! Exec, Attach and PortForward go to the backend that owns the object.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::*;
use crate::mock::MockRuntime;
use crate::types::StdioRequest;

fn pod() -> ContainerId {
    ContainerId::new("web.default", crate::id::SANDBOX_ROLE, 0, "node-a").unwrap()
}

/// A composite whose primary is `first`; `second` serves the runtime handler `kata`.
fn composite(first: &MockRuntime, second: &MockRuntime) -> CompositeRuntime {
    CompositeRuntime::new(Arc::new(first.clone())).with_handler("kata", Arc::new(second.clone()))
}

async fn read_all(reader: Option<crate::types::StreamReader>) -> String {
    let mut out = String::new();
    reader.unwrap().read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn streaming_verbs_reach_the_pods_backend() {
    let first = MockRuntime::new("youki", &["linux"]);
    let second = MockRuntime::new("kata", &["linux"]).sharing_calls(&first);
    let rt = composite(&first, &second);
    let sandbox = pod();
    let spec = SandboxSpec {
        runtime_handler: "kata".into(),
        ..Default::default()
    };
    rt.run_pod_sandbox(&sandbox, &spec).await.unwrap();
    let ctr = sandbox.with_role("app").unwrap();
    rt.create_container(&sandbox, &ctr, &ContainerSpec::default())
        .await
        .unwrap();
    rt.start_container(&ctr).await.unwrap();

    let stdio = StdioRequest {
        stdout: true,
        ..Default::default()
    };
    let request = ExecStreamRequest {
        cmd: vec!["echo".into(), "hi".into()],
        stdio,
    };
    let session = rt.exec(&ctr, &request).await.unwrap();
    assert_eq!(read_all(session.stdout).await, "echo hi");
    assert_eq!(session.done.await.unwrap(), 0);
    let session = rt.attach(&ctr, &AttachRequest { stdio }).await.unwrap();
    assert_eq!(read_all(session.stdout).await, "");
    let mut conn = rt.port_forward(&sandbox, 8080).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "port 8080\n");

    let streaming: Vec<_> = first
        .call_summary()
        .into_iter()
        .filter(|(_, op, _)| matches!(*op, "exec" | "attach" | "port_forward"))
        .map(|(backend, op, _)| (backend, op))
        .collect();
    assert_eq!(
        streaming,
        [
            ("kata".to_string(), "exec"),
            ("kata".to_string(), "attach"),
            ("kata".to_string(), "port_forward"),
        ]
    );
}

#[tokio::test]
async fn streaming_to_unknown_objects_is_not_found() {
    let first = MockRuntime::new("youki", &["linux"]);
    let rt = composite(&first, &MockRuntime::new("kata", &["linux"]));
    let sandbox = pod();
    let ctr = sandbox.with_role("app").unwrap();
    let err = rt
        .exec(&ctr, &ExecStreamRequest::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = rt
        .attach(&ctr, &AttachRequest::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = rt.port_forward(&sandbox, 80).await.err().unwrap();
    assert!(err.is_not_found(), "{err}");
    assert!(first.calls().is_empty(), "no backend was bothered");
}
