//! Running one CNI plugin binary: the CNI_* environment, the config on stdin, a bounded
//! run time, and the plugin's JSON error turned into ours.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tracing::Instrument;

use super::CniError;
use crate::error::{Error, Result};
use crate::metrics::CniTimer;

const BACKEND: &str = "cni";

/// The PATH plugins get when berth has none: they exec `iptables`, `ip`, …
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A CNI operation berth runs (never CHECK: Debian's portmap 1.1.1 fails it for
/// IPv4-only pods, containernetworking/plugins#819, and CRI does not need it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CniCommand {
    /// Attach.
    Add,
    /// Detach.
    Del,
}

impl CniCommand {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
        }
    }
}

/// The attachment parameters every plugin of one ADD or DEL gets (the same for both).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Invocation<'a> {
    /// CNI_CONTAINERID: the pod's key.
    pub container_id: &'a str,
    /// CNI_NETNS; empty on a DEL whose namespace is gone.
    pub netns: &'a str,
    /// CNI_IFNAME.
    pub ifname: &'a str,
    /// CNI_ARGS.
    pub args: &'a str,
}

/// The plugin directories and how long one plugin may run.
#[derive(Debug, Clone)]
pub(crate) struct Plugins {
    dirs: Vec<PathBuf>,
    timeout: Duration,
}

impl Plugins {
    pub(crate) fn new(dirs: Vec<PathBuf>, timeout: Duration) -> Self {
        Plugins { dirs, timeout }
    }

    /// The first executable file named `ty` in the plugin dirs.
    pub(crate) fn find(&self, ty: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.dirs.iter().map(|d| d.join(ty)).find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }

    /// The dirs, as the plugins' CNI_PATH and for messages.
    pub(crate) fn cni_path(&self) -> String {
        let dirs: Vec<_> = self.dirs.iter().map(|d| d.to_string_lossy()).collect();
        dirs.join(":")
    }

    /// The environment of a plugin run: berth's own without any CNI_* variable (libcni
    /// does the same), plus the CNI parameters.
    pub(crate) fn env(&self, command: CniCommand, inv: &Invocation) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| !k.starts_with("CNI_"))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        env.extend([
            ("CNI_COMMAND".into(), command.as_str().into()),
            ("CNI_CONTAINERID".into(), inv.container_id.into()),
            ("CNI_NETNS".into(), inv.netns.into()),
            ("CNI_IFNAME".into(), inv.ifname.into()),
            ("CNI_ARGS".into(), inv.args.into()),
            ("CNI_PATH".into(), self.cni_path()),
        ]);
        env
    }

    /// Runs the plugin binary `bin` with `conf` on stdin. Returns its result (`None`
    /// when it printed nothing, as DEL does).
    pub(crate) async fn run(
        &self,
        command: CniCommand,
        bin: &Path,
        conf: &Value,
        inv: &Invocation<'_>,
    ) -> Result<Option<Value>> {
        // One span per plugin run: a plugin's ADD or DEL is what a slow network shows in.
        let span = tracing::debug_span!(
            "cni",
            otel.name = %format_args!("CNI {} {}", command.as_str(), conf["type"].as_str().unwrap_or("?")),
            cni.plugin = conf["type"].as_str().unwrap_or("?"),
            cni.network = conf["name"].as_str().unwrap_or("?"),
        );
        self.run_plugin(command, bin, conf, inv)
            .instrument(span)
            .await
    }

    async fn run_plugin(
        &self,
        command: CniCommand,
        bin: &Path,
        conf: &Value,
        inv: &Invocation<'_>,
    ) -> Result<Option<Value>> {
        let ty = conf["type"].as_str().unwrap_or("?");
        let network = conf["name"].as_str().unwrap_or("?");
        let mut timer = CniTimer::start(command.as_str(), network, ty);
        let what = || {
            format!(
                "CNI {} of plugin {ty} (network {}, pod {})",
                command.as_str(),
                network,
                inv.container_id
            )
        };
        let input = serde_json::to_vec(conf)
            .map_err(|e| Error::internal(BACKEND, format!("{}: encoding its config", what()), e))?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(self.env(command, inv))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A plugin that outlives its time is killed when the future is dropped.
            .kill_on_drop(true);
        let mut child = spawn(&mut cmd)
            .await
            .map_err(|e| Error::io(format!("{}: starting {}", what(), bin.display()), e))?;
        let stdin = child.stdin.take();
        let run = async move {
            let feed = async move {
                if let Some(mut s) = stdin {
                    // A plugin may exit without reading; its exit status tells what happened.
                    let _ = s.write_all(&input).await;
                }
            };
            let ((), out) = tokio::join!(feed, child.wait_with_output());
            out
        };
        let out = match tokio::time::timeout(self.timeout, run).await {
            Ok(out) => out.map_err(|e| Error::io(format!("{}: waiting", what()), e))?,
            Err(_) => {
                return Err(Error::DeadlineExceeded {
                    operation: what(),
                    after: self.timeout,
                })
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(CniError::PluginFailed {
                what: what(),
                code: failure_code(&out.stdout),
                message: failure_message(&out.stdout, &stderr, out.status),
            }
            .into());
        }
        if !stderr.trim().is_empty() {
            tracing::debug!(plugin = ty, stderr = %stderr.trim(), "CNI plugin wrote to stderr");
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            timer.succeeded();
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(v) if v.is_object() => {
                timer.succeeded();
                Ok(Some(v))
            }
            _ => Err(CniError::BadResult {
                what: what(),
                output: clip(&String::from_utf8_lossy(&out.stdout)).to_string(),
            }
            .into()),
        }
    }
}

/// Spawns, retrying briefly on ETXTBSY: a binary being written (a plugin upgrade, or a
/// test writing a fake plugin while another thread forks) cannot be executed for a moment.
async fn spawn(cmd: &mut Command) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
            other => return other,
        }
    }
}

/// The code of the CNI error object a failed plugin printed, if it printed one.
pub(crate) fn failure_code(stdout: &[u8]) -> Option<u64> {
    let err = serde_json::from_slice::<Value>(stdout).ok()?;
    err.get("msg")?;
    err.get("code")?.as_u64()
}

/// What a failed plugin said: its CNI error object (`code`, `msg`, `details`) on stdout,
/// else whatever it wrote, else its exit status.
pub(crate) fn failure_message(
    stdout: &[u8],
    stderr: &str,
    status: std::process::ExitStatus,
) -> String {
    if let Ok(Value::Object(err)) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = err.get("msg").and_then(Value::as_str) {
            let mut out = msg.to_string();
            if let Some(d) = err
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                out.push_str(": ");
                out.push_str(d);
            }
            if let Some(code) = err.get("code").and_then(Value::as_u64) {
                out.push_str(&format!(" (CNI error code {code})"));
            }
            return out;
        }
    }
    let stdout = String::from_utf8_lossy(stdout);
    let text = [stdout.trim(), stderr.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        format!("exited with {status} and no message")
    } else {
        format!("exited with {status}: {}", clip(&text))
    }
}

/// The last 2000 bytes of a long text (the end of a plugin's output says the most).
fn clip(s: &str) -> &str {
    let s = s.trim();
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn status(code: i32) -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn plugin_json_errors_are_parsed() {
        let out =
            br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}"#;
        assert_eq!(
            failure_message(out, "ignored", status(1)),
            "invalid config: no bridge (CNI error code 7)"
        );
        let out = br#"{"code":999,"msg":"ARGS: unknown args"}"#;
        assert_eq!(
            failure_message(out, "", status(1)),
            "ARGS: unknown args (CNI error code 999)"
        );
    }

    #[test]
    fn other_failures_keep_what_the_plugin_wrote() {
        assert_eq!(
            failure_message(b"", "panic: boom\n", status(2)),
            "exited with exit status: 2: panic: boom"
        );
        assert_eq!(
            failure_message(b"not json", "", status(1)),
            "exited with exit status: 1: not json"
        );
        assert_eq!(
            failure_message(b"", "", status(3)),
            "exited with exit status: 3 and no message"
        );
        let long = "x".repeat(5000) + "END";
        assert!(failure_message(b"", &long, status(1)).ends_with("xEND"));
        assert!(failure_message(b"", &long, status(1)).len() < 2100);
    }

    #[test]
    fn env_has_each_cni_parameter_once() {
        let p = Plugins::new(
            vec![PathBuf::from("/a"), PathBuf::from("/b")],
            Duration::from_secs(1),
        );
        let inv = Invocation {
            container_id: "pod1",
            netns: "/run/x/netns/pod1",
            ifname: "eth0",
            args: "IgnoreUnknown=1",
        };
        let env = p.env(CniCommand::Del, &inv);
        let get = |k: &str| {
            let v: Vec<_> = env
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(v.len(), 1, "{k} set once");
            v[0].to_string()
        };
        assert_eq!(get("CNI_COMMAND"), "DEL");
        assert_eq!(get("CNI_CONTAINERID"), "pod1");
        assert_eq!(get("CNI_NETNS"), "/run/x/netns/pod1");
        assert_eq!(get("CNI_IFNAME"), "eth0");
        assert_eq!(get("CNI_ARGS"), "IgnoreUnknown=1");
        assert_eq!(get("CNI_PATH"), "/a:/b");
        assert!(!get("PATH").is_empty());
        assert_eq!(env.iter().filter(|(k, _)| k.starts_with("CNI_")).count(), 6);
    }
}
