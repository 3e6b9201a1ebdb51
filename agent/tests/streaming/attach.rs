//! `crictl attach`: several clients on one running process; detaching (the client
//! going away) leaves the process running.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ctr_id, Harness, CTR, TRANSPORTS};

const WAIT: Duration = Duration::from_secs(20);

/// Reads `stdout` until it contains `needle`.
async fn read_until(stdout: &mut tokio::process::ChildStdout, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "stdout ended before {needle:?}: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn clients_attach_and_detach_while_the_process_runs() {
    let h = Harness::start().await;
    let mut pid = None;
    for transport in TRANSPORTS.iter().chain(TRANSPORTS.iter()) {
        let mut client = h
            .crictl
            .command(&["attach", "-i", "-r", transport, CTR])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        let mut stdout = client.stdout.take().unwrap();
        // The shell prints its own pid: every client reaches the same process.
        let marker = format!("attached-{transport}");
        stdin
            .write_all(format!("echo {marker} $$\n").as_bytes())
            .await
            .unwrap();
        let seen = read_until(&mut stdout, &marker).await;
        let main = h
            .runtime
            .main_pid(&ctr_id())
            .expect("attach started the process");
        assert!(seen.contains(&format!("{marker} {main}")), "{seen}");
        assert_eq!(
            *pid.get_or_insert(main),
            main,
            "the same process every time"
        );

        client.kill().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            std::path::Path::new(&format!("/proc/{main}")).exists(),
            "{transport}: detaching ended the process"
        );
    }
}
