//! The container's process: arguments, environment, working directory, who it runs as
//! (as a request the backend resolves) and its `oom_score_adj`.

use berth_proto::cri::v1::{
    ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    SupplementalGroupsPolicy as CriPolicy,
};
use runtimes::types::{ImageConfig, SupplementalGroupsPolicy, UserRequest};

use super::invalid;

/// `PATH` when neither the image nor the request sets one (containerd's and runc's).
pub(super) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process arguments (containerd's rules, from Docker): a request `command`
/// replaces the image's entrypoint and drops its cmd, request `args` replace the cmd;
/// an entrypoint of one empty string means none.
pub(super) fn args(c: &ContainerConfig, image: &ImageConfig) -> runtimes::Result<Vec<String>> {
    let mut all = if !c.command.is_empty() {
        c.command.clone()
    } else if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() {
        Vec::new()
    } else {
        image.entrypoint.clone()
    };
    if !c.args.is_empty() {
        all.extend(c.args.iter().cloned());
    } else if c.command.is_empty() {
        all.extend(image.cmd.iter().cloned());
    }
    if all.is_empty() {
        return Err(invalid(
            "config.command",
            "neither the request nor the image gives a command to run",
        ));
    }
    if all[0].is_empty() {
        return Err(invalid("config.command", "the program to run is empty"));
    }
    if let Some(bad) = all.iter().find(|a| a.contains('\0')) {
        return Err(invalid(
            "config.command",
            format!("argument {bad:?} contains a NUL byte"),
        ));
    }
    Ok(all)
}

/// The environment: a default `PATH`, `TERM=xterm` with a terminal, `HOSTNAME`, then the
/// image's variables, then the request's; a later value of a name replaces the earlier
/// one in place.
pub(super) fn env(
    c: &ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
) -> runtimes::Result<Vec<String>> {
    let mut env: Vec<String> = vec![DEFAULT_PATH.to_string()];
    if c.tty {
        env.push("TERM=xterm".to_string());
    }
    if !hostname.is_empty() {
        env.push(format!("HOSTNAME={hostname}"));
    }
    for entry in &image.env {
        set(&mut env, entry.clone());
    }
    for (i, kv) in c.envs.iter().enumerate() {
        let field = format!("config.envs[{i}]");
        if kv.key.is_empty() {
            return Err(invalid(&field, "the variable name is empty"));
        }
        if kv.key.contains('=') || kv.key.contains('\0') || kv.value.contains(&0) {
            return Err(invalid(
                &field,
                format!("{:?} must not hold '=' in its name nor NUL bytes", kv.key),
            ));
        }
        // CRI sends the value as bytes; an OCI spec's environment is strings.
        let Ok(value) = std::str::from_utf8(&kv.value) else {
            return Err(invalid(
                &field,
                format!("the value of {:?} is not UTF-8", kv.key),
            ));
        };
        set(&mut env, format!("{}={value}", kv.key));
    }
    Ok(env)
}

fn set(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default();
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// The working directory: the request's (absolute), else the image's, else `/`.
pub(super) fn cwd(c: &ContainerConfig, image: &ImageConfig) -> runtimes::Result<String> {
    if !c.working_dir.is_empty() {
        if !c.working_dir.starts_with('/') {
            return Err(invalid(
                "config.working_dir",
                format!("{:?} is not an absolute path", c.working_dir),
            ));
        }
        return Ok(c.working_dir.clone());
    }
    Ok(match image.working_dir.as_str() {
        "" => "/".to_string(),
        dir if dir.starts_with('/') => dir.to_string(),
        // Docker resolves a relative WorkingDir against the root.
        dir => format!("/{dir}"),
    })
}

/// Who the process runs as, before the backend reads the image's `/etc/passwd`: the
/// request's user name (or else uid) and gid, else the image's `User`. A gid without a
/// user is invalid (CRI: "the runtime MUST error").
pub(super) fn user(
    sc: Option<&LinuxContainerSecurityContext>,
    image_user: &str,
) -> runtimes::Result<UserRequest> {
    const FIELD: &str = "config.linux.security_context";
    let Some(sc) = sc else {
        return Ok(image_user_request(image_user));
    };
    let uid = sc
        .run_as_user
        .as_ref()
        .map(|v| id(&format!("{FIELD}.run_as_user"), v.value))
        .transpose()?;
    let gid = sc
        .run_as_group
        .as_ref()
        .map(|v| id(&format!("{FIELD}.run_as_group"), v.value))
        .transpose()?;
    let mut request = if !sc.run_as_username.is_empty() {
        UserRequest {
            username: Some(sc.run_as_username.clone()),
            gid,
            ..UserRequest::default()
        }
    } else if uid.is_some() {
        UserRequest {
            uid,
            gid,
            ..UserRequest::default()
        }
    } else if gid.is_some() {
        return Err(invalid(
            &format!("{FIELD}.run_as_group"),
            "is set without run_as_user or run_as_username",
        ));
    } else {
        image_user_request(image_user)
    };
    request.supplemental_groups = sc
        .supplemental_groups
        .iter()
        .enumerate()
        .map(|(i, g)| id(&format!("{FIELD}.supplemental_groups[{i}]"), *g))
        .collect::<runtimes::Result<_>>()?;
    request.policy = match CriPolicy::try_from(sc.supplemental_groups_policy) {
        Ok(CriPolicy::Merge) => SupplementalGroupsPolicy::Merge,
        Ok(CriPolicy::Strict) => SupplementalGroupsPolicy::Strict,
        Err(_) => {
            return Err(invalid(
                &format!("{FIELD}.supplemental_groups_policy"),
                format!("unknown policy {}", sc.supplemental_groups_policy),
            ));
        }
    };
    Ok(request)
}

/// A uid or gid: 0 ..= 2³²−2 (2³²−1 is the kernel's "no id").
fn id(field: &str, value: i64) -> runtimes::Result<u32> {
    match u32::try_from(value) {
        Ok(v) if v != u32::MAX => Ok(v),
        _ => Err(invalid(
            field,
            format!("{value} is not a valid id (0..={})", u32::MAX - 1),
        )),
    }
}

/// The image's `User` (`uid`, `name`, `uid:gid`, `name:group`) as a request.
fn image_user_request(user: &str) -> UserRequest {
    let (user, group) = user.split_once(':').unwrap_or((user, ""));
    let mut request = UserRequest::default();
    match user.parse::<u32>() {
        Ok(uid) => request.uid = Some(uid),
        Err(_) if !user.is_empty() => request.username = Some(user.to_string()),
        Err(_) => {}
    }
    match group.parse::<u32>() {
        Ok(gid) => request.gid = Some(gid),
        Err(_) if !group.is_empty() => request.group = Some(group.to_string()),
        Err(_) => {}
    }
    request
}

/// The process's `oom_score_adj`: the request's, raised to the agent's own when lower
/// (without CAP_SYS_RESOURCE the kernel refuses to lower it); none without resources.
pub(super) fn oom_score_adj(
    resources: Option<&LinuxContainerResources>,
    floor: i32,
) -> runtimes::Result<Option<i32>> {
    let Some(r) = resources else {
        return Ok(None);
    };
    let adj = r.oom_score_adj;
    if !(-1000..=1000).contains(&adj) {
        return Err(invalid(
            "config.linux.resources.oom_score_adj",
            format!("{adj} is outside -1000..=1000"),
        ));
    }
    Ok(Some((adj as i32).max(floor)))
}
