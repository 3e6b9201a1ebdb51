//! The runc containerd's runc shim runs for berth's tasks: found once at start, named
//! to the shim (runc options' `BinaryName`) so that the runc whose features berth
//! reports is the one that runs the containers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `runc` as a path: as given when it has a `/`, else the first executable of that
/// name in `PATH`. None when there is none (the shim then looks for `runc` itself,
/// and no optional feature is offered).
pub fn find(runc: &Path) -> Option<PathBuf> {
    if runc.components().count() > 1 {
        return Some(runc.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(runc))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `runc features` (runc >= 1.1) lists the `rro` mount option: runc makes
/// such bind mounts read-only with everything below them (mount_setattr). An older
/// runc would pass the option to mount(2) as data, which a bind mount ignores.
pub fn has_recursive_read_only(runc: &Path) -> bool {
    let output = match Command::new(runc).arg("features").output() {
        Ok(output) if output.status.success() => output.stdout,
        Ok(output) => {
            tracing::info!(runc = %runc.display(), status = %output.status, "runc has no features: no recursive read-only mounts on containerd");
            return false;
        }
        Err(e) => {
            tracing::info!(runc = %runc.display(), error = %e, "runc features: no recursive read-only mounts on containerd");
            return false;
        }
    };
    lists_recursive_read_only(&output)
}

/// Whether the JSON of `runc features` lists `rro` among its mount options.
fn lists_recursive_read_only(features: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Features {
        #[serde(rename = "mountOptions", default)]
        mount_options: Vec<String>,
    }
    serde_json::from_slice::<Features>(features)
        .is_ok_and(|f| f.mount_options.iter().any(|o| o == "rro"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rro_is_read_from_the_mount_options() {
        assert!(lists_recursive_read_only(
            br#"{"ociVersionMax":"1.1.0","mountOptions":["ro","rro","rbind"]}"#
        ));
        assert!(!lists_recursive_read_only(
            br#"{"ociVersionMax":"1.0.2","mountOptions":["ro","rbind"]}"#
        ));
        assert!(!lists_recursive_read_only(br#"{"ociVersionMax":"1.0.2"}"#));
        assert!(!lists_recursive_read_only(b"flag provided but not defined"));
    }

    #[test]
    fn a_name_is_looked_up_in_path_and_a_path_kept() {
        assert_eq!(
            find(Path::new("/opt/runc/bin/runc")),
            Some(PathBuf::from("/opt/runc/bin/runc"))
        );
        // `sh` is on every PATH these tests run with.
        let sh = find(Path::new("sh")).expect("sh in PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(find(Path::new("no-such-runc-here")), None);
    }
}
