//! The CNI config template rendered with the node's pod CIDR, which kubelet sends with
//! `UpdateRuntimeConfig` once the node has one (containerd's `conf_template`). Only the
//! `{{.PodCIDR}}` action is understood (the one containerd's examples use): anything
//! else between `{{` and `}}` is refused when the template is read, so an operator
//! learns at start-up, not when a pod's ADD fails.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::conflist::{write_atomically, NetworkList};
use crate::error::{Error, IoContext, Result};

/// The file the rendered template becomes inside `conf_dir`: sorted before berth's
/// default (`10-berth.conflist`) and the usual `10-*` names, so the network kubelet
/// asked for is the one used.
pub const RENDERED_CONFLIST_FILE: &str = "05-berth-pod-cidr.conflist";

/// Where the last pod CIDR is kept (under the run dir), so a restarted berth renders
/// the same network without waiting for kubelet to send it again.
const POD_CIDR_FILE: &str = "pod-cidr";

/// A parsed template: literal text and the places the pod CIDR goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    /// Literal pieces; the CIDR goes between each two.
    pieces: Vec<String>,
    path: PathBuf,
}

impl Template {
    /// Reads and parses the template at `path`.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .io_context(|| format!("reading the CNI config template {}", path.display()))?;
        Self::parse(&text)
            .map(|pieces| Template {
                pieces,
                path: path.to_path_buf(),
            })
            .map_err(|why| {
                Error::InvalidSpec(format!("network.conf_template {}: {why}", path.display()))
            })
    }

    fn parse(text: &str) -> std::result::Result<Vec<String>, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let close = rest[open..]
                .find("}}")
                .map(|c| open + c)
                .ok_or_else(|| format!("an action opened at byte {open} is never closed"))?;
            let action =
                rest[open + 2..close].trim_matches(|c: char| c == '-' || c.is_whitespace());
            if action != ".PodCIDR" {
                return Err(format!(
                    "{{{{{action}}}}} is not supported (only {{{{.PodCIDR}}}})"
                ));
            }
            pieces.push(rest[..open].to_string());
            rest = &rest[close + 2..];
        }
        pieces.push(rest.to_string());
        Ok(pieces)
    }

    /// The config for `cidr`, checked to be a valid network list.
    fn render(&self, cidr: &str) -> Result<Value> {
        let text = self.pieces.join(cidr);
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidSpec(format!(
                "network.conf_template {} rendered with {cidr} is not JSON: {e}",
                self.path.display()
            ))
        })?;
        NetworkList::from_value(&value).map_err(|why| {
            Error::InvalidSpec(format!(
                "network.conf_template {} rendered with {cidr} is not a CNI network list: {why}",
                self.path.display()
            ))
        })?;
        Ok(value)
    }

    /// The network list the template makes, with a documentation CIDR (for checks
    /// before kubelet sent the real one).
    pub(crate) fn render_example(&self) -> Result<NetworkList> {
        let value = self.render("192.0.2.0/24")?;
        NetworkList::from_value(&value).map_err(Error::InvalidSpec)
    }

    /// Renders the template for `cidr` into `conf_dir`, replacing the file only when
    /// its content changes (a reader never sees half a file). Returns whether it wrote.
    pub(crate) fn write(&self, conf_dir: &Path, cidr: &str) -> Result<bool> {
        let value = self.render(cidr)?;
        let mut text = serde_json::to_vec_pretty(&value).unwrap_or_default();
        text.push(b'\n');
        let target = conf_dir.join(RENDERED_CONFLIST_FILE);
        if fs::read(&target).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        write_atomically(conf_dir, RENDERED_CONFLIST_FILE, &text)?;
        Ok(true)
    }
}

/// The CIDRs kubelet sends in `pod_cidr`: comma-separated (dual-stack nodes have two).
/// Empty means none; anything that is not `address/length` is refused.
pub fn parse_pod_cidrs(pod_cidr: &str) -> Result<Vec<String>> {
    let cidrs: Vec<&str> = pod_cidr
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for c in &cidrs {
        let ok = c.split_once('/').is_some_and(|(addr, len)| {
            let max = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            len.parse::<u8>().is_ok_and(|l| l <= max)
        });
        if !ok {
            return Err(Error::InvalidSpec(format!(
                "pod CIDR {c:?} is not an address/prefix-length like 10.244.1.0/24"
            )));
        }
    }
    Ok(cidrs.into_iter().map(str::to_string).collect())
}

/// The pod CIDR recorded under `run_dir`, if any.
pub(crate) fn recorded(run_dir: &Path) -> Option<String> {
    fs::read_to_string(run_dir.join(POD_CIDR_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Records `pod_cidr` under `run_dir`.
pub(crate) fn record(run_dir: &Path, pod_cidr: &str) -> Result<()> {
    write_atomically(run_dir, POD_CIDR_FILE, format!("{pod_cidr}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{ .PodCIDR }}"}]]}}]}"#;

    #[test]
    fn only_the_pod_cidr_action_is_understood() {
        assert_eq!(
            Template::parse("a{{.PodCIDR}}b{{- .PodCIDR -}}").unwrap(),
            ["a", "b", ""]
        );
        for bad in [
            "{{.Routes}}",
            "{{range .PodCIDRRanges}}x{{end}}",
            "{{.PodCIDR",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_into_the_conf_dir_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, TEMPLATE).unwrap();
        let t = Template::read(&path).unwrap();
        let conf = dir.path().join("net.d");
        assert!(t.write(&conf, "10.244.1.0/24").unwrap());
        assert!(!t.write(&conf, "10.244.1.0/24").unwrap());
        let (list, file) = super::super::conflist::load(&conf).unwrap();
        assert_eq!(file, conf.join(RENDERED_CONFLIST_FILE));
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert!(t.write(&conf, "10.244.2.0/24").unwrap());
    }

    #[test]
    fn a_rendering_that_is_no_network_list_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, r#"{"subnet": "{{.PodCIDR}}"}"#).unwrap();
        let err = Template::read(&path)
            .unwrap()
            .write(dir.path(), "10.0.0.0/8")
            .unwrap_err();
        assert!(err.to_string().contains("not a CNI network list"), "{err}");
        assert!(!dir.path().join(RENDERED_CONFLIST_FILE).exists());
    }

    #[test]
    fn pod_cidrs_are_checked() {
        assert_eq!(
            parse_pod_cidrs("10.244.1.0/24, fd00:1::/64").unwrap(),
            ["10.244.1.0/24", "fd00:1::/64"]
        );
        assert!(parse_pod_cidrs("").unwrap().is_empty());
        for bad in [
            "10.244.1.0",
            "10.244.1.0/33",
            "fd00::/129",
            "x/8",
            "10.0.0.0/8,bad",
        ] {
            assert!(parse_pod_cidrs(bad).is_err(), "{bad}");
        }
    }
}
