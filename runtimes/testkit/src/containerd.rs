//! A containerd of the test's own for the containerd backend's tests, started and ended
//! by `hack/containerd` (the one place that knows how: the same config serves the
//! README and these tests).
//!
//! Each [`Containerd`] lives in a fresh directory below the temp dir: its config, root,
//! state, gRPC socket (`containerd.sock`, ttrpc next to it), log and pid file. Its CRI
//! plugins are disabled, its shim is the containerd-shim-runc-v2 of the same version, and
//! the shim runs Debian's runc. Needs root; version 2.4 needs the binaries
//! `hack/containerd build` makes (`hack/install-deps --test` runs it; `start` builds them
//! when missing, which takes minutes).
//!
//! A test connects to [`Containerd::socket`] (`runtimes::containerd::connect`), can
//! [`Containerd::kill9`] and [`Containerd::restart`] it, and reads its log and `ctr`.
//!
//! Dropping it removes every task and container it holds (through `ctr`; after a
//! [`Containerd::kill9`] without a restart, containerd is started once more for that,
//! since ending a shim would leave its container running), stops containerd, ends shims
//! left serving it, unmounts what is mounted below its directory and removes the
//! directory (`hack/containerd purge`). Tasks a test starts should keep their runc root
//! and cgroups to themselves (runc's default root, `/run/containerd/runc/<namespace>`,
//! is shared by every containerd on the machine).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The containerd versions `hack/containerd start --version` knows: the one built from
/// source (CI's) and Debian's.
pub const VERSIONS: [&str; 2] = ["2.4", "1.6"];

/// `hack/containerd` in this repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/containerd")
}

/// A running containerd in a temp dir of its own; purged on drop.
pub struct Containerd {
    dir: PathBuf,
    version: String,
    socket: PathBuf,
}

impl Containerd {
    /// containerd 2.4, built by `hack/containerd build`.
    pub fn start() -> Containerd {
        Containerd::start_version("2.4")
    }

    /// containerd `version`: `2.4` (built from source) or `1.6` (Debian's).
    pub fn start_version(version: &str) -> Containerd {
        crate::require::root("containerd runs as root");
        assert!(VERSIONS.contains(&version), "no containerd {version}");
        // Kept, not a TempDir: its removal must not descend into mounts a shim left,
        // `hack/containerd purge` unmounts them first and stays on one file system.
        let dir = tempfile::Builder::new()
            .prefix("berth-ctrd-")
            .tempdir()
            .unwrap()
            .keep();
        let mut containerd = Containerd {
            dir,
            version: version.to_string(),
            socket: PathBuf::new(),
        };
        containerd.launch();
        containerd
    }

    fn launch(&mut self) {
        let dir = self.dir.to_str().unwrap().to_string();
        let out = hack(&["start", &dir, "--version", &self.version]);
        self.socket = PathBuf::from(out.lines().last().unwrap_or_default());
        assert!(
            self.socket.is_absolute(),
            "hack/containerd start printed no socket: {out:?}"
        );
    }

    /// Its gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its directory: `config.toml`, `root/`, `state/`, `containerd.log`, …
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version it was started as: `2.4` or `1.6`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// containerd's pid (of its current run).
    pub fn pid(&self) -> i32 {
        let pid = std::fs::read_to_string(self.dir.join("containerd.pid")).unwrap_or_else(|e| {
            panic!("containerd in {} has no pid file: {e}", self.dir.display())
        });
        pid.trim().parse().unwrap()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Kills containerd with SIGKILL and waits until it is gone; its shims (and their
    /// containers) live on, its socket file stays. [`Containerd::restart`] brings it back.
    pub fn kill9(&mut self) {
        let pid = self.pid();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "containerd pid {pid} survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.dir.join("containerd.pid"));
    }

    /// Stops containerd if it runs (SIGTERM; shims live on) and starts it again on the
    /// same directory, socket and state; returns when it answers.
    pub fn restart(&mut self) {
        hack(&["stop", self.dir.to_str().unwrap()]);
        self.launch();
    }

    /// `ctr ARGS…` against it (its own version's ctr); the output of a call that must
    /// succeed.
    pub fn ctr(&self, args: &[&str]) -> String {
        let mut all = vec!["ctr", self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        hack(&all)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let out = Command::new(script())
            .args(["purge", self.dir.to_str().unwrap()])
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "hack/containerd purge {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("hack/containerd purge {}: {e}", self.dir.display()),
        }
    }
}

/// Whether `pid` runs (a zombie nobody reaped yet does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => {
            !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// `hack/containerd ARGS…`, which must succeed; its standard output.
fn hack(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("hack/containerd");
    assert!(
        out.status.success(),
        "hack/containerd {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
