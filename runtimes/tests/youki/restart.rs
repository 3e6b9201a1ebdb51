//! Supervision that survives the agent: containers keep running while no agent is
//! attached (after a drop, or a SIGKILL of the agent's process), a new backend
//! reconnects and reads the exits it missed; a dead supervisor's containers are
//! buried; a create cut short by a crash is undone at the next open.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use runtimes::types::{ContainerState, ExecRequest, NamespaceMode, SandboxState};
use runtimes::youki::layout::key;
use runtimes::Runtime;

use crate::{
    container, log_text, memory, processes_mentioning, remove_all, sandbox, wait_status, Env,
};

/// The agent side in a process of its own, which the test SIGKILLs. Runs only when
/// `agent_dies_and_its_containers_live_on` starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the agent process of agent_dies_and_its_containers_live_on"]
async fn agent_child() {
    let description = std::env::var("BERTH_YOUKI_AGENT")
        .expect("run by agent_dies_and_its_containers_live_on, which sets the environment");
    let env = Env::adopt(&description);
    let (rt, image) = env.open().await;
    let pod = env.pod_id("survivor");
    rt.run_pod_sandbox(&pod, &sandbox("survivor", NamespaceMode::Node))
        .await
        .unwrap();
    let long = pod.with_role("long").unwrap();
    let short = pod.with_role("short").unwrap();
    let script = "echo started; while true; do sleep 1; done";
    rt.create_container(
        &pod,
        &long,
        &container(
            &image,
            &["sh", "-c", script],
            Some(env.root.join("long.log")),
        ),
    )
    .await
    .unwrap();
    let script = "sleep 3; echo bye; exit 5";
    rt.create_container(
        &pod,
        &short,
        &container(
            &image,
            &["sh", "-c", script],
            Some(env.root.join("short.log")),
        ),
    )
    .await
    .unwrap();
    rt.start_container(&long).await.unwrap();
    rt.start_container(&short).await.unwrap();
    let pid = rt.container_status(&long).await.unwrap().pid.unwrap();
    std::fs::write(env.root.join("agent-ready"), pid.to_string()).unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dies_and_its_containers_live_on() {
    let env = Env::new().await;
    let mut agent = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "restart::agent_child",
            "--ignored",
            "--nocapture",
        ])
        .env("BERTH_YOUKI_AGENT", env.describe())
        .spawn()
        .unwrap();
    let ready = env.root.join("agent-ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the agent child never got ready");
        assert!(agent.try_wait().unwrap().is_none(), "the agent child died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid: u32 = std::fs::read_to_string(&ready).unwrap().parse().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let killed_at = SystemTime::now();
    // The short container exits while no agent is attached.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let (rt, _) = env.open().await;
    let pod = env.pod_id("survivor");
    let long = pod.with_role("long").unwrap();
    let short = pod.with_role("short").unwrap();
    assert_eq!(
        rt.pod_sandbox_status(&pod).await.unwrap().state,
        SandboxState::Ready
    );
    let status = rt.container_status(&long).await.unwrap();
    assert_eq!(
        (status.state, status.pid),
        (ContainerState::Running, Some(pid))
    );
    let status = rt.container_status(&short).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, 5),
        "{status:?}"
    );
    let finished = status.finished_at.unwrap();
    assert!(
        finished > killed_at,
        "the real finish time, while no agent ran"
    );
    assert_eq!(log_text(&env.root.join("short.log")), "bye\n");
    let out = rt
        .exec_sync(
            &long,
            &ExecRequest {
                cmd: vec!["echo".into(), "still here".into()],
                timeout: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"still here\n");
    remove_all(&env, &rt, &[&pod]).await;
}

fn set_phase(record: &Path, phase: &str) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    v["phase"] = phase.into();
    std::fs::write(record, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_reconnects_and_undoes_what_a_crash_cut_short() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("kept");
    let half_pod = env.pod_id("half");
    rt.run_pod_sandbox(&pod, &sandbox("kept", NamespaceMode::Node))
        .await
        .unwrap();
    rt.run_pod_sandbox(&half_pod, &sandbox("half", NamespaceMode::Pod))
        .await
        .unwrap();
    let running = pod.with_role("running").unwrap();
    let half = pod.with_role("half").unwrap();
    rt.create_container(&pod, &running, &container(&image, &["sleep", "1000"], None))
        .await
        .unwrap();
    rt.start_container(&running).await.unwrap();
    rt.create_container(&pod, &half, &container(&image, &["sleep", "1000"], None))
        .await
        .unwrap();
    let pid = rt.container_status(&running).await.unwrap().pid;
    drop(rt);

    // As if the agent had crashed in the middle of these two creates.
    let layout = env.state_dir().join("youki");
    set_phase(
        &layout
            .join("containers")
            .join(key(&half))
            .join("container.json"),
        "Creating",
    );
    set_phase(
        &layout.join("pods").join(key(&half_pod)).join("pod.json"),
        "Creating",
    );

    let (rt, _) = env.open().await;
    let status = rt.container_status(&running).await.unwrap();
    assert_eq!((status.state, status.pid), (ContainerState::Running, pid));
    assert!(rt.container_status(&half).await.unwrap_err().is_not_found());
    assert!(rt
        .pod_sandbox_status(&half_pod)
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(
        berth_testkit::names(&layout.join("pods")),
        vec![key(&pod)],
        "the half-made pod is gone"
    );
    assert!(!env.run_dir().join("netns").join(key(&half_pod)).exists());
    remove_all(&env, &rt, &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_supervisors_containers_are_buried() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    // A descriptor the agent inherited (a lock, a socket from its service manager)
    // must not live on in the long-lived supervisor.
    let inherited = env.root.join("inherited");
    let inherited_file = std::fs::File::create(&inherited).unwrap();
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&inherited_file),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let pod = env.pod_id("orphans");
    let made = rt
        .run_pod_sandbox(&pod, &sandbox("orphans", NamespaceMode::Node))
        .await;
    drop(inherited_file);
    made.unwrap();
    // Supervisor memory, idle and with a running container (printed for the record).
    let shim_pid: i32 = std::fs::read_to_string(
        env.run_dir()
            .join("youki/pods")
            .join(key(&pod))
            .join("shim.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let held: Vec<_> = std::fs::read_dir(format!("/proc/{shim_pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .collect();
    assert!(
        !held.contains(&inherited),
        "the supervisor holds the agent's descriptors: {held:?}"
    );
    let (rss, anon, pss) = memory(shim_pid);
    eprintln!("idle supervisor: VmRSS {rss} KiB, RssAnon {anon} KiB, Pss {pss} KiB");
    let id = pod.with_role("app").unwrap();
    rt.create_container(&pod, &id, &container(&image, &["sleep", "1000"], None))
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    let pid = rt.container_status(&id).await.unwrap().pid.unwrap();

    let (rss, anon, pss) = memory(shim_pid);
    eprintln!("supervisor with one container: VmRSS {rss} KiB, RssAnon {anon} KiB, Pss {pss} KiB");
    assert!(anon < 4096, "the supervisor's anonymous memory: {anon} KiB");
    drop(rt);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (rt, _) = env.open().await;
    let status = wait_status(&rt, &id, Duration::from_secs(10), |s| {
        s.state == ContainerState::Exited
    })
    .await;
    assert_eq!(status.exit_code, 255);
    assert!(status.message.contains("unknown"), "{status:?}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "the container's process was killed"
    );
    assert_eq!(
        rt.pod_sandbox_status(&pod).await.unwrap().state,
        SandboxState::NotReady
    );
    assert_eq!(
        processes_mentioning(&env.root.to_string_lossy()),
        Vec::<String>::new()
    );
    remove_all(&env, &rt, &[&pod]).await;
}
