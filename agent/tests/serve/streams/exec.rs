//! `crictl exec`: interactive on a terminal (typing, output, resize, exit code), and
//! without one (separate streams, stdin, exit codes), in the container's namespaces,
//! cgroup, user, working directory and environment.

use std::time::Duration;

use anyhow::Result;

use super::{eventually, Node, PtyClient, SLEEPER, TRANSPORTS, WAIT};

#[tokio::test]
async fn interactive_exec_on_a_terminal_over_both_transports() -> Result<()> {
    let mut node = Node::start().await?;
    let (_, id) = node.pod_with("shell", &SLEEPER).await?;
    for transport in TRANSPORTS {
        let command = node
            .crictl
            .command(&["exec", "-it", "-r", transport, &id, "sh"]);
        let mut client = PtyClient::spawn(command, 40, 100);
        // crictl sends its terminal's size first; the shell sees it, on a terminal the
        // container's own devpts made, with TERM set as kubelet's runtimes set it.
        client
            .type_text("stty size; tty; echo term=$TERM typed-$((6*7))\r")
            .await;
        let at = client.expect(0, "40 100", WAIT).await;
        let at = client.expect(at, "/dev/pts/", WAIT).await;
        client.expect(at, "term=xterm typed-42", WAIT).await;

        client.resize_until_seen(50, 132, WAIT).await;
        client.exit_reported_by_crictl(7, WAIT).await;
    }
    Ok(())
}

#[tokio::test]
async fn exec_without_a_terminal_keeps_streams_apart_and_reports_exit_codes() -> Result<()> {
    let mut node = Node::start().await?;
    let (_, id) = node.pod_with("plain", &SLEEPER).await?;
    for transport in TRANSPORTS {
        let run = node
            .crictl
            .run(
                &[
                    "exec",
                    "-r",
                    transport,
                    &id,
                    "sh",
                    "-c",
                    "echo out; echo err >&2; exit 3",
                ],
                None,
            )
            .await;
        assert_eq!(run.stdout, "out\n", "{transport}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("err\n"),
            "{transport}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("exit code 3"),
            "{transport}: {}",
            run.stderr
        );
        assert_eq!(run.code, Some(1));

        let input = b"line one\nline two\n";
        let run = node
            .crictl
            .run(&["exec", "-i", "-r", transport, &id, "cat"], Some(input))
            .await;
        assert_eq!(run.raw_stdout, input, "{transport}: {}", run.stderr);
        assert_eq!(run.code, Some(0), "{transport}: {}", run.stderr);
    }

    // The exec'd process shares everything with the container's init (its PID 1).
    let script = "for n in mnt net pid uts ipc cgroup; do \
                    [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo ns-$n-differs; \
                  done; \
                  [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] || echo cgroup-differs; \
                  for f in Uid Gid CapEff CapBnd NoNewPrivs Seccomp; do \
                    [ \"$(grep ^$f: /proc/self/status)\" = \"$(grep ^$f: /proc/1/status)\" ] || echo $f-differs; \
                  done; \
                  [ \"$(pwd)\" = \"$(readlink /proc/1/cwd)\" ] || echo cwd-differs; \
                  tr \"\\000\" \"\\n\" < /proc/1/environ | grep -qx \"HOSTNAME=$HOSTNAME\" || echo env-differs; \
                  [ \"$HOSTNAME\" = plain ] || echo hostname-missing; \
                  echo checked";
    let run = node
        .crictl
        .run(&["exec", &id, "sh", "-c", script], None)
        .await;
    assert_eq!(run.stdout, "checked\n", "{}", run.stderr);
    Ok(())
}

/// A tmux server of its own (socket in the test's dir), running one command in a
/// window of a given size: a terminal as a user has, which tests can type into, read
/// and resize.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    /// Starts `command` (a shell line) in a detached `cols`×`rows` session.
    fn start(dir: &std::path::Path, command: &str, cols: u16, rows: u16) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .arg("-f")
            .arg("/dev/null")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (apt package tmux, hack/install-deps --test)");
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
        self.run(&["send-keys", "-t", "t", "Enter"]);
    }

    /// The window's text, with its scrollback.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", "t", "-S", "-2000"])
    }

    /// Waits until the screen shows `needle` `times` times.
    async fn expect(&self, needle: &str, times: usize) {
        let shown = eventually(WAIT, || self.screen().matches(needle).count() >= times).await;
        assert!(shown, "no {needle:?} (x{times}) on: {}", self.screen());
    }

    fn resize(&self, cols: u16, rows: u16) {
        self.run(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[tokio::test]
async fn crictl_exec_it_in_tmux_types_reads_resizes_and_exits_with_a_code() -> Result<()> {
    let mut node = Node::start().await?;
    let (_, id) = node.pod_with("tmux", &SLEEPER).await?;
    let rc_file = node.dir().join("crictl.rc");
    // crictl on tmux's terminal; its exit status lands in a file once it ends.
    let line = format!(
        "{}; echo $? > {}; sleep 600",
        node.crictl.shell_line(&["exec", "-it", &id, "sh"]),
        rc_file.display()
    );
    let tmux = Tmux::start(node.dir(), &line, 100, 40);
    // The arithmetic is done by the shell in the container, so an echo of the typed
    // line cannot satisfy the check.
    tmux.type_line("echo typed-$((6*7)) in $(hostname)");
    tmux.expect("typed-42 in tmux", 1).await;
    tmux.type_line("stty size");
    tmux.expect("40 100", 1).await;

    tmux.resize(132, 50);
    // tmux signals crictl, crictl sends the size: ask until the shell sees it.
    let mut asked = 0;
    let resized = eventually(WAIT, || {
        asked += 1;
        tmux.type_line("stty size");
        std::thread::sleep(Duration::from_millis(200));
        tmux.screen().contains("50 132")
    })
    .await;
    assert!(resized, "after {asked} tries: {}", tmux.screen());

    tmux.type_line("exit 3");
    let ended = eventually(WAIT, || rc_file.exists()).await;
    assert!(ended, "crictl did not end: {}", tmux.screen());
    // crictl v1.34 reports the command's code in its message and exits with 1 (its
    // error wraps the exit error, which hides the code from its CLI framework).
    tmux.expect("exit code 3", 1).await;
    let rc = std::fs::read_to_string(&rc_file)?;
    assert_eq!(rc.trim(), "1", "{}", tmux.screen());
    // The same through ExecSync, which carries the code in its answer.
    let sync = node
        .crictl
        .run(&["exec", "--sync", &id, "sh", "-c", "exit 3"], None)
        .await;
    assert!(sync.stderr.contains("exited with 3"), "{}", sync.stderr);
    assert_eq!(sync.code, Some(1), "{}", sync.stderr);
    Ok(())
}
