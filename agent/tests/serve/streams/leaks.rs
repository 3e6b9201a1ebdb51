//! 200 execs in a row leave nothing behind: not in berth (descriptors, threads), not
//! in the pod's supervisor (descriptors, threads, children), not in the container
//! (processes). Some run on a terminal, some get input, and some are abandoned by
//! their client mid-way: their processes must die with the session.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{children, eventually, fds_and_threads, processes, Node, PtyClient, SLEEPER, WAIT};

const EXECS: usize = 200;

#[tokio::test]
async fn two_hundred_execs_leave_nothing_behind() -> Result<()> {
    let mut node = Node::start().await?;
    let (_, id) = node.pod_with("leaks", &SLEEPER).await?;
    let supervisor = *node.supervisors().first().context("no supervisor")?;
    let berth = node.berth_pid();
    // Warm up: the first session starts what stays (the blocking pool, the streaming
    // server's first connection structures).
    for _ in 0..3 {
        let run = node.crictl.run(&["exec", &id, "true"], None).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (berth_fds, berth_threads) = fds_and_threads(berth);
    let (shim_fds, shim_threads) = fds_and_threads(supervisor);
    let shim_children = children(supervisor);
    assert_eq!(shim_threads, 1, "the supervisor is single-threaded");

    for i in 0..EXECS {
        match i % 20 {
            // On a terminal.
            0 => {
                let command = node.crictl.command(&["exec", "-it", &id, "sh"]);
                let mut client = PtyClient::spawn(command, 24, 80);
                client.type_text(&format!("echo tty-{i}-$((1))\r")).await;
                client.expect(0, &format!("tty-{i}-1"), WAIT).await;
                client.type_text("exit\r").await;
                assert_eq!(client.wait(WAIT).await.code(), Some(0));
            }
            // Abandoned: the client goes away while the command runs.
            1 => {
                let marker = format!("sleep {}", 1000 + i);
                let mut client = node
                    .crictl
                    .command(&["exec", &id, "sh", "-c", &marker])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()?;
                let started = eventually(WAIT, || {
                    processes().iter().any(|(_, c)| c.trim_end() == marker)
                })
                .await;
                assert!(started, "{marker} never started");
                client.kill().await?;
                let ended = eventually(WAIT, || {
                    !processes().iter().any(|(_, c)| c.trim_end() == marker)
                })
                .await;
                assert!(ended, "{marker} outlived its session");
            }
            // With input.
            2 => {
                let input = format!("input {i}\n");
                let run = node
                    .crictl
                    .run(&["exec", "-i", &id, "cat"], Some(input.as_bytes()))
                    .await;
                assert_eq!(run.stdout, input, "{}", run.stderr);
            }
            _ => {
                let script = format!("echo out-{i}; echo err-{i} >&2");
                let run = node
                    .crictl
                    .run(&["exec", &id, "sh", "-c", &script], None)
                    .await;
                assert_eq!(run.stdout, format!("out-{i}\n"), "{}", run.stderr);
                assert_eq!(run.code, Some(0), "{}", run.stderr);
            }
        }
    }

    // Everything goes back to where it was (tokio's idle blocking threads leave
    // after 10 s; nothing else may linger).
    let settled = eventually(Duration::from_secs(30), || {
        let (fds, threads) = fds_and_threads(berth);
        fds <= berth_fds
            && threads <= berth_threads
            && fds_and_threads(supervisor) == (shim_fds, shim_threads)
            && children(supervisor) == shim_children
    })
    .await;
    assert!(
        settled,
        "berth (fds, threads) {:?} was {:?}; supervisor {:?} was {:?}; its children {:?} were {:?}",
        fds_and_threads(berth),
        (berth_fds, berth_threads),
        fds_and_threads(supervisor),
        (shim_fds, shim_threads),
        children(supervisor),
        shim_children
    );
    // The container runs only its own process: no exec'd one is left in it.
    let run = node
        .crictl
        .run(&["exec", &id, "ps", "-o", "pid,args"], None)
        .await;
    let rest: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .filter(|l| !l.contains("ps -o"))
        .collect();
    assert_eq!(rest.len(), 1, "{}", run.stdout);
    assert!(rest[0].contains("sleep 3600"), "{}", run.stdout);
    Ok(())
}
