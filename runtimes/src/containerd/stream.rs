//! Attach: a connection to the container's log shim (`attach.sock`, see `logger`),
//! its output frames split into stdout and stderr; the end of the client's input is
//! the shim's to act on (stdin_once). Resizes and the exit code come from containerd.
//!
//! Exec (interactive): a containerd exec process whose stdio are FIFOs berth makes in
//! the container's directory, handed to the streaming server as byte streams; the
//! terminal's size goes to the shim (ResizePty), the end of the client's input closes
//! the process's stdin (CloseIO).
//!
//! A FIFO reader only sees end-of-file once every writer is gone, and sees it at once
//! when no writer came yet. So each output FIFO is first held open read-write (the
//! shim may open its end as late as the process start, for a terminal), then, once the
//! process started, reopened read-only and the read-write handle dropped: the shim is
//! then the only writer, and its close after the process ended is the stream's end.
//! Nothing is lost in between: the bytes are in the pipe, whichever handle reads them.

use std::path::Path;
use std::sync::Arc;

use containerd_client::services::v1::{CloseIoRequest, ResizePtyRequest};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::exec::{make_fifos, new_exec_id, ExecPaths};
use super::object_id as key;
use super::status::TaskState;
use super::Containerd;
use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::types::{
    AttachRequest, ExecStreamRequest, StreamReader, StreamSession, StreamWriter, TerminalSize,
};

use super::logger;

impl Containerd {
    /// Attach: the streams of the running container `id`'s main process.
    pub async fn attach_stream(
        self: &Arc<Self>,
        id: &ContainerId,
        request: &AttachRequest,
    ) -> Result<StreamSession> {
        let stdio = request.stdio;
        let record = self.record(id)?;
        if stdio.tty != record.tty {
            return Err(Error::InvalidSpec(format!(
                "Attach {id}: tty must be {} as the container was created",
                record.tty
            )));
        }
        if stdio.stdin && !record.stdin {
            return Err(Error::InvalidSpec(format!(
                "Attach {id}: the container was created without stdin"
            )));
        }
        if !matches!(self.task_state(&record).await?, TaskState::Running { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "Attach {id}: the container is not running"
            )));
        }
        let dir = self.sandboxes.container_dir(id);
        let socket = dir.join(logger::ATTACH_SOCKET);
        let refused = |e: std::io::Error| {
            Error::FailedPrecondition(format!(
                "Attach {id}: its log shim does not answer at {} ({e})",
                socket.display()
            ))
        };
        // By a short path to the (maybe long) directory: see `logger::short_path`.
        let handle = std::fs::File::open(&dir).map_err(refused)?;
        let mut conn = tokio::net::UnixStream::connect(logger::short_path(&handle))
            .await
            .map_err(refused)?;
        drop(handle);
        let flags = [
            (stdio.stdin, logger::WANT_STDIN),
            (stdio.stdout, logger::WANT_STDOUT),
            (stdio.stderr && !stdio.tty, logger::WANT_STDERR),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0u8, |all, (_, bit)| all | bit);
        conn.write_all(&[flags])
            .await
            .io_context(|| format!("attaching to {id}"))?;
        let (reader, writer) = conn.into_split();
        let (out_tx, out_rx) = tokio::io::duplex(64 * 1024);
        let (err_tx, err_rx) = tokio::io::duplex(64 * 1024);
        // The shim read a stdin_once container's last input: close its stdin.
        let close_stdin = record.stdin_once.then(|| (self.clone(), id.clone()));
        tokio::spawn(demux(reader, out_tx, err_tx, close_stdin));
        let resize = stdio.tty.then(|| {
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(self.clone().forward_resizes(id.clone(), String::new(), rx));
            tx
        });
        let me = self.clone();
        let id = id.clone();
        let done = async move { me.wait_exec(&id, "").await }.boxed();
        Ok(StreamSession {
            stdin: stdio.stdin.then(|| Box::new(writer) as StreamWriter),
            stdout: stdio.stdout.then(|| Box::new(out_rx) as StreamReader),
            stderr: (stdio.stderr && !stdio.tty).then(|| Box::new(err_rx) as StreamReader),
            resize,
            done,
        })
    }

    /// Exec: the command as a new process of the running container `id`.
    pub async fn exec_stream(
        self: &Arc<Self>,
        id: &ContainerId,
        request: &ExecStreamRequest,
    ) -> Result<StreamSession> {
        if request.cmd.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "Exec in {id}: the command is empty"
            )));
        }
        let stdio = request.stdio;
        if stdio.tty && stdio.stderr {
            return Err(Error::InvalidSpec(format!(
                "Exec in {id}: a terminal has no separate stderr"
            )));
        }
        let record = self.record(id)?;
        if !matches!(self.task_state(&record).await?, TaskState::Running { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "Exec in {id}: the container is not running"
            )));
        }
        let mut process = record.process.clone().unwrap_or_default();
        process.set_args(Some(request.cmd.clone()));
        process.set_terminal(Some(stdio.tty));
        let exec_id = new_exec_id();
        let dir = self.exec_dir(id, &exec_id);
        let made = self.open_exec(id, &exec_id, &dir, &process, request).await;
        // The FIFOs are open (or not needed any more): their names can go.
        let _ = std::fs::remove_dir_all(&dir);
        let (stdin, stdout, stderr) = made?;

        let resize = stdio.tty.then(|| {
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(
                self.clone()
                    .forward_resizes(id.clone(), exec_id.clone(), rx),
            );
            tx
        });
        let stdin = stdin.map(|fifo| {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(
                self.clone()
                    .pump_stdin(id.clone(), exec_id.clone(), ours, fifo),
            );
            Box::new(theirs) as StreamWriter
        });
        let me = self.clone();
        let (id, exec_id_done) = (id.clone(), exec_id.clone());
        let done = async move {
            let code = me.wait_exec(&id, &exec_id_done).await;
            me.delete_exec(&key(&id), &exec_id_done).await;
            code
        }
        .boxed();
        Ok(StreamSession {
            stdin,
            stdout: stdout.map(|r| Box::new(r) as StreamReader),
            stderr: stderr.map(|r| Box::new(r) as StreamReader),
            resize,
            done,
        })
    }

    /// Makes the FIFOs, starts the process on them; the open ends berth keeps.
    async fn open_exec(
        &self,
        id: &ContainerId,
        exec_id: &str,
        dir: &Path,
        process: &oci_spec::runtime::Process,
        request: &ExecStreamRequest,
    ) -> Result<(
        Option<pipe::Sender>,
        Option<pipe::Receiver>,
        Option<pipe::Receiver>,
    )> {
        let stdio = request.stdio;
        let wanted: Vec<&str> = [
            ("stdin", stdio.stdin),
            ("stdout", stdio.stdout),
            ("stderr", stdio.stderr && !stdio.tty),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        make_fifos(dir, &wanted)?;
        let path = |name: &str| dir.join(name);
        let named = |name: &str| {
            if wanted.contains(&name) {
                path(name).display().to_string()
            } else {
                String::new()
            }
        };
        // Read-write until the process runs: see the module's doc.
        let hold = |name: &str| -> Result<Option<pipe::Receiver>> {
            if !wanted.contains(&name) {
                return Ok(None);
            }
            let p = path(name);
            pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&p)
                .map(Some)
                .io_context(|| format!("opening {}", p.display()))
        };
        let (out_hold, err_hold) = (hold("stdout")?, hold("stderr")?);
        let stdin = if stdio.stdin {
            let p = path("stdin");
            Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(&p)
                    .io_context(|| format!("opening {}", p.display()))?,
            )
        } else {
            None
        };
        let paths = ExecPaths {
            stdin: named("stdin"),
            stdout: named("stdout"),
            stderr: named("stderr"),
        };
        self.start_exec(id, exec_id, process, &paths, &request.cmd)
            .await?;
        let reopen = |name: &str, held: Option<pipe::Receiver>| -> Result<Option<pipe::Receiver>> {
            let Some(held) = held else { return Ok(None) };
            let p = path(name);
            let reader = pipe::OpenOptions::new()
                .open_receiver(&p)
                .io_context(|| format!("reopening {}", p.display()))?;
            drop(held);
            Ok(Some(reader))
        };
        Ok((
            stdin,
            reopen("stdout", out_hold)?,
            reopen("stderr", err_hold)?,
        ))
    }

    /// Copies the client's input into the process's stdin FIFO; at its end, closes the
    /// process's stdin.
    async fn pump_stdin(
        self: Arc<Self>,
        id: ContainerId,
        exec_id: String,
        mut from: tokio::io::DuplexStream,
        fifo: pipe::Sender,
    ) {
        let mut fifo = fifo;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tokio::io::AsyncWriteExt::write_all(&mut fifo, &buf[..n])
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        drop(fifo);
        self.close_stdin(&id, &exec_id).await;
    }

    /// Closes the stdin of process `exec_id` (`""`: the container's) of `id`.
    async fn close_stdin(&self, id: &ContainerId, exec_id: &str) {
        let closed = self
            .tasks()
            .close_io(self.request(CloseIoRequest {
                container_id: key(id),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await;
        if let Err(s) = closed {
            tracing::debug!(container = %id, error = %s, "closing a process's stdin");
        }
    }

    /// Sends each terminal size to the shim.
    async fn forward_resizes(
        self: Arc<Self>,
        id: ContainerId,
        exec_id: String,
        mut sizes: mpsc::Receiver<TerminalSize>,
    ) {
        while let Some(size) = sizes.recv().await {
            let resized = self
                .tasks()
                .resize_pty(self.request(ResizePtyRequest {
                    container_id: key(&id),
                    exec_id: exec_id.clone(),
                    width: size.width.into(),
                    height: size.height.into(),
                }))
                .await;
            if let Err(s) = resized {
                tracing::debug!(container = %id, error = %s, "resizing an exec's terminal");
            }
        }
    }
}

/// Splits the log shim's output frames into stdout and stderr until it closes.
async fn demux(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut stdout: tokio::io::DuplexStream,
    mut stderr: tokio::io::DuplexStream,
    close_stdin: Option<(Arc<Containerd>, ContainerId)>,
) {
    let mut header = [0u8; 5];
    let mut data = Vec::new();
    while from.read_exact(&mut header).await.is_ok() {
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        data.resize(len, 0);
        if from.read_exact(&mut data).await.is_err() {
            break;
        }
        if header[0] == 3 {
            if let Some((me, id)) = &close_stdin {
                me.close_stdin(id, "").await;
            }
            continue;
        }
        let to = if header[0] == 2 {
            &mut stderr
        } else {
            &mut stdout
        };
        // A side nobody reads any more is skipped, the other still served.
        let _ = to.write_all(&data).await;
    }
}
