//! Runs a client (crictl) on a pseudo-terminal, as a user at a terminal would: it
//! sees a tty, puts it in raw mode, reads its size and gets SIGWINCH on resize.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A client process on a pty, and everything it printed so far.
pub struct PtyClient {
    master: OwnedFd,
    input: tokio::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    child: Child,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyClient {
    /// Starts `command` with a `rows`×`cols` terminal as its stdin, stdout and stderr.
    pub fn spawn(mut command: Command, rows: u16, cols: u16) -> PtyClient {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave = || Stdio::from(pty.slave.try_clone().unwrap());
        command.stdin(slave()).stdout(slave()).stderr(slave());
        // SAFETY: only async-signal-safe calls between fork and exec; the new
        // session makes the pty the client's controlling terminal (SIGWINCH).
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("starting the client on a pty");
        drop(pty.slave);
        let file =
            |fd: &OwnedFd| tokio::fs::File::from_std(std::fs::File::from(fd.try_clone().unwrap()));
        let mut reader = file(&pty.master);
        let input = file(&pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // EIO once the client and its children closed the terminal.
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtyClient {
            master: pty.master,
            input,
            output,
            child,
        }
    }

    /// Everything printed so far, lossily decoded.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types `text` (a carriage return ends a line on a raw terminal's far side too).
    pub async fn type_text(&mut self, text: &str) {
        self.input.write_all(text.as_bytes()).await.unwrap();
        self.input.flush().await.unwrap();
    }

    /// Waits until the output after byte `from` contains `needle`; returns where
    /// it ends. Panics with the whole output after `limit`.
    pub async fn expect(&self, from: usize, needle: &str, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let output = self.output.lock().unwrap();
                let text = String::from_utf8_lossy(&output[from.min(output.len())..]).into_owned();
                if let Some(at) = text.find(needle) {
                    return from + at + needle.len();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} after {limit:?}; output: {:?}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many bytes were printed so far.
    pub fn mark(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Resizes the terminal; the kernel sends the client SIGWINCH.
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ");
    }

    /// Resizes the terminal, then asks the remote shell (`stty size`) until it sees
    /// the new size: SIGWINCH reaches the client asynchronously.
    pub async fn resize_until_seen(&mut self, rows: u16, cols: u16, limit: Duration) {
        self.resize(rows, cols);
        let want = format!("{rows} {cols}");
        for _ in 0..50 {
            let mark = self.mark();
            self.type_text("stty size; echo asked-$((1+1))\r").await;
            self.expect(mark, "asked-2", limit).await;
            if self.output()[mark..].contains(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the resize to {want} never arrived: {:?}", self.output());
    }

    /// Ends the remote shell with `exit <code>` and checks crictl reports that code:
    /// crictl v1.34 itself exits with 1 after a failed exec, naming the command's.
    pub async fn exit_reported_by_crictl(&mut self, code: i32, limit: Duration) {
        let mark = self.mark();
        self.type_text(&format!("exit {code}\r")).await;
        let status = self.wait(limit).await;
        assert_eq!(status.code(), Some(1), "{:?}", self.output());
        self.expect(mark, &format!("exit code {code}"), limit).await;
    }

    /// Waits for the client to exit.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the client did not exit; output: {:?}", self.output()))
            .unwrap()
    }
}
