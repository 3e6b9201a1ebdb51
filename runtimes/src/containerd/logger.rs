//! The log shim: `berth log-shim DIR`, the writer of a containerd container's CRI log
//! and the server of its attachments. Two ways to start:
//!
//! - `berth log-shim DIR`, by containerd's runc shim, for a container whose stdout and
//!   stderr are the `binary://` URI berth gave at task create (containerd's binary
//!   logging protocol: stdout on fd 3, stderr on fd 4, fd 5 closed once ready). Used
//!   for containers without stdin or terminal.
//! - `berth log-shim --fifos DIR`, by berth, for a container with stdin or a terminal
//!   (containerd's binary logging has no stdin): the task's stdio are the FIFOs in
//!   `DIR/io/`, which berth made. berth holds the output FIFOs open until the task
//!   started, so this end sees their end-of-file only when the shim closes them.
//!
//! Either way it writes the CRI log format to the log path recorded in `DIR`, lives on
//! while berth or containerd is down, and serves `DIR/attach.sock` (0600): a client
//! sends one byte of flags (1 stdin, 2 stdout, 4 stderr), then gets frames of output
//! (`[1 stdout | 2 stderr][u32 big-endian length][bytes]`) and may send stdin, whose
//! end closes the container's stdin when the container is `stdin_once`. SIGUSR1
//! reopens the log file (ReopenContainerLog); berth finds the pid in
//! `DIR/log-shim.pid`. It ends when the output streams end, or at SIGTERM once what
//! was written is logged.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::records::Record;
use crate::error::{Error, Result};
use crate::supervisor::crilog::{CriLog, Stream};

/// The subcommand (and the `binary://` URI's query key) that starts the log shim.
pub const ARG: &str = "log-shim";

/// The flag that has it open the FIFOs of `DIR/io/` instead of inherited fds.
pub const FIFOS: &str = "--fifos";

/// The log shim's pid, in the container's directory.
const PID_FILE: &str = "log-shim.pid";

/// Its attach socket, in the container's directory.
pub const ATTACH_SOCKET: &str = "attach.sock";

/// The directory of the task's FIFOs (`stdin`, `stdout`, `stderr`).
pub const IO_DIR: &str = "io";

/// Attach flags: what a client wants.
pub const WANT_STDIN: u8 = 1;
/// The client reads stdout.
pub const WANT_STDOUT: u8 = 2;
/// The client reads stderr.
pub const WANT_STDERR: u8 = 4;

/// How long a SIGTERM waits for the streams to be drained.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs the log shim; `args` are what follow `log-shim`.
pub fn main(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    let (fifos, dir) = match args.next() {
        Some(flag) if flag == FIFOS => (true, args.next()),
        other => (false, other),
    };
    let Some(dir) = dir.map(PathBuf::from) else {
        eprintln!("berth log-shim: usage: berth log-shim [--fifos] DIR");
        return ExitCode::from(2);
    };
    if fifos {
        // Started by berth and outliving it: descriptors berth inherited without CLOEXEC
        // would stay open as long as the container runs. (Started by containerd's shim
        // instead, fds 3-5 are the container's streams and must stay.)
        // SAFETY: a plain syscall; no Rust object owns a descriptor above 2 yet.
        unsafe {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        }
    }
    match run(&dir, fifos) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth log-shim {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// What the streams are shared with: the log, the attached clients, stdin.
struct Shared {
    log: Mutex<CriLog>,
    clients: Mutex<Vec<(UnixStream, u8)>>,
    /// The write end of the container's stdin, until it is closed.
    stdin: Mutex<Option<File>>,
    stdin_once: bool,
}

fn run(dir: &Path, fifos: bool) -> Result<()> {
    let record =
        Record::load(dir)?.ok_or_else(|| Error::not_found("container record", dir.display()))?;
    // Blocked before any thread exists, so that only the main thread takes them.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGUSR1,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| Error::io("blocking signals", e.into()))?;
    let (outputs, stdin) = if fifos {
        open_fifos(&dir.join(IO_DIR))?
    } else {
        // SAFETY: fds 3, 4 and 5 are the shim's pipes, handed to this process alone.
        let (stdout, stderr, ready) = unsafe {
            (
                File::from_raw_fd(3),
                File::from_raw_fd(4),
                File::from_raw_fd(5),
            )
        };
        drop(ready);
        (
            vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)],
            None,
        )
    };
    let shared = Arc::new(Shared {
        log: Mutex::new(
            CriLog::open(record.log_path.as_deref())
                .map_err(|e| Error::io(format!("opening the log of {}", record.id), e))?,
        ),
        clients: Mutex::new(Vec::new()),
        stdin: Mutex::new(stdin),
        stdin_once: record.stdin_once,
    });
    let socket = dir.join(ATTACH_SOCKET);
    let _ = std::fs::remove_file(&socket);
    // Without attachments the log still matters: a failure here is only reported.
    match bind_attach(dir) {
        Ok(listener) => {
            let shared = shared.clone();
            std::thread::spawn(move || serve_attach(listener, &shared));
        }
        Err(e) => eprintln!("berth log-shim {}: no attach socket: {e}", dir.display()),
    }
    // Last: berth waits for the pid file to know the shim is ready.
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())
        .map_err(|e| Error::io(format!("writing {}", dir.join(PID_FILE).display()), e))?;

    let open = Arc::new(AtomicUsize::new(outputs.len()));
    for (file, stream) in outputs {
        let (shared, open) = (shared.clone(), open.clone());
        std::thread::spawn(move || {
            copy(file, stream, &shared);
            if open.fetch_sub(1, Ordering::SeqCst) == 1 {
                // Every stream ended: nothing more will come. To the process, not
                // this thread (raise): only the main thread takes signals.
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGTERM);
            }
        });
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => {
                let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = log.reopen() {
                    eprintln!("berth log-shim: reopening the log of {}: {e}", record.id);
                }
            }
            Ok(_) => break,
            Err(e) => return Err(Error::io("waiting for signals", e.into())),
        }
    }
    let deadline = Instant::now() + DRAIN;
    while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Attached clients see the end of the output.
    for (client, _) in shared
        .clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
    {
        let _ = client.shutdown(std::net::Shutdown::Both);
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    Ok(())
}

/// Listens on `dir/attach.sock` (0600). Bound through `/proc/self/fd/N/`, a short
/// name for `dir`, since a socket path is limited to 107 bytes and `dir` may be long.
fn bind_attach(dir: &Path) -> std::io::Result<UnixListener> {
    let handle = File::open(dir)?;
    let listener = UnixListener::bind(short_path(&handle))?;
    std::fs::set_permissions(
        dir.join(ATTACH_SOCKET),
        std::fs::Permissions::from_mode(0o600),
    )?;
    Ok(listener)
}

/// `attach.sock` in the directory `handle` is open on, by a path of a few bytes.
pub fn short_path(handle: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!(
        "/proc/self/fd/{}/{ATTACH_SOCKET}",
        handle.as_raw_fd()
    ))
}

/// The output FIFOs of `io` (read-only: berth holds them open until the shim has)
/// and the write end of its stdin FIFO (read-write, so that the open does not wait
/// for the shim and the container's stdin ends only when this end closes).
type Outputs = Vec<(File, Stream)>;
fn open_fifos(io: &Path) -> Result<(Outputs, Option<File>)> {
    let mut outputs = Vec::new();
    for (name, stream) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)] {
        let path = io.join(name);
        if path.exists() {
            let file = File::open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            outputs.push((file, stream));
        }
    }
    let path = io.join("stdin");
    let stdin = if path.exists() {
        Some(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
        )
    } else {
        None
    };
    Ok((outputs, stdin))
}

/// Accepts attach clients: each says what it wants, gets the output from then on and
/// may send stdin.
fn serve_attach(listener: UnixListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        let Ok(mut client) = client else { continue };
        let mut flags = [0u8; 1];
        if client.read_exact(&mut flags).is_err() {
            continue;
        }
        let flags = flags[0];
        if flags & (WANT_STDOUT | WANT_STDERR) != 0 {
            if let Ok(writer) = client.try_clone() {
                // A client that stops reading must not stall the log: it is dropped.
                let _ = writer.set_write_timeout(Some(Duration::from_secs(5)));
                shared
                    .clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((writer, flags));
            }
        }
        if flags & WANT_STDIN != 0 {
            let shared = shared.clone();
            std::thread::spawn(move || pump_stdin(client, &shared));
        }
    }
}

/// Copies one client's input into the container's stdin. At its end, for a
/// `stdin_once` container, this end of the stdin FIFO is closed once the shim read
/// what is in it, and the client is told so (a frame of tag 3, no data): the shim
/// itself keeps the FIFO open, berth then closes the container's stdin (CloseIO).
fn pump_stdin(mut client: UnixStream, shared: &Shared) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut stdin = shared.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let written = stdin.as_mut().map(|file| file.write_all(&buf[..n]));
        if !matches!(written, Some(Ok(()))) {
            break;
        }
    }
    if !shared.stdin_once {
        return;
    }
    let stdin = shared
        .stdin
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(file) = stdin {
        let deadline = Instant::now() + Duration::from_secs(2);
        while unread(&file) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _clients = shared.clients.lock().unwrap_or_else(|p| p.into_inner());
    let _ = client.write_all(&[3, 0, 0, 0, 0]);
}

/// The bytes in the pipe of `file` nobody read yet.
fn unread(file: &File) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer given.
    let rc = unsafe { nix::libc::ioctl(file.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    if rc < 0 {
        0
    } else {
        n
    }
}

/// Copies one stream into the log, and to the attached clients, until it ends.
fn copy(mut file: File, stream: Stream, shared: &Shared) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending = Vec::new();
    let (tag, want) = match stream {
        Stream::Stdout => (1u8, WANT_STDOUT),
        Stream::Stderr => (2u8, WANT_STDERR),
    };
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n > 0 {
            let mut frame = Vec::with_capacity(n + 5);
            frame.push(tag);
            frame.extend_from_slice(&(n as u32).to_be_bytes());
            frame.extend_from_slice(&buf[..n]);
            let mut clients = shared.clients.lock().unwrap_or_else(|p| p.into_inner());
            // A client that cannot take the output any more is dropped.
            clients.retain_mut(|(client, flags)| {
                *flags & want == 0 || client.write_all(&frame).is_ok()
            });
        }
        pending.extend_from_slice(&buf[..n]);
        let eof = n == 0;
        let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.feed(stream, &mut pending, eof) {
            eprintln!("berth log-shim: writing the log: {e}");
            pending.clear();
        }
        if eof {
            return;
        }
    }
}

/// Starts `berth log-shim --fifos DIR` (this binary `exe`) in a process group of its
/// own, so that it outlives berth; returns once it serves (its pid file is written).
pub async fn spawn(exe: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let pid_file = dir.join(PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let mut child = std::process::Command::new(exe)
        .arg(ARG)
        .arg(FIFOS)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("starting the log shim of {}", dir.display()), e))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if pid_file.exists() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::internal(
                "containerd",
                format!("the log shim of {}", dir.display()),
                std::io::Error::other(format!("exited with {status}")),
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::DeadlineExceeded {
                operation: format!("starting the log shim of {}", dir.display()),
                after: Duration::from_secs(5),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Reaped when it ends (while this berth runs; later, by whoever inherits it).
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Has the log shim of the container in `dir` reopen its log file.
pub fn signal_reopen(dir: &Path) -> Result<()> {
    let path = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::FailedPrecondition(format!(
            "the container's log shim is not running ({}: {e})",
            path.display()
        ))
    })?;
    let pid: i32 = text.trim().parse().map_err(|_| Error::DataLoss {
        what: path.display().to_string(),
        message: format!("{text:?} is not a pid"),
    })?;
    // A stale pid may have been reused: signal only the log shim of this directory.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = cmdline
        .split(|&b| b == 0)
        .any(|arg| arg == dir.as_os_str().as_encoded_bytes());
    if !ours {
        return Err(Error::FailedPrecondition(format!(
            "the container's log shim (pid {pid}) is not running"
        )));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGUSR1).map_err(|e| {
        Error::FailedPrecondition(format!(
            "signalling the container's log shim (pid {pid}): {e}"
        ))
    })
}
