//! Capabilities: containerd's default set of 14, the request's `add`/`drop` (with `ALL`)
//! and ambient additions, or every capability for a privileged container.

use std::str::FromStr;

use berth_proto::cri::v1::LinuxContainerSecurityContext;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::invalid;

/// containerd's (and Docker's) default capability set of a CRI container.
pub(super) const DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability, at the index of its kernel number (its bit in a capability mask).
const NUMBERED: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The capabilities in `mask` (the agent's own), all of oci-spec's when unknown.
pub(super) fn all(mask: Option<u64>) -> Capabilities {
    NUMBERED
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask.is_none_or(|m| m & (1 << bit) != 0))
        .map(|(_, cap)| *cap)
        .collect()
}

/// The process capabilities. Bounding, effective and permitted hold the set;
/// inheritable and ambient are empty unless ambient capabilities are asked for (a
/// non-root process must not keep capabilities across `execve` by default).
///
/// Order (containerd's): `ALL` in add, then `ALL` in drop, then the named adds, then the
/// named drops, so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps just that one and
/// `add: [ALL], drop: [CHOWN]` keeps all but `CHOWN`. A privileged container gets every
/// capability and its add/drop lists are ignored.
pub(super) fn capabilities(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    held: Option<u64>,
) -> runtimes::Result<LinuxCapabilities> {
    const FIELD: &str = "config.linux.security_context.capabilities";
    let everything = all(held);
    // A default the agent lacks itself could not be granted either.
    let mut set: Capabilities = DEFAULT
        .iter()
        .filter(|c| everything.contains(c))
        .copied()
        .collect();
    let mut ambient = Capabilities::new();
    let requested = sc.and_then(|s| s.capabilities.as_ref());
    if privileged {
        set = everything;
    } else if let Some(r) = requested {
        let split = |list: &str, names: &[String]| -> runtimes::Result<(bool, Vec<Capability>)> {
            let mut has_all = false;
            let mut caps = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if name.eq_ignore_ascii_case("ALL") {
                    has_all = true;
                    continue;
                }
                caps.push(parse(&format!("{FIELD}.{list}[{i}]"), name, &everything)?);
            }
            Ok((has_all, caps))
        };
        let (add_all, add) = split("add_capabilities", &r.add_capabilities)?;
        let (drop_all, drop) = split("drop_capabilities", &r.drop_capabilities)?;
        let (_, amb) = split("add_ambient_capabilities", &r.add_ambient_capabilities)?;
        if add_all {
            set = everything.clone();
        }
        if drop_all {
            set.clear();
        }
        set.extend(add);
        set.extend(amb.iter().copied());
        ambient.extend(amb);
        for cap in &drop {
            set.remove(cap);
            ambient.remove(cap);
        }
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    // The oci-spec default puts AUDIT_WRITE, KILL and NET_BIND_SERVICE in inheritable
    // and ambient: a non-root process would keep them across execve (the spike saw
    // CapEff 20000420 for uid 65534). CRI runtimes give none unless asked.
    if ambient.is_empty() {
        caps.set_inheritable(None);
        caps.set_ambient(None);
    } else {
        caps.set_inheritable(Some(ambient.clone()));
        caps.set_ambient(Some(ambient));
    }
    Ok(caps)
}

/// A capability name as CRI gives it (`NET_ADMIN`; `CAP_NET_ADMIN` and any case are
/// accepted too) that the agent holds.
fn parse(field: &str, name: &str, known: &Capabilities) -> runtimes::Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let cap = Capability::from_str(bare)
        .map_err(|_| invalid(field, format!("unknown capability {name:?}")))?;
    if !known.contains(&cap) {
        return Err(invalid(
            field,
            format!("capability {name:?} is not held by berth itself, so no container can have it"),
        ));
    }
    Ok(cap)
}
