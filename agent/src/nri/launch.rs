//! Pre-installed plugins, as NRI's Go adaptation launches them: every executable
//! regular file `<2-digit index>-<name>` in `plugin_path`, in name order, gets one end
//! of a socketpair as fd 3 (`NRI_PLUGIN_SOCKET=3`), its name and index in
//! `NRI_PLUGIN_NAME` and `NRI_PLUGIN_IDX`, and no other environment; it then speaks
//! the same multiplexed connection and registers as a plugin that connected. Its
//! config, `<plugin_config_path>/<index>-<name>.conf` or else `<name>.conf`, goes to
//! it in `Configure`.
//!
//! Unlike the Go adaptation, berth only launches files owned by root and not writable
//! by group or other, from a directory likewise, and never follows a symlink: the
//! plugin runs as root with berth's privileges, so whoever can write it is root.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use berth_proto::nri as api;

use super::plugin;

/// A plugin found in `plugin_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The two-digit index.
    pub idx: String,
    /// The name after the index.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its config file's content; empty without one.
    pub config: String,
}

/// `<index>-<name>` split, when the index is two digits and the name one NRI
/// accepts in a registration.
pub fn parse_name(file: &str) -> Option<(&str, &str)> {
    let (idx, name) = file.split_once('-')?;
    let request = api::RegisterPluginRequest {
        plugin_name: name.into(),
        plugin_idx: idx.into(),
        nri_version: String::new(),
    };
    plugin::checked(&request).ok().map(|()| (idx, name))
}

/// Whether root alone can change it: owned by root, not writable by group or other.
fn root_only(meta: &std::fs::Metadata) -> bool {
    meta.uid() == 0 && meta.mode() & 0o022 == 0
}

/// The plugins in `dir` berth may launch, in name order (so index order), each with
/// its config from `config_dir`. A missing `dir` holds none; a file that breaks a
/// rule is skipped with a warning (the Go adaptation refuses them all for one badly
/// named file).
pub fn discover(dir: &Path, config_dir: &Path) -> Vec<Found> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "reading the NRI plugin directory");
            return Vec::new();
        }
    };
    match std::fs::metadata(dir) {
        Ok(meta) if root_only(&meta) => {}
        _ => {
            tracing::warn!(
                dir = %dir.display(),
                "NRI plugin directory not root's alone (owner root, not group/other writable); no plugin launched"
            );
            return Vec::new();
        }
    }
    let mut found = Vec::new();
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for file in names {
        let path = dir.join(&file);
        // Not followed: a symlink is its own file, refused below.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.mode() & 0o111 == 0 {
            continue;
        }
        let Some((idx, name)) = file.to_str().and_then(parse_name) else {
            tracing::warn!(file = %path.display(), "NRI plugin not named <2-digit index>-<name>; not launched");
            continue;
        };
        if !root_only(&meta) {
            tracing::warn!(file = %path.display(), "NRI plugin not owned by root or writable by group/other; not launched");
            continue;
        }
        let config = match config_of(config_dir, idx, name) {
            Ok(config) => config,
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "NRI plugin config unreadable; not launched");
                continue;
            }
        };
        found.push(Found {
            idx: idx.into(),
            name: name.into(),
            path,
            config,
        });
    }
    found
}

/// `<index>-<name>.conf`, else `<name>.conf`, else nothing.
fn config_of(config_dir: &Path, idx: &str, name: &str) -> std::io::Result<String> {
    for file in [format!("{idx}-{name}.conf"), format!("{name}.conf")] {
        match std::fs::read_to_string(config_dir.join(file)) {
            Ok(config) => return Ok(config),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(String::new())
}

/// Starts `plugin` with the peer end of a socketpair as fd 3; returns the process
/// (killed if dropped) and berth's end.
pub fn launch(plugin: &Found) -> std::io::Result<(tokio::process::Child, tokio::net::UnixStream)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let fd = theirs.as_raw_fd();
    let mut command = tokio::process::Command::new(&plugin.path);
    command
        .env_clear()
        .env("NRI_PLUGIN_NAME", &plugin.name)
        .env("NRI_PLUGIN_IDX", &plugin.idx)
        .env("NRI_PLUGIN_SOCKET", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its complaints land in berth's log.
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) on an
    // fd this process owns until `theirs` drops after the spawn.
    unsafe {
        command.pre_exec(move || {
            // dup2 clears close-on-exec on the copy; an fd already 3 keeps it, so clear it.
            let ok = if fd == 3 {
                libc::fcntl(fd, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = command.spawn()?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok((child, tokio::net::UnixStream::from_std(ours)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn plugin_file_names_follow_nri_rules() {
        assert_eq!(parse_name("10-inject"), Some(("10", "inject")));
        // The name may hold dashes: only the first one splits.
        assert_eq!(
            parse_name("05-device-injector"),
            Some(("05", "device-injector"))
        );
        for bad in [
            "inject",
            "1-inject",
            "100-inject",
            "ab-inject",
            "10-",
            "10-a b",
            "10-a/b",
            "-10",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn discovery_sorts_skips_and_reads_configs() {
        let dir = tempfile::tempdir().unwrap();
        let conf = tempfile::tempdir().unwrap();
        let write = |name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("20-b", 0o755);
        write("10-a", 0o700);
        write("30-writable", 0o775);
        write("40-not-executable", 0o644);
        write("bad-name", 0o755);
        std::os::unix::fs::symlink(dir.path().join("10-a"), dir.path().join("50-link")).unwrap();
        std::fs::create_dir(dir.path().join("60-dir")).unwrap();
        std::fs::write(conf.path().join("10-a.conf"), "indexed").unwrap();
        std::fs::write(conf.path().join("a.conf"), "plain").unwrap();
        std::fs::write(conf.path().join("b.conf"), "plain b").unwrap();
        let found = discover(dir.path(), conf.path());
        let seen: Vec<_> = found
            .iter()
            .map(|f| (f.idx.as_str(), f.name.as_str(), f.config.as_str()))
            .collect();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(seen, [("10", "a", "indexed"), ("20", "b", "plain b")]);
        } else {
            // Not root's files: none qualifies.
            assert!(seen.is_empty(), "{seen:?}");
        }
        assert!(discover(&dir.path().join("missing"), conf.path()).is_empty());
    }
}
