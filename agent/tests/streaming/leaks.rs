//! Nothing outlives a session: 200 execs through crictl (both transports, some
//! killed mid-run) leave the server process with the file descriptors, tokio tasks
//! and child processes it had before; a client that goes away ends its exec'd
//! process. The count is of this process's fds and children, which the other tests
//! of this binary open and close meanwhile: the test runs alone, in a process of its
//! own that [`two_hundred_execs_leak_nothing_alone`] starts.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{Harness, CTR, TRANSPORTS};

/// Runs [`two_hundred_execs_leak_nothing`] in a test process of its own, where nothing
/// else opens files or starts children.
#[test]
fn two_hundred_execs_leak_nothing_alone() {
    let child = "leaks::two_hundred_execs_leak_nothing";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{child} failed:\n{stdout}\n{stderr}");
    // It ran (a filter that matches nothing passes too).
    assert!(
        stdout.contains("1 passed"),
        "{child} did not run:\n{stdout}"
    );
    eprint!("{stderr}");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Live (not zombie) processes whose parent is this test process.
fn live_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        if fields[1] == me && fields[0] != "Z" {
            children.push(pid);
        }
    }
    children
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// Starts `crictl exec … sleep` and kills crictl once the sleep runs; returns its pid.
async fn exec_then_hang_up(h: &Harness, transport: &str) -> u32 {
    let before = h.runtime.exec_pids().len();
    let mut client = h
        .crictl
        .command(&[
            "exec",
            "-r",
            transport,
            CTR,
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert_eq!(line.unwrap().unwrap().as_deref(), Some("started"));
    let pid = h.runtime.exec_pids()[before];
    client.kill().await.unwrap();
    pid
}

/// Polls `check` for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "counts its process's fds: run alone by two_hundred_execs_leak_nothing_alone"]
async fn two_hundred_execs_leak_nothing() {
    let h = Harness::start().await;
    // Warm up: lazily made runtime threads and connections exist from here on.
    for transport in TRANSPORTS {
        let run = h
            .crictl
            .run(&["exec", "-r", transport, CTR, "true"], None)
            .await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let (fds, tasks) = (open_fds(), metrics.num_alive_tasks());
    assert!(live_children().is_empty(), "{:?}", live_children());

    for i in 0..200 {
        let transport = TRANSPORTS[i % 2];
        if i % 20 == 19 {
            let pid = exec_then_hang_up(&h, transport).await;
            eventually(
                &format!("exec {i} ({transport}): pid {pid} outlived its client"),
                || !alive(pid),
            )
            .await;
            continue;
        }
        let script = format!("echo {i}; echo e{i} >&2; read line; echo got-$line");
        let run = h
            .crictl
            .run(
                &["exec", "-i", "-r", transport, CTR, "sh", "-c", &script],
                Some(b"x\n"),
            )
            .await;
        assert_eq!(
            run.stdout,
            format!("{i}\ngot-x\n"),
            "exec {i} ({transport}): {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("e{i}")),
            "exec {i}: {}",
            run.stderr
        );
    }

    eventually(
        "file descriptors, tasks or processes outlived their sessions",
        || open_fds() == fds && metrics.num_alive_tasks() == tasks && live_children().is_empty(),
    )
    .await;
    eprintln!(
        "after 200 execs: {} fds (before: {fds}), {} tasks (before: {tasks}), no child left",
        open_fds(),
        metrics.num_alive_tasks()
    );
}
