//! ExecSync: output, exit codes, the container's user, and a timeout that kills only
//! the command.

use std::time::{Duration, Instant};

use runtimes::types::{ContainerState, ExecRequest, NamespaceMode};
use runtimes::{Error, Runtime};

use crate::{container, remove_all, sandbox, Env};

fn exec(cmd: &[&str], timeout: Option<Duration>) -> ExecRequest {
    ExecRequest {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_returns_output_and_its_timeout_spares_the_container() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("exec");
    rt.run_pod_sandbox(&pod, &sandbox("exec", NamespaceMode::Pod))
        .await
        .unwrap();
    let id = pod.with_role("app").unwrap();
    let mut spec = container(&image, &["sleep", "1000"], None);
    spec.user.uid = Some(1000);
    rt.create_container(&pod, &id, &spec).await.unwrap();

    let err = rt.exec_sync(&id, &exec(&["true"], None)).await.unwrap_err();
    assert!(
        matches!(err, Error::FailedPrecondition(_)),
        "exec before start: {err}"
    );
    rt.start_container(&id).await.unwrap();

    let out = rt
        .exec_sync(
            &id,
            &exec(&["sh", "-c", "echo hi; echo oops >&2; exit 7"], None),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"hi\n"[..], &b"oops\n"[..], 7)
    );
    let out = rt.exec_sync(&id, &exec(&["id", "-u"], None)).await.unwrap();
    assert_eq!(out.stdout, b"1000\n", "exec runs as the container's user");

    let started = Instant::now();
    let err = rt
        .exec_sync(
            &id,
            &exec(
                &["sh", "-c", "sleep 4321; echo never"],
                Some(Duration::from_secs(1)),
            ),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let status = rt.container_status(&id).await.unwrap();
    assert_eq!(
        status.state,
        ContainerState::Running,
        "the container survives the timeout"
    );
    let ps = rt
        .exec_sync(&id, &exec(&["ps", "-o", "args"], None))
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.contains("4321"),
        "the timed-out command and its children are gone:\n{ps}"
    );
    assert!(ps.contains("sleep 1000"), "{ps}");

    let err = rt
        .exec_sync(&id, &exec(&["/no/such/binary"], None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/binary"), "{err}");

    rt.stop_container(&id, Duration::ZERO).await.unwrap();
    let err = rt.exec_sync(&id, &exec(&["true"], None)).await.unwrap_err();
    assert!(
        matches!(err, Error::FailedPrecondition(_)),
        "exec after exit: {err}"
    );
    remove_all(&env, &rt, &[&pod]).await;
}
