//! Who a container's process runs as: a [`UserRequest`] resolved against the image's
//! `/etc/passwd` and `/etc/group`, read from the container's rootfs with every path
//! resolved inside it (a symlinked `/etc/passwd` cannot point at the host's).
//!
//! Rules (runc's and containerd's): a user name must exist; a numeric uid need not, and
//! then its group is 0; the primary group is the passwd entry's unless a gid or group
//! name is asked for (a name must exist). Supplemental groups start with the primary
//! group; the Merge policy adds the image's groups that list the user as a member; the
//! requested groups come last. Duplicates are dropped, order kept.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::types::{ResolvedUser, SupplementalGroupsPolicy, UserRequest};

/// One `/etc/passwd` entry (the fields that matter).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `request` against the text of the image's passwd and group files (empty
/// when the image has none).
fn resolve_with(request: &UserRequest, passwd: &str, group: &str) -> Result<ResolvedUser> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (uid, mut gid, name) = match (&request.username, request.uid) {
        (Some(name), _) => {
            let entry = users.iter().find(|u| &u.name == name).ok_or_else(|| {
                Error::InvalidSpec(format!("user {name:?} is not in the image's /etc/passwd"))
            })?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        }
        (None, uid) => {
            let uid = uid.unwrap_or(0);
            match users.iter().find(|u| u.uid == uid) {
                Some(entry) => (uid, entry.gid, Some(entry.name.clone())),
                None => (uid, 0, None),
            }
        }
    };
    if let Some(g) = request.gid {
        gid = g;
    } else if let Some(group_name) = &request.group {
        gid = groups
            .iter()
            .find(|g| &g.name == group_name)
            .map(|g| g.gid)
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "group {group_name:?} is not in the image's /etc/group"
                ))
            })?;
    }
    let mut supplemental = vec![gid];
    if request.policy == SupplementalGroupsPolicy::Merge {
        if let Some(name) = &name {
            supplemental.extend(
                groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == name))
                    .map(|g| g.gid),
            );
        }
    }
    supplemental.extend(&request.supplemental_groups);
    let mut seen = std::collections::HashSet::new();
    supplemental.retain(|g| seen.insert(*g));
    Ok(ResolvedUser {
        uid,
        gid,
        supplemental_groups: supplemental,
    })
}

/// Reads `rel` (relative to `rootfs`) with every component resolved inside `rootfs`;
/// empty when the file does not exist. Capped at 4 MiB.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String> {
    let root = File::open(rootfs)
        .map_err(|e| Error::io(format!("opening the rootfs {}", rootfs.display()), e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(root.as_raw_fd(), rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(String::new()),
        Err(e) => {
            return Err(Error::io(
                format!("opening /{rel} in {}", rootfs.display()),
                e.into(),
            ))
        }
    };
    // SAFETY: openat2 returned a new descriptor we now own.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut text = String::new();
    file.take(4 << 20)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("reading /{rel} in {}", rootfs.display()), e))?;
    Ok(text)
}

/// Resolves `request` against the image files in the container's `rootfs`.
pub fn resolve(rootfs: &Path, request: &UserRequest) -> Result<ResolvedUser> {
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    resolve_with(request, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        default-user:x:1000:1000::/home/default-user:/bin/sh\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
        default-user:x:1000:\n\
        group-defined-in-image:x:50000:default-user\n\
        wheel:x:10:root, default-user\n\
        nogroup:x:65534:\n";

    fn req() -> UserRequest {
        UserRequest::default()
    }

    fn resolve(r: &UserRequest) -> Result<ResolvedUser> {
        resolve_with(r, PASSWD, GROUP)
    }

    #[test]
    fn nothing_asked_is_root_with_roots_groups() {
        let u = resolve(&req()).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.supplemental_groups, vec![0, 10]);
    }

    #[test]
    fn a_name_takes_uid_and_group_from_passwd() {
        let r = UserRequest {
            username: Some("default-user".into()),
            ..req()
        };
        let u = resolve(&r).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.supplemental_groups, vec![1000, 50000, 10]);
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let r = UserRequest {
            username: Some("ghost".into()),
            ..req()
        };
        let err = resolve(&r).unwrap_err().to_string();
        assert!(
            err.contains("ghost") && err.contains("/etc/passwd"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_uid_runs_with_group_0() {
        let r = UserRequest {
            uid: Some(4242),
            ..req()
        };
        let u = resolve(&r).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.supplemental_groups, vec![0]);
    }

    #[test]
    fn merge_adds_image_groups_then_requested_ones() {
        // critest's SupplementalGroupsPolicy Merge: uid 1000 in group 50000 in the image.
        let r = UserRequest {
            uid: Some(1000),
            supplemental_groups: vec![1234],
            policy: SupplementalGroupsPolicy::Merge,
            ..req()
        };
        assert_eq!(
            resolve(&r).unwrap().supplemental_groups,
            vec![1000, 50000, 10, 1234]
        );
    }

    #[test]
    fn strict_keeps_only_the_primary_and_requested_groups() {
        let r = UserRequest {
            uid: Some(1000),
            supplemental_groups: vec![1234, 1000],
            policy: SupplementalGroupsPolicy::Strict,
            ..req()
        };
        assert_eq!(resolve(&r).unwrap().supplemental_groups, vec![1000, 1234]);
    }

    #[test]
    fn a_gid_or_group_name_overrides_the_primary_group() {
        let r = UserRequest {
            uid: Some(1000),
            gid: Some(7),
            ..req()
        };
        assert_eq!(resolve(&r).unwrap().gid, 7);
        let r = UserRequest {
            uid: Some(1000),
            group: Some("nogroup".into()),
            ..req()
        };
        assert_eq!(resolve(&r).unwrap().gid, 65534);
        let r = UserRequest {
            group: Some("ghosts".into()),
            ..req()
        };
        let err = resolve(&r).unwrap_err().to_string();
        assert!(
            err.contains("ghosts") && err.contains("/etc/group"),
            "{err}"
        );
    }

    #[test]
    fn an_image_without_passwd_still_runs_numeric_users() {
        let r = UserRequest {
            uid: Some(1),
            ..req()
        };
        let u = resolve_with(&r, "", "").unwrap();
        assert_eq!((u.uid, u.gid, u.supplemental_groups), (1, 0, vec![0]));
    }

    #[test]
    fn files_are_read_inside_the_rootfs_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join(host.path().strip_prefix("/").unwrap())).unwrap();
        std::fs::write(
            root.path()
                .join(host.path().strip_prefix("/").unwrap())
                .join("passwd"),
            "inside:x:5:5::/:/bin/sh\n",
        )
        .unwrap();
        // An absolute symlink to the host's file must resolve to the rootfs's copy.
        std::os::unix::fs::symlink(host.path().join("passwd"), root.path().join("etc/passwd"))
            .unwrap();
        let text = read_in_root(root.path(), "etc/passwd").unwrap();
        assert_eq!(text, "inside:x:5:5::/:/bin/sh\n");
        assert_eq!(read_in_root(root.path(), "etc/group").unwrap(), "");
    }
}
