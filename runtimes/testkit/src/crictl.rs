//! Running the real crictl (cri-tools, built by `critest/tools`) against a CRI socket:
//! berth's own or the streaming tests' stub.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one crictl call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The crictl binary: `$BERTH_TOOLS_DIR/bin/crictl`, else `<repo>/target/tools/bin/crictl`
/// (where `critest/tools` and `hack/install-deps --test` put it).
pub fn binary() -> PathBuf {
    let tools = std::env::var_os("BERTH_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools"));
    let crictl = tools.join("bin/crictl");
    assert!(
        crictl.exists(),
        "{} is missing: run critest/tools (or set BERTH_TOOLS_DIR)",
        crictl.display()
    );
    crictl
}

/// crictl with a config file of its own, pointed at one CRI socket.
pub struct Crictl {
    bin: PathBuf,
    config: PathBuf,
}

/// What one call printed and how it ended.
pub struct Run {
    /// Standard output as bytes (a terminal's output need not be UTF-8).
    pub raw_stdout: Vec<u8>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// The exit code; `None` when a signal ended crictl.
    pub code: Option<i32>,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            raw_stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code(),
        }
    }
}

impl Crictl {
    /// crictl talking to the CRI socket `socket`, its config in `dir`.
    pub fn new(dir: &Path, socket: &Path) -> Crictl {
        let config = dir.join("crictl.yaml");
        let endpoint = format!("unix://{}", socket.display());
        std::fs::write(
            &config,
            format!("runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\ntimeout: 10\n"),
        )
        .unwrap();
        Crictl {
            bin: binary(),
            config,
        }
    }

    /// A crictl command with `args`, killed if the test drops it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .kill_on_drop(true);
        command
    }

    /// The command line of crictl with `args`, quoted for `sh` (for a terminal
    /// multiplexer that runs it).
    pub fn shell_line(&self, args: &[&str]) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut words = vec![
            quote(&self.bin.to_string_lossy()),
            "--config".into(),
            quote(&self.config.to_string_lossy()),
        ];
        words.extend(args.iter().map(|a| quote(a)));
        words.join(" ")
    }

    /// Runs crictl with `args`, feeding `stdin` (then closing it) when given.
    pub async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut command = self.command(args);
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting crictl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input).await.unwrap();
            drop(pipe);
        }
        let output = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("crictl {args:?} did not finish in {CALL_TIMEOUT:?}"))
            .unwrap();
        output.into()
    }
}
