//! A container's processes start with every signal at its default action, whatever
//! the agent and its supervisors ignore: an ignored disposition survives exec.

use runtimes::types::{ExecRequest, NamespaceMode};
use runtimes::Runtime;

use crate::{container, remove_all, sandbox, Env};

/// The `SigIgn` and `SigBlk` lines of a process's status.
fn ignored_and_blocked(status: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(status)
        .lines()
        .filter(|l| l.starts_with("SigIgn:") || l.starts_with("SigBlk:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_start_with_default_signal_dispositions() {
    // As under nohup, or a shell without job control: the supervisors this test's
    // runtime spawns inherit these, and every Rust program ignores SIGPIPE too.
    for signal in [libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
        // SAFETY: SIG_IGN installs no handler.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("signals");
    rt.run_pod_sandbox(&pod, &sandbox("signals", NamespaceMode::Pod))
        .await
        .unwrap();
    let id = pod.with_role("app").unwrap();
    rt.create_container(&pod, &id, &container(&image, &["sleep", "1000"], None))
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    let clean = vec![
        "SigBlk: 0000000000000000".to_string(),
        "SigIgn: 0000000000000000".to_string(),
    ];
    // The container's own process (PID 1 of its PID namespace), then an exec'd one.
    for path in ["/proc/1/status", "/proc/self/status"] {
        let out = rt
            .exec_sync(
                &id,
                &ExecRequest {
                    cmd: vec!["cat".into(), path.into()],
                    timeout: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(ignored_and_blocked(&out.stdout), clean, "{path}");
    }
    remove_all(&env, &rt, &[&pod]).await;
}
