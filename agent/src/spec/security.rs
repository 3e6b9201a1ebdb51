//! Security profiles (seccomp, AppArmor) and the masked and read-only paths of a
//! container. A privileged container has none of them.

use std::path::{Path, PathBuf};

use berth_proto::cri::v1::{
    security_profile::ProfileType, LinuxContainerSecurityContext, SecurityProfile,
};
use oci_spec::runtime::{Capabilities, LinuxSeccomp};

use super::host::{HostFacts, HostLookup};
use super::{invalid, seccomp};

/// Paths masked in every non-privileged container unless the request lists its own
/// (containerd's and kubelet's defaults).
pub(super) const DEFAULT_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths read-only in every non-privileged container unless the request lists its own.
pub(super) const DEFAULT_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The AppArmor profile RuntimeDefault means when the host has AppArmor; the backend
/// must have it loaded.
pub const DEFAULT_APPARMOR_PROFILE: &str = "berth-default";

const FIELD: &str = "config.linux.security_context";

/// A security profile as requested, from the typed field or the deprecated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Profile {
    /// The runtime's default.
    RuntimeDefault,
    /// None.
    Unconfined,
    /// A profile on the node: a seccomp file path or an AppArmor profile name.
    Localhost(String),
}

/// The profile a typed `SecurityProfile` or, when that is absent, a deprecated profile
/// string (`runtime/default`, `docker/default`, `unconfined`, `localhost/<ref>`) asks
/// for; `None` when neither is set.
fn profile(
    field: &str,
    typed: Option<&SecurityProfile>,
    deprecated_field: &str,
    deprecated: &str,
) -> runtimes::Result<Option<Profile>> {
    if let Some(p) = typed {
        let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
            invalid(
                &format!("{field}.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )
        })?;
        if kind != ProfileType::Localhost && !p.localhost_ref.is_empty() {
            return Err(invalid(
                &format!("{field}.localhost_ref"),
                "must only be set when profile_type is Localhost",
            ));
        }
        return Ok(Some(match kind {
            ProfileType::RuntimeDefault => Profile::RuntimeDefault,
            ProfileType::Unconfined => Profile::Unconfined,
            ProfileType::Localhost => {
                // Trimmed in case a client sends the deprecated form here.
                let r = p.localhost_ref.trim_start_matches("localhost/");
                if r.is_empty() {
                    return Err(invalid(
                        &format!("{field}.localhost_ref"),
                        "is required when profile_type is Localhost",
                    ));
                }
                Profile::Localhost(r.to_string())
            }
        }));
    }
    Ok(match deprecated {
        "" => None,
        "runtime/default" | "docker/default" => Some(Profile::RuntimeDefault),
        "unconfined" => Some(Profile::Unconfined),
        other => match other.strip_prefix("localhost/") {
            Some(r) if !r.is_empty() => Some(Profile::Localhost(r.to_string())),
            _ => {
                return Err(invalid(
                    deprecated_field,
                    format!("{other:?} is not runtime/default, unconfined or localhost/<profile>"),
                ));
            }
        },
    })
}

/// The seccomp filter: none when privileged or unset (CRI: unset means unconfined),
/// berth's default for RuntimeDefault, the node's file for Localhost (relative paths
/// are under `host.seccomp_profile_root`).
pub(super) fn seccomp(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    bounding: &Capabilities,
    host: &HostFacts,
    lookup: &dyn HostLookup,
) -> runtimes::Result<Option<LinuxSeccomp>> {
    let Some(sc) = sc else { return Ok(None) };
    #[allow(deprecated)]
    let deprecated = sc.seccomp_profile_path.as_str();
    let field = format!("{FIELD}.seccomp");
    let chosen = profile(
        &field,
        sc.seccomp.as_ref(),
        &format!("{FIELD}.seccomp_profile_path"),
        deprecated,
    )?;
    if privileged {
        return Ok(None);
    }
    match chosen {
        None | Some(Profile::Unconfined) => Ok(None),
        Some(Profile::RuntimeDefault) => seccomp::runtime_default(bounding).map(Some),
        Some(Profile::Localhost(r)) => {
            let path = Path::new(&r);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                host.seccomp_profile_root.join(path)
            };
            seccomp::localhost(&field, &path, lookup).map(Some)
        }
    }
}

/// The AppArmor profile name, `None` for none. When the host has no AppArmor every
/// request is accepted and ignored (there is nothing to confine with); a privileged
/// container runs unconfined unless it names a Localhost profile (containerd's rule).
pub(super) fn apparmor(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    host: &HostFacts,
) -> runtimes::Result<Option<String>> {
    let chosen = match sc {
        None => None,
        Some(sc) => {
            #[allow(deprecated)]
            let deprecated = sc.apparmor_profile.as_str();
            profile(
                &format!("{FIELD}.apparmor"),
                sc.apparmor.as_ref(),
                &format!("{FIELD}.apparmor_profile"),
                deprecated,
            )?
        }
    };
    if !host.apparmor {
        return Ok(None);
    }
    Ok(match chosen.unwrap_or(Profile::RuntimeDefault) {
        Profile::Unconfined => None,
        Profile::RuntimeDefault if privileged => None,
        Profile::RuntimeDefault => Some(DEFAULT_APPARMOR_PROFILE.to_string()),
        Profile::Localhost(name) => Some(name),
    })
}

/// Masked and read-only paths: the request's lists when given, else the defaults;
/// none for a privileged container. Each must be absolute.
pub(super) fn masked_and_readonly(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
) -> runtimes::Result<(Vec<String>, Vec<String>)> {
    if privileged {
        return Ok((Vec::new(), Vec::new()));
    }
    let pick = |name: &str, requested: Option<&Vec<String>>, default: &[&str]| match requested
        .filter(|r| !r.is_empty())
    {
        None => Ok(default.iter().map(|p| p.to_string()).collect()),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if PathBuf::from(p).is_absolute() && !p.contains('\0') {
                    Ok(p.clone())
                } else {
                    Err(invalid(
                        &format!("{FIELD}.{name}[{i}]"),
                        format!("{p:?} is not an absolute path"),
                    ))
                }
            })
            .collect(),
    };
    Ok((
        pick("masked_paths", sc.map(|s| &s.masked_paths), DEFAULT_MASKED)?,
        pick(
            "readonly_paths",
            sc.map(|s| &s.readonly_paths),
            DEFAULT_READONLY,
        )?,
    ))
}
