//! The files a pod's containers share: `/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf` (bind-mounted into each container unless the request mounts its
//! own) and the pod's `/dev/shm` tmpfs.

use std::fs;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, IoContext, Result};
use crate::types::DnsConfig;

/// Size of a pod's `/dev/shm` (containerd's and Docker's default).
const SHM_SIZE: &str = "65536k";

/// `/etc/resolv.conf` for `dns`; `None` when the node's should be used (no DNS config,
/// or an empty one).
pub fn resolv_conf(dns: Option<&DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

/// `/etc/hosts` of a pod with its own network: loopback names, and the pod's hostname
/// on its primary IP when it has one.
pub fn hosts(hostname: &str, ip: Option<&str>) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).io_context(|| format!("writing {}", path.display()))
}

fn copy_host(file: &str, to: &Path) -> Result<()> {
    match fs::read_to_string(file) {
        Ok(text) => write(to, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => write(to, ""),
        Err(e) => Err(Error::io(format!("reading {file}"), e)),
    }
}

/// Writes `hostname`, `resolv.conf` and `hosts` into `etc`. A host-network pod gets
/// the node's hosts file; one with its own network gets [`hosts`].
pub fn write_etc(
    etc: &Path,
    hostname: &str,
    dns: Option<&DnsConfig>,
    host_network: bool,
    ip: Option<&str>,
) -> Result<()> {
    fs::create_dir_all(etc).io_context(|| format!("creating {}", etc.display()))?;
    write(&etc.join("hostname"), &format!("{hostname}\n"))?;
    match resolv_conf(dns) {
        Some(text) => write(&etc.join("resolv.conf"), &text)?,
        None => copy_host("/etc/resolv.conf", &etc.join("resolv.conf"))?,
    }
    if host_network {
        copy_host("/etc/hosts", &etc.join("hosts"))
    } else {
        write(&etc.join("hosts"), &hosts(hostname, ip))
    }
}

/// Mounts the pod's `/dev/shm` tmpfs at `dir` (idempotent: an existing mount stays).
pub fn mount_shm(dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    let mut data = format!("mode=1777,size={SHM_SIZE}");
    if let Some((uid, gid)) = owner {
        data.push_str(&format!(",uid={uid},gid={gid}"));
    }
    mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mounting the pod's /dev/shm at {}", dir.display()),
            e.into(),
        )
    })
}

/// Unmounts the pod's `/dev/shm` at `dir` and removes the directory. Idempotent.
pub fn unmount_shm(dir: &Path) -> Result<()> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::io(format!("unmounting {}", dir.display()), e.into())),
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// True when `dir` is the root of a mount (its device differs from its parent's, or
/// mountinfo lists it).
fn is_mount_point(dir: &Path) -> Result<bool> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").io_context(|| "reading /proc/self/mountinfo")?;
    let target = dir
        .canonicalize()
        .io_context(|| format!("resolving {}", dir.display()))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|m| Path::new(m) == target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_has_search_nameservers_and_options() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "1.1.1.1".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn no_or_empty_dns_means_the_nodes_file() {
        assert_eq!(resolv_conf(None), None);
        assert_eq!(resolv_conf(Some(&DnsConfig::default())), None);
    }

    #[test]
    fn hosts_names_the_pod_on_its_ip() {
        let text = hosts("web-0", Some("10.85.0.7"));
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.85.0.7\tweb-0\n"), "{text}");
        assert!(!hosts("web-0", None).contains("web-0"));
    }

    #[test]
    fn write_etc_writes_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into()],
            ..Default::default()
        };
        write_etc(&etc, "pod-a", Some(&dns), false, Some("10.85.0.2")).unwrap();
        assert_eq!(fs::read_to_string(etc.join("hostname")).unwrap(), "pod-a\n");
        assert_eq!(
            fs::read_to_string(etc.join("resolv.conf")).unwrap(),
            "nameserver 10.0.0.10\n"
        );
        assert!(fs::read_to_string(etc.join("hosts"))
            .unwrap()
            .contains("10.85.0.2\tpod-a"));
    }
}
