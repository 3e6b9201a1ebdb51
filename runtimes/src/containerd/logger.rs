//! The log shim: `berth log-shim DIR`, started by containerd's runc shim for a
//! container whose stdout and stderr are the `binary://` URI berth gave at task
//! create (containerd's binary logging protocol: the container's stdout on fd 3, its
//! stderr on fd 4, and fd 5 closed once the logger is ready).
//!
//! It writes the CRI log format to the log path recorded in `DIR` and is a child of
//! the shim, not of berth or containerd: logs keep flowing while either is down.
//! SIGUSR1 reopens the file (ReopenContainerLog, after kubelet rotated it); berth
//! finds the pid in `DIR/log-shim.pid`. It ends when both streams end, or at SIGTERM
//! (the shim's close) once what was written is logged.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
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

/// The log shim's pid, in the container's directory.
const PID_FILE: &str = "log-shim.pid";

/// How long a SIGTERM waits for the streams to be drained.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs the log shim; `args` are what follow `log-shim` (the container's directory).
pub fn main(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("berth log-shim: usage: berth log-shim DIR");
        return ExitCode::from(2);
    };
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth log-shim {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<()> {
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
    let log = Arc::new(Mutex::new(
        CriLog::open(record.log_path.as_deref())
            .map_err(|e| Error::io(format!("opening the log of {}", record.id), e))?,
    ));
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())
        .map_err(|e| Error::io(format!("writing {}", dir.join(PID_FILE).display()), e))?;
    // SAFETY: fds 3, 4 and 5 are the shim's pipes, handed to this process alone.
    let (stdout, stderr, ready) = unsafe {
        (
            File::from_raw_fd(3),
            File::from_raw_fd(4),
            File::from_raw_fd(5),
        )
    };
    drop(ready);

    let open = Arc::new(AtomicUsize::new(2));
    for (file, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
        let (log, open) = (log.clone(), open.clone());
        std::thread::spawn(move || {
            copy(file, stream, &log);
            if open.fetch_sub(1, Ordering::SeqCst) == 1 {
                // Both streams ended: nothing more will come.
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
            }
        });
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
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
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    Ok(())
}

/// Copies one stream into the log until it ends.
fn copy(mut file: File, stream: Stream, log: &Mutex<CriLog>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        pending.extend_from_slice(&buf[..n]);
        let eof = n == 0;
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.feed(stream, &mut pending, eof) {
            eprintln!("berth log-shim: writing the log: {e}");
            pending.clear();
        }
        if eof {
            return;
        }
    }
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
