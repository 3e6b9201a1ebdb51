//! A `Runtime` whose "containers" are local processes: exec spawns the command (in a
//! pty when asked for a terminal), attach joins one long-running `sh` per container,
//! and port_forward connects to 127.0.0.1. Enough to drive the streaming server with
//! real clients; the youki backend does the same inside containers.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use runtimes::types::{
    AttachRequest, ExecStreamRequest, FsUsage, ImageInfo, PortStream, PullRequest, StdioRequest,
    StreamReader, StreamSession, StreamWriter, TerminalSize,
};
use runtimes::{ContainerId, Error, Result, Runtime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{broadcast, mpsc, watch};

/// The local runtime. Clones share the attachable processes and the pid log.
#[derive(Clone, Default)]
pub struct LocalRuntime {
    mains: Arc<Mutex<HashMap<ContainerId, Arc<Main>>>>,
    pids: Arc<Mutex<Vec<u32>>>,
}

impl LocalRuntime {
    /// Pids of every process exec started, oldest first.
    pub fn exec_pids(&self) -> Vec<u32> {
        self.pids.lock().unwrap().clone()
    }

    /// The pid of the attachable process of `id`, if it was started.
    pub fn main_pid(&self, id: &ContainerId) -> Option<u32> {
        self.mains.lock().unwrap().get(id).map(|m| m.pid)
    }
}

fn spawn_error(cmd: &[String], e: std::io::Error) -> Error {
    Error::io(format!("starting {cmd:?}"), e)
}

/// A shell's view of an exit status: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Kills the process group of an exec'd command when the session is dropped.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

/// The future of an exec'd child: its exit code; dropping it kills its group.
fn wait_for(mut child: Child) -> futures::future::BoxFuture<'static, Result<i32>> {
    let group = KillGroup(child.id().map(|p| p as i32).unwrap_or(0));
    Box::pin(async move {
        let status = child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for exec", e))?;
        drop(group);
        Ok(exit_code(status))
    })
}

/// `cmd` killed with its session; `own_group` puts it in a process group of its
/// own (a terminal's process makes its own session instead).
fn command(cmd: &[String], own_group: bool) -> Command {
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]).kill_on_drop(true);
    if own_group {
        command.process_group(0);
    }
    command
}

fn piped(wanted: bool) -> Stdio {
    if wanted {
        Stdio::piped()
    } else {
        Stdio::null()
    }
}

fn exec_pipes(cmd: &[String], stdio: &StdioRequest) -> Result<(Child, StreamSession)> {
    let mut child = command(cmd, true)
        .stdin(piped(stdio.stdin))
        .stdout(piped(stdio.stdout))
        .stderr(piped(stdio.stderr))
        .spawn()
        .map_err(|e| spawn_error(cmd, e))?;
    let session = StreamSession {
        stdin: child.stdin.take().map(|s| Box::new(s) as StreamWriter),
        stdout: child.stdout.take().map(|s| Box::new(s) as StreamReader),
        stderr: child.stderr.take().map(|s| Box::new(s) as StreamReader),
        resize: None,
        done: Box::pin(async { Ok(0) }),
    };
    Ok((child, session))
}

/// The master side of a pty, read as a stream: EIO (every slave closed) is EOF.
struct PtyReader(tokio::fs::File);

impl AsyncRead for PtyReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

fn set_size(master: &OwnedFd, size: TerminalSize) {
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
}

fn exec_tty(cmd: &[String]) -> Result<(Child, StreamSession)> {
    let io = |e: nix::Error| Error::io("opening a pty", e.into());
    let pty = nix::pty::openpty(None, None).map_err(io)?;
    let slave = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    let mut command = command(cmd, false);
    command
        .stdin(slave(&pty.slave).map_err(|e| spawn_error(cmd, e))?)
        .stdout(slave(&pty.slave).map_err(|e| spawn_error(cmd, e))?)
        .stderr(slave(&pty.slave).map_err(|e| spawn_error(cmd, e))?);
    // SAFETY: only async-signal-safe calls between fork and exec. A new session (not
    // only a process group) so that the pty becomes the controlling terminal.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| spawn_error(cmd, e))?;
    drop(pty.slave);
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup of the pty", e));
    let reader = tokio::fs::File::from_std(std::fs::File::from(dup(&pty.master)?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(dup(&pty.master)?));
    let (resize, mut sizes) = mpsc::channel::<TerminalSize>(4);
    let master = pty.master;
    tokio::spawn(async move {
        while let Some(size) = sizes.recv().await {
            set_size(&master, size);
        }
    });
    let session = StreamSession {
        stdin: Some(Box::new(writer)),
        stdout: Some(Box::new(PtyReader(reader))),
        stderr: None,
        resize: Some(resize),
        done: Box::pin(async { Ok(0) }),
    };
    Ok((child, session))
}

/// The attachable process of one container: `sh` reading commands from stdin.
struct Main {
    pid: u32,
    stdin: tokio::sync::Mutex<ChildStdin>,
    output: broadcast::Sender<Bytes>,
    exited: watch::Receiver<Option<i32>>,
}

impl Main {
    fn start() -> Result<Arc<Main>> {
        let cmd = ["sh".to_string()];
        let mut child = command(&cmd, true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| spawn_error(&cmd, e))?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::backend("local", "sh has no pipes"));
        };
        let (output, _) = broadcast::channel(64);
        let (exit_tx, exited) = watch::channel(None);
        let out = output.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let _ = out.send(Bytes::copy_from_slice(&buf[..n]));
            }
            let code = child.wait().await.map(exit_code).unwrap_or(-1);
            let _ = exit_tx.send(Some(code));
        });
        Ok(Arc::new(Main {
            pid,
            stdin: tokio::sync::Mutex::new(stdin),
            output,
            exited,
        }))
    }

    /// One client's view: its input goes to the shared stdin, it sees the output
    /// from now on; dropping the session detaches without touching the process.
    fn attach(self: &Arc<Self>, stdio: &StdioRequest) -> StreamSession {
        let stdin = stdio.stdin.then(|| {
            let (ours, mut theirs) = tokio::io::duplex(4096);
            let main = self.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = theirs.read(&mut buf).await {
                    if n == 0 || main.stdin.lock().await.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            Box::new(ours) as StreamWriter
        });
        let stdout = stdio.stdout.then(|| {
            let (ours, mut theirs) = tokio::io::duplex(4096);
            let mut output = self.output.subscribe();
            tokio::spawn(async move {
                while let Ok(data) = output.recv().await {
                    if theirs.write_all(&data).await.is_err() {
                        break;
                    }
                }
            });
            Box::new(ours) as StreamReader
        });
        let mut exited = self.exited.clone();
        StreamSession {
            stdin,
            stdout,
            stderr: None,
            resize: None,
            done: Box::pin(async move {
                let code = exited
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| Error::backend("local", "the main process vanished"))?;
                Ok(code.unwrap_or(-1))
            }),
        }
    }
}

impl Drop for Main {
    fn drop(&mut self) {
        // SAFETY: see KillGroup; the shell leads its own process group.
        unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &str {
        "local"
    }

    fn runs_os(&self, os: &str) -> bool {
        os == "linux"
    }

    async fn pull_image(&self, _request: &PullRequest) -> Result<ImageInfo> {
        Err(self.unsupported("PullImage"))
    }

    async fn image_status(&self, _reference: &str) -> Result<Option<ImageInfo>> {
        Ok(None)
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(Vec::new())
    }

    async fn remove_image(&self, _reference: &str) -> Result<()> {
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        Ok(Vec::new())
    }

    async fn exec(&self, _id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        let (child, mut session) = if request.stdio.tty {
            exec_tty(&request.cmd)?
        } else {
            exec_pipes(&request.cmd, &request.stdio)?
        };
        if let Some(pid) = child.id() {
            self.pids.lock().unwrap().push(pid);
        }
        session.done = wait_for(child);
        Ok(session)
    }

    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        let main = {
            let mut mains = self.mains.lock().unwrap();
            match mains.get(id) {
                Some(main) => main.clone(),
                None => {
                    let main = Main::start()?;
                    mains.insert(id.clone(), main.clone());
                    main
                }
            }
        };
        Ok(main.attach(&request.stdio))
    }

    async fn port_forward(&self, _sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        let conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| Error::io(format!("connecting to 127.0.0.1:{port}"), e))?;
        Ok(Box::new(conn))
    }
}
