//! Containers: CRI logs, exit codes and reasons, users and groups, stats, resources,
//! log reopening, and bad requests that must leave nothing behind.

use std::time::{Duration, SystemTime};

use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder, Mount, MountBuilder};
use runtimes::types::{ContainerState, NamespaceMode, SupplementalGroupsPolicy, UserRequest};
use runtimes::{Error, Runtime};

use crate::{container, log_records, log_text, remove_all, sandbox, wait_exited, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_to_the_cri_log_and_exits_are_reported() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("logs");
    rt.run_pod_sandbox(&pod, &sandbox("logs", NamespaceMode::Node))
        .await
        .unwrap();
    let logs = env.root.join("logs");

    let failing = pod.with_role("failing").unwrap();
    let script = "echo out; echo err >&2; printf partial; exit 3";
    let log = logs.join("failing.log");
    rt.create_container(
        &pod,
        &failing,
        &container(&image, &["sh", "-c", script], Some(log.clone())),
    )
    .await
    .unwrap();
    let created = rt.container_status(&failing).await.unwrap();
    assert_eq!(created.state, ContainerState::Created);
    assert!(created.pid.is_some() && created.started_at.is_none());
    let before = SystemTime::now();
    rt.start_container(&failing).await.unwrap();
    let status = wait_exited(&rt, &failing).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    let (started, finished) = (status.started_at.unwrap(), status.finished_at.unwrap());
    assert!(before <= started && started <= finished && finished <= SystemTime::now());
    let mut records = log_records(&log);
    records.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        records,
        vec![
            ("stderr".into(), "F".into(), "err".into()),
            ("stdout".into(), "F".into(), "out".into()),
            ("stdout".into(), "P".into(), "partial".into()),
        ]
    );

    let fine = pod.with_role("fine").unwrap();
    let long = "x".repeat(40_000);
    let script = format!("echo {long}; exit 0");
    let log = logs.join("fine.log");
    rt.create_container(
        &pod,
        &fine,
        &container(&image, &["sh", "-c", &script], Some(log.clone())),
    )
    .await
    .unwrap();
    rt.start_container(&fine).await.unwrap();
    let status = wait_exited(&rt, &fine).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    let shape: Vec<(String, usize)> = log_records(&log)
        .into_iter()
        .map(|(_, tag, text)| (tag, text.len()))
        .collect();
    assert_eq!(
        shape,
        vec![("P".into(), 16384), ("P".into(), 16384), ("F".into(), 7232)]
    );
    remove_all(&env, &rt, &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups_come_from_the_image() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("users");
    rt.run_pod_sandbox(&pod, &sandbox("users", NamespaceMode::Node))
        .await
        .unwrap();
    let cases = [
        (
            "merge",
            UserRequest {
                uid: Some(1000),
                supplemental_groups: vec![1234],
                ..Default::default()
            },
            "1000 1000 1000 50000 1234",
        ),
        (
            "strict",
            UserRequest {
                uid: Some(1000),
                supplemental_groups: vec![1234],
                policy: SupplementalGroupsPolicy::Strict,
                ..Default::default()
            },
            "1000 1000 1000 1234",
        ),
        (
            "named",
            UserRequest {
                username: Some("nobody".into()),
                ..Default::default()
            },
            "65534 65534 65534",
        ),
    ];
    for (role, user, expected) in cases {
        let id = pod.with_role(role).unwrap();
        let log = env.root.join(format!("{role}.log"));
        let mut spec = container(
            &image,
            &["sh", "-c", "echo $(id -u) $(id -g) $(id -G)"],
            Some(log.clone()),
        );
        spec.user = user;
        rt.create_container(&pod, &id, &spec).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let status = wait_exited(&rt, &id).await;
        assert_eq!(status.exit_code, 0, "{role}");
        // `expected`: uid, gid, then the groups in the order they were resolved; the
        // kernel keeps the groups sorted, so `id -G` prints them sorted.
        let want: Vec<u32> = expected
            .split(' ')
            .skip(2)
            .map(|g| g.parse().unwrap())
            .collect();
        let mut sorted = want.clone();
        sorted.sort();
        let printed: Vec<String> = expected
            .split(' ')
            .take(2)
            .map(String::from)
            .chain(sorted.iter().map(u32::to_string))
            .collect();
        assert_eq!(log_text(&log).trim(), printed.join(" "), "{role}");
        assert_eq!(status.user.unwrap().supplemental_groups, want, "{role}");
    }
    let ghost = pod.with_role("ghost").unwrap();
    let mut spec = container(&image, &["true"], None);
    spec.user.username = Some("ghost".into());
    let err = rt.create_container(&pod, &ghost, &spec).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("ghost"), "{err}");
    remove_all(&env, &rt, &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_resources_oom_and_log_reopening() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("stats");
    rt.run_pod_sandbox(&pod, &sandbox("stats", NamespaceMode::Pod))
        .await
        .unwrap();

    let busy = pod.with_role("busy").unwrap();
    let log = env.root.join("busy.log");
    let script = "dd if=/dev/zero of=/tmp/blob bs=1k count=2048 2>/dev/null; i=0; \
                  while true; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    rt.create_container(
        &pod,
        &busy,
        &container(&image, &["sh", "-c", script], Some(log.clone())),
    )
    .await
    .unwrap();
    rt.start_container(&busy).await.unwrap();
    crate::wait_status(&rt, &busy, Duration::from_secs(10), |_| {
        log_text(&log).contains("tick 2")
    })
    .await;
    let stats = rt.container_stats(&busy).await.unwrap();
    assert!(stats.cpu_usage_ns > 0, "{stats:?}");
    assert!(
        stats.memory.usage > 0 && stats.memory.working_set <= stats.memory.usage,
        "{stats:?}"
    );
    assert!(stats.writable_layer_bytes >= 2048 * 1024, "{stats:?}");
    assert!(stats.writable_layer_inodes >= 2, "{stats:?}");
    let pod_stats = rt.pod_sandbox_stats(&pod).await.unwrap();
    assert!(
        pod_stats.processes >= 1 && pod_stats.cpu_usage_ns >= stats.cpu_usage_ns / 2,
        "{pod_stats:?}"
    );
    let net = pod_stats.network.expect("the pod's interface counters");
    assert_eq!(net.interface, "eth0");

    // UpdateContainerResources writes the cgroup; nothing forks.
    let limit = 96 * 1024 * 1024;
    let resources = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(limit).build().unwrap())
        .build()
        .unwrap();
    rt.update_container_resources(&busy, &resources)
        .await
        .unwrap();
    let memory_dir = crate::cgroup_dirs(&format!("{}/", env.cgroup_parent()))
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory"))
        .expect("the memory cgroup of the test");
    let limits: Vec<String> = walk(&memory_dir)
        .into_iter()
        .filter_map(|d| std::fs::read_to_string(d.join("memory.limit_in_bytes")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    assert!(limits.contains(&limit.to_string()), "{limits:?}");

    // ReopenContainerLog: kubelet renamed the file; output goes to a new one.
    std::fs::rename(&log, env.root.join("busy.log.1")).unwrap();
    rt.reopen_container_log(&busy).await.unwrap();
    crate::wait_status(&rt, &busy, Duration::from_secs(10), |_| {
        log_text(&log).contains("tick")
    })
    .await;

    // A container over its memory limit is OOM-killed, and says so.
    let hog = pod.with_role("hog").unwrap();
    let mut spec = container(
        &image,
        &[
            "dd",
            "if=/dev/zero",
            "of=/dev/shm/fill",
            "bs=1M",
            "count=60",
        ],
        None,
    );
    spec.oci.linux_mut().as_mut().unwrap().set_resources(Some(
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(16 * 1024 * 1024)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    ));
    rt.create_container(&pod, &hog, &spec).await.unwrap();
    rt.start_container(&hog).await.unwrap();
    let status = wait_exited(&rt, &hog).await;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled"),
        "{status:?}"
    );

    rt.stop_container(&busy, Duration::ZERO).await.unwrap();
    remove_all(&env, &rt, &[&pod]).await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// A private recursive bind mount of `source` at `destination`.
pub fn bind(source: &str, destination: &str) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string(), "rprivate".to_string()])
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_leave_nothing() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("bad");
    let missing_pod = env.pod_id("nopod");
    let id = pod.with_role("app").unwrap();

    let err = rt
        .create_container(&missing_pod, &id, &container(&image, &["true"], None))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    rt.run_pod_sandbox(&pod, &sandbox("bad", NamespaceMode::Node))
        .await
        .unwrap();
    let err = rt
        .run_pod_sandbox(&pod, &sandbox("bad", NamespaceMode::Node))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

    let mut no_image = container(&image, &["true"], None);
    no_image.image_id = "sha256:".to_string() + &"0".repeat(64);
    let err = rt.create_container(&pod, &id, &no_image).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let mut bad_mount = container(&image, &["true"], None);
    bad_mount
        .oci
        .mounts_mut()
        .as_mut()
        .unwrap()
        .push(bind("/nonexistent/berth-test", "/data"));
    let err = rt
        .create_container(&pod, &id, &bad_mount)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidSpec(_)) && err.to_string().contains("/nonexistent"),
        "{err}"
    );

    let err = rt
        .create_container(&pod, &id, &container(&image, &["/no/such/binary"], None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/binary"), "{err}");

    // Nothing of the failed creates is left; a good create then works.
    assert_eq!(
        berth_testkit::names(&env.state_dir().join("youki/containers")),
        Vec::<String>::new()
    );
    rt.create_container(&pod, &id, &container(&image, &["true"], None))
        .await
        .unwrap();
    let err = rt
        .create_container(&pod, &id, &container(&image, &["true"], None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

    // Missing objects: status is NotFound, teardown succeeds.
    let ghost = pod.with_role("ghost").unwrap();
    assert!(rt
        .container_status(&ghost)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(rt
        .pod_sandbox_status(&missing_pod)
        .await
        .unwrap_err()
        .is_not_found());
    rt.stop_container(&ghost, Duration::from_secs(1))
        .await
        .unwrap();
    rt.remove_container(&ghost).await.unwrap();
    rt.stop_pod_sandbox(&missing_pod).await.unwrap();
    rt.remove_pod_sandbox(&missing_pod).await.unwrap();

    remove_all(&env, &rt, &[&pod]).await;
    // Twice: idempotent.
    remove_all(&env, &rt, &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_applies_with_and_without_no_new_privs() {
    use oci_spec::runtime::{
        Capability, LinuxCapabilitiesBuilder, LinuxSeccompAction, LinuxSeccompBuilder,
        LinuxSyscallBuilder,
    };

    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("seccomp");
    rt.run_pod_sandbox(&pod, &sandbox("seccomp", NamespaceMode::Pod))
        .await
        .unwrap();
    // Everything allowed but sethostname, which fails with EPERM.
    let filter = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![LinuxSyscallBuilder::default()
            .names(vec!["sethostname".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(libc::EPERM as u32)
            .build()
            .unwrap()])
        .build()
        .unwrap();
    let cases = [
        ("nnp", Some(true), true),
        ("privs", Some(false), true),
        ("unset", None, true),
        ("plain", Some(false), false),
    ];
    for (role, no_new_privs, sys_admin) in cases {
        let id = pod.with_role(role).unwrap();
        let log = env.root.join(format!("{role}.log"));
        let script = "grep Seccomp: /proc/self/status; hostname other || echo refused; sleep 1000";
        let mut spec = container(&image, &["sh", "-c", script], Some(log.clone()));
        // CAP_SYS_ADMIN, so only the filter stands between the process and sethostname.
        let mut caps: std::collections::HashSet<Capability> = [Capability::Chown].into();
        if sys_admin {
            caps.insert(Capability::SysAdmin);
        }
        let mut capabilities = LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .build()
            .unwrap();
        capabilities.set_inheritable(None);
        capabilities.set_ambient(None);
        let process = spec.oci.process_mut().as_mut().unwrap();
        process.set_no_new_privileges(no_new_privs);
        process.set_capabilities(Some(capabilities));
        spec.oci
            .linux_mut()
            .as_mut()
            .unwrap()
            .set_seccomp(Some(filter.clone()));
        rt.create_container(&pod, &id, &spec).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let out = crate::wait_status(&rt, &id, Duration::from_secs(10), |_| {
            log_text(&log).contains("refused")
        })
        .await;
        assert_eq!(out.state, ContainerState::Running, "{role}");
        assert!(
            log_text(&log).contains("Seccomp:\t2"),
            "{role}: {}",
            log_text(&log)
        );
        // Exec'd processes run under the container's filter too.
        let exec = |cmd: &[&str]| runtimes::types::ExecRequest {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: None,
        };
        let out = rt
            .exec_sync(&id, &exec(&["grep", "Seccomp:", "/proc/self/status"]))
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Seccomp:\t2\n",
            "{role}"
        );
        let out = rt
            .exec_sync(&id, &exec(&["hostname", "other"]))
            .await
            .unwrap();
        assert_ne!(
            out.exit_code, 0,
            "{role}: sethostname is refused in an exec too"
        );
        rt.stop_container(&id, Duration::ZERO).await.unwrap();
    }
    remove_all(&env, &rt, &[&pod]).await;
}
