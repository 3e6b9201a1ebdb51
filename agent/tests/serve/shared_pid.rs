//! A pod sharing one PID namespace (`shareProcessNamespace`): its containers see each
//! other's processes, and PID 1 of the namespace, which every container can name, holds
//! no view of the host: not through `/proc/1/root`, `cwd`, `exe`, `fd`, `map_files` or
//! `ns`, not in its command line or environment, even to a container with
//! `CAP_SYS_PTRACE`. It reaps the namespace's orphans and shrugs off every signal a
//! container can send it.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_proto::cri::v1::*;

use crate::world::{create_and_start, remove_all_pods, run_pod, Client, World};

/// `sh -c script` in `container`: (exit code, stdout, stderr).
async fn sh(client: &mut Client, container: &str, script: &str) -> Result<(i32, String, String)> {
    let answer = client
        .exec_sync(ExecSyncRequest {
            container_id: container.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await?
        .into_inner();
    Ok((
        answer.exit_code,
        String::from_utf8_lossy(&answer.stdout).into_owned(),
        String::from_utf8_lossy(&answer.stderr).into_owned(),
    ))
}

/// `sh` that prints what it ran and saw (the test's output is the evidence).
async fn show(client: &mut Client, who: &str, container: &str, script: &str) -> Result<String> {
    let (code, out, err) = sh(client, container, script).await?;
    println!("[{who}] $ {script}\n  exit {code}\n  stdout: {out:?}\n  stderr: {err:?}");
    Ok(out)
}

/// A container of the shared namespace, with `add` capabilities on top of the defaults.
fn member(world: &World, name: &str, add: &[&str]) -> ContainerConfig {
    let mut config = world.container(name, &["sleep", "3600"]);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: add.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }),
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            // Root, as most images run: the test image's default user holds no
            // capability at all, which would prove nothing.
            run_as_user: Some(Int64Value { value: 0 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// The start time of PID 1 as `container` sees it: the same process keeps it.
async fn pid1_start_time(client: &mut Client, container: &str) -> Result<String> {
    let (code, out, err) = sh(client, container, "cut -d' ' -f22 /proc/1/stat").await?;
    ensure!(code == 0, "reading /proc/1/stat: {err}");
    Ok(out.trim().to_string())
}

/// Zombies of the namespace as the container sees them (pid and name of each).
async fn zombies(client: &mut Client, container: &str) -> Result<String> {
    let script = "for s in /proc/[0-9]*/stat; do read -r line < $s 2>/dev/null || continue; \
                  case \"$line\" in *') Z '*) echo \"$line\";; esac; done";
    Ok(sh(client, container, script).await?.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_1_of_a_shared_pid_namespace_holds_no_view_of_the_host() -> Result<()> {
    let world = World::new().await?;
    // Every violation is collected (and printed) so one run shows all of them.
    let mut violations: Vec<String> = Vec::new();
    macro_rules! expect {
        ($cond:expr, $($why:tt)+) => {
            if !$cond {
                let why = format!($($why)+);
                println!("VIOLATION: {why}");
                violations.push(why);
            }
        };
    }
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;

    // A host file only the host can read: its content must never come back.
    let secret_dir = world.dir().join("host-secret");
    std::fs::create_dir_all(&secret_dir)?;
    let secret_file = secret_dir.join("secret.txt");
    let secret = format!("host-only-{}", world.tag);
    std::fs::write(&secret_file, &secret)?;
    let berth_exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_berth"))?;
    let host_root: Vec<String> = std::fs::read_dir("/")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();

    let mut pod_config = world.pod("sharedpid", &[]);
    pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .context("namespace options")?
        .pid = NamespaceMode::Pod as i32;
    let pod = run_pod(&mut client, &pod_config).await?;
    let tracer = member(&world, "tracer", &["SYS_PTRACE"]);
    let tracer = create_and_start(&mut client, &pod, &pod_config, &tracer).await?;
    let plain = member(&world, "plain", &[]);
    let plain = create_and_start(&mut client, &pod, &pod_config, &plain).await?;

    let written = secret_dir.join("written-from-pod");
    for (who, id) in [("SYS_PTRACE", &tracer), ("default caps", &plain)] {
        // Who is looking: its ids, capabilities and user namespace.
        let script =
            "id; grep -E '^(Uid|Cap|NoNewPrivs|Seccomp)' /proc/self/status; cat /proc/self/uid_map";
        let out = show(&mut client, who, id, script).await?;
        let effective = out
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .context("no CapEff")?;
        // CAP_SYS_PTRACE is bit 19: the attacker must really hold it.
        ensure!(
            (effective & (1 << 19) != 0) == (who == "SYS_PTRACE") && out.contains("uid=0("),
            "[{who}] is not root with exactly the asked capabilities: {out}"
        );
        let out = show(&mut client, who, id, "tr '\\0' ' ' < /proc/1/cmdline").await?;
        expect!(
            !out.contains(&*berth_exe.to_string_lossy())
                && !out.contains("berth shim")
                && !out.contains(&*world.dir().to_string_lossy())
                && !out.contains('/'),
            "[{who}] /proc/1/cmdline names a host path: {out:?}"
        );
        let out = show(&mut client, who, id, "tr '\\0' '\\n' < /proc/1/environ").await?;
        expect!(
            !out.contains('/'),
            "[{who}] /proc/1/environ names a host path: {out:?}"
        );
        let out = show(&mut client, who, id, "ls -A /proc/1/root/").await?;
        let leaked: Vec<&str> = out
            .split_whitespace()
            .filter(|e| host_root.iter().any(|h| h == e))
            .collect();
        expect!(
            out.trim().is_empty(),
            "[{who}] /proc/1/root/ lists {leaked:?}: {out:?}"
        );
        for through in ["root", "cwd"] {
            let script = format!("cat /proc/1/{through}{}", secret_file.display());
            let out = show(&mut client, who, id, &script).await?;
            expect!(
                !out.contains(&secret),
                "[{who}] read a host file through /proc/1/{through}"
            );
            let out = show(&mut client, who, id, &format!("ls -A /proc/1/{through}/")).await?;
            expect!(out.trim().is_empty(), "[{who}] /proc/1/{through}/: {out:?}");
        }
        let out = show(&mut client, who, id, "head -c 200 /proc/1/root/etc/shadow").await?;
        expect!(
            !out.contains("root:"),
            "[{who}] read the host's /etc/shadow"
        );
        let script = format!("echo pwned > /proc/1/root{}", written.display());
        show(&mut client, who, id, &script).await?;
        if written.exists() {
            let _ = std::fs::remove_file(&written);
            expect!(false, "[{who}] wrote {} on the host", written.display());
        }
        // The executable PID 1 runs is no host file: not berth's binary, not writable.
        let out = show(&mut client, who, id, "readlink /proc/1/exe").await?;
        expect!(
            !out.contains(&*berth_exe.to_string_lossy()),
            "[{who}] /proc/1/exe leads to a host file: {out:?}"
        );
        let (code, out, _) = sh(&mut client, id, "wc -c < /proc/1/exe").await?;
        let size = std::fs::metadata(&berth_exe)?.len().to_string();
        expect!(
            code != 0 || out.trim() != size,
            "[{who}] /proc/1/exe is berth's binary ({size} bytes)"
        );
        let script = "echo x >> /proc/1/exe && echo WROTE";
        let out = show(&mut client, who, id, script).await?;
        expect!(!out.contains("WROTE"), "[{who}] wrote to /proc/1/exe");
        // No descriptor, no mapped file of the host.
        let script =
            "ls /proc/1/fd/; for f in /proc/1/fd/* /proc/1/map_files/*; do readlink $f; done";
        let out = show(&mut client, who, id, script).await?;
        for line in out.lines().filter(|l| l.starts_with('/')) {
            expect!(
                line.starts_with("/memfd:"),
                "[{who}] PID 1 holds the host file {line}"
            );
        }
        // Its namespaces are none of the host's.
        for ns in ["mnt", "net", "ipc", "uts", "cgroup"] {
            let host = std::fs::read_link(format!("/proc/self/ns/{ns}"))?;
            let out = show(&mut client, who, id, &format!("readlink /proc/1/ns/{ns}")).await?;
            expect!(
                out.trim() != host.to_string_lossy(),
                "[{who}] PID 1 is in the host's {ns} namespace {out:?}"
            );
        }
    }

    // Sharing works: each container sees the other's processes.
    let out = show(&mut client, "default caps", &plain, "ps -o pid,args").await?;
    expect!(
        out.lines().filter(|l| l.contains("sleep 3600")).count() >= 2,
        "the other container's sleep is not visible: {out}"
    );

    // An orphan that exits is reaped by PID 1 (the shell exits before its child).
    show(
        &mut client,
        "default caps",
        &plain,
        "(sleep 1 &) ; sh -c 'sleep 1 & exit 0'",
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        let left = zombies(&mut client, &plain).await?;
        if left.trim().is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("zombies are not reaped: {left}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Whatever a container sends PID 1 changes nothing.
    let before = pid1_start_time(&mut client, &tracer).await?;
    for signal in [
        "SEGV", "TERM", "INT", "HUP", "ABRT", "USR1", "CHLD", "STOP", "KILL",
    ] {
        for id in [&tracer, &plain] {
            show(
                &mut client,
                "signal",
                id,
                &format!("kill -{signal} 1; echo sent $?"),
            )
            .await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, state, _) = sh(&mut client, &plain, "cut -d' ' -f3 /proc/1/stat").await?;
    expect!(
        state.trim() == "S",
        "PID 1 is no longer sleeping: {state:?}"
    );
    let after = pid1_start_time(&mut client, &tracer).await?;
    expect!(after == before, "PID 1 was replaced ({before} -> {after})");
    show(&mut client, "default caps", &plain, "(sleep 1 &) ; true").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = zombies(&mut client, &plain).await?;
    expect!(left.trim().is_empty(), "zombies after the signals: {left}");
    // The pod still works: a new exec.
    let (code, out, _) = sh(&mut client, &tracer, "echo alive").await?;
    assert_eq!((code, out.trim()), (0, "alive"));
    remove_all_pods(&mut client).await?;
    ensure!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    Ok(())
}
