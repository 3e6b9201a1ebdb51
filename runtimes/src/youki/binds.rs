//! The request's bind mounts, checked against the host before the container is made
//! (the agent's spec builder leaves these to the backend, which sees the host): the
//! source must exist; symlinks in it are resolved (a host path behind a symlink mounts
//! its target); `rshared` needs the host mount holding the source to be shared, and
//! `rslave` shared or a slave, or the propagation asked for could not happen.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::error::{Error, Result};

/// One line of `/proc/self/mountinfo`: where it is mounted and its propagation tags.
#[derive(Debug, PartialEq, Eq)]
struct MountLine {
    mount_point: PathBuf,
    shared: bool,
    slave: bool,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let mount_point = unescape(fields.get(4)?);
            let tags: Vec<&str> = fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .copied()
                .collect();
            Some(MountLine {
                mount_point: PathBuf::from(mount_point),
                shared: tags.iter().any(|t| t.starts_with("shared:")),
                slave: tags.iter().any(|t| t.starts_with("master:")),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The mount holding `path`: the last-mounted one with the longest matching mount point.
fn holder<'a>(mounts: &'a [MountLine], path: &Path) -> Option<&'a MountLine> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
}

/// Checks `mount`'s propagation against the host mount holding its resolved source.
fn check_propagation(mount: &Mount, source: &Path, mounts: &[MountLine]) -> Result<()> {
    let options = mount.options().clone().unwrap_or_default();
    let wants = |o: &str| options.iter().any(|x| x == o);
    let (needs_shared, needs_slave) = (
        wants("rshared") || wants("shared"),
        wants("rslave") || wants("slave"),
    );
    if !needs_shared && !needs_slave {
        return Ok(());
    }
    let Some(host) = holder(mounts, source) else {
        return Ok(());
    };
    let ok = if needs_shared {
        host.shared
    } else {
        host.shared || host.slave
    };
    if ok {
        return Ok(());
    }
    let kind = if needs_shared {
        "shared"
    } else {
        "shared or slave"
    };
    Err(Error::InvalidSpec(format!(
        "CreateContainer: mount {} needs the host path {} to be on a {kind} mount, but {} is not",
        mount.destination().display(),
        source.display(),
        host.mount_point.display()
    )))
}

/// Resolves and checks every `bind` mount of `mounts` (the request's).
pub fn resolve(mounts: &mut [Mount]) -> Result<()> {
    let mut table = None;
    for m in mounts
        .iter_mut()
        .filter(|m| m.typ().as_deref() == Some("bind"))
    {
        let Some(source) = m.source().clone() else {
            return Err(Error::InvalidSpec(format!(
                "CreateContainer: bind mount {} has no host path",
                m.destination().display()
            )));
        };
        let resolved = fs::canonicalize(&source).map_err(|e| {
            Error::InvalidSpec(format!(
                "CreateContainer: host path {} of mount {}: {e}",
                source.display(),
                m.destination().display()
            ))
        })?;
        if table.is_none() {
            let text = fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
            table = Some(parse_mountinfo(&text));
        }
        check_propagation(m, &resolved, table.as_deref().unwrap_or_default())?;
        m.set_source(Some(resolved));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::MountBuilder;

    use super::*;

    const INFO: &str = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
        30 22 0:5 / /mnt/private rw - tmpfs tmpfs rw\n\
        31 22 0:6 / /mnt/slave rw master:7 - tmpfs tmpfs rw\n\
        32 22 0:7 / /mnt/with\\040space rw shared:9 - tmpfs tmpfs rw\n";

    fn bind(src: &Path, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source(src)
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn mountinfo_lines_give_mount_points_and_tags() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 4);
        assert!(m[0].shared && !m[0].slave);
        assert!(!m[1].shared && !m[1].slave);
        assert!(m[2].slave);
        assert_eq!(m[3].mount_point, Path::new("/mnt/with space"));
    }

    #[test]
    fn propagation_is_checked_against_the_holding_mount() {
        let m = parse_mountinfo(INFO);
        let check = |src: &str, opts: &[&str]| {
            check_propagation(&bind(Path::new(src), opts), Path::new(src), &m)
        };
        check("/var/x", &["rbind", "rshared"]).unwrap();
        check("/mnt/slave/x", &["rbind", "rslave"]).unwrap();
        check("/mnt/private/x", &["rbind", "rprivate"]).unwrap();
        let err = check("/mnt/private/x", &["rbind", "rshared"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shared mount") && err.contains("/mnt/private"),
            "{err}"
        );
        assert!(check("/mnt/slave/x", &["rbind", "rshared"]).is_err());
        assert!(check("/mnt/private/x", &["rbind", "rslave"]).is_err());
    }

    #[test]
    fn missing_sources_are_refused_and_symlinks_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let mut mounts = vec![bind(&dir.path().join("link"), &["rbind", "rprivate"])];
        resolve(&mut mounts).unwrap();
        assert_eq!(
            mounts[0].source().as_deref(),
            Some(real.canonicalize().unwrap().as_path())
        );
        let mut missing = vec![bind(&dir.path().join("nope"), &["rbind"])];
        let err = resolve(&mut missing).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("/data"), "{err}");
    }
}
