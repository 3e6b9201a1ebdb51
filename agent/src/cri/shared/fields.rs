//! Rules for the request fields Kubernetes validates before a runtime ever sees them:
//! object names, the pod's hostname, log paths, the cgroup parent and the size of label
//! and annotation maps. What Kubernetes could never send is refused here, at the edge,
//! rather than carried into berth's state, listings, log paths and hostnames. Each
//! error names the field, quotes the value (escaped, cut when long) and says what is
//! allowed.

use std::collections::HashMap;

use runtimes::Error;

/// The longest name Kubernetes gives an object (a DNS-1123 subdomain's length).
const MAX_NAME: usize = 253;
/// The longest label of a DNS name.
const MAX_DNS_LABEL: usize = 63;
/// Kubernetes' limit on a pod's annotations (keys and values together), applied to
/// every label and annotation map: it keeps one object's share of a listing bounded.
pub(in crate::cri) const MAX_MAP_BYTES: usize = 256 << 10;
/// How many characters of a refused value an error message quotes.
const QUOTED: usize = 64;

const NAME_RULE: &str = "allowed: 1 to 253 bytes without '/', whitespace or control \
                         characters, other than \".\" and \"..\"";
const HOSTNAME_RULE: &str = "allowed: a DNS-1123 subdomain, at most 253 bytes of labels \
                             of 1 to 63 lowercase letters, digits and '-' that start and \
                             end with a letter or digit, joined by '.'";
const LOG_PATH_RULE: &str = "allowed: a path relative to the pod's log directory, of \
                             non-empty components other than \".\" and \"..\", without NUL";
const CGROUP_PARENT_RULE: &str = "allowed: a cgroup path or systemd slice without \"..\" \
                                  components or NUL";

/// `value` escaped for an error message, its start only when it is long.
pub(in crate::cri) fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &value[..end], value.len()),
    }
}

fn refuse(field: &str, value: &str, problem: &str, rule: &str) -> Error {
    Error::InvalidSpec(format!("{field} {}: {problem}; {rule}", quoted(value)))
}

/// A pod's name, namespace or uid, or a container's name: Kubernetes' names are DNS
/// labels or subdomains (critest adds uppercase), and they end up in paths.
pub(in crate::cri) fn name(field: &str, value: &str) -> runtimes::Result<()> {
    let problem = if value.is_empty() {
        "is empty"
    } else if value.len() > MAX_NAME {
        "is too long"
    } else if value == "." || value == ".." {
        "is a path component"
    } else if value.contains('/') {
        "contains '/'"
    } else if value.chars().any(char::is_control) {
        "contains a control character"
    } else if value.chars().any(char::is_whitespace) {
        "contains whitespace"
    } else {
        return Ok(());
    };
    Err(refuse(field, value, problem, NAME_RULE))
}

/// A hostname the request sets (empty: berth chooses one): a DNS-1123 subdomain, as
/// kubelet sends (the pod's hostname, cut to 63 bytes, or its FQDN).
pub(in crate::cri) fn hostname(field: &str, value: &str) -> runtimes::Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_DNS_LABEL
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if value.len() <= MAX_NAME && value.split('.').all(label_ok) {
        return Ok(());
    }
    Err(refuse(
        field,
        value,
        "is not a DNS-1123 subdomain",
        HOSTNAME_RULE,
    ))
}

/// A container's log path (empty: no log): relative to its pod's log directory and
/// staying inside it, as kubelet sends (`<container>/<restart>.log`).
pub(in crate::cri) fn log_path(field: &str, value: &str) -> runtimes::Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    let problem = if value.starts_with('/') {
        "is absolute"
    } else if value.contains('\0') {
        "contains NUL"
    } else if value
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        "has an empty, \".\" or \"..\" component"
    } else {
        return Ok(());
    };
    Err(refuse(field, value, problem, LOG_PATH_RULE))
}

/// A pod's cgroup parent (empty: berth's own): kubelet's cgroupfs path or systemd
/// slice, never one climbing out of the cgroup hierarchy.
pub(in crate::cri) fn cgroup_parent(field: &str, value: &str) -> runtimes::Result<()> {
    let problem = if value.contains('\0') {
        "contains NUL"
    } else if value.split('/').any(|part| part == "..") {
        "has a \"..\" component"
    } else {
        return Ok(());
    };
    Err(refuse(field, value, problem, CGROUP_PARENT_RULE))
}

/// A label or annotation map: at most [`MAX_MAP_BYTES`] of keys and values.
pub(in crate::cri) fn map_size(field: &str, map: &HashMap<String, String>) -> runtimes::Result<()> {
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes <= MAX_MAP_BYTES {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "{field} hold {bytes} bytes of keys and values; allowed: at most {MAX_MAP_BYTES} \
         (Kubernetes' limit on a pod's annotations)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: runtimes::Result<()>) -> String {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        err.to_string()
    }

    #[test]
    fn names_kubelet_and_critest_send_are_accepted() {
        for ok in [
            "web-7d9f8b6c5d-x2x9k",
            "kube-system",
            "PodSandbox-with-log-directory-5f0c1b2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e",
            "Nginx_Main",
            "a.b",
            "2c2e0a5e-1d3f-4b8a-9c6d-7e8f9a0b1c2d",
            "x".repeat(253).as_str(),
        ] {
            name("config.metadata.name", ok).unwrap();
        }
    }

    #[test]
    fn names_kubernetes_never_sends_are_refused_naming_field_value_and_rule() {
        for (bad, problem) in [
            ("", "is empty"),
            (&"x".repeat(254) as &str, "is too long"),
            (".", "is a path component"),
            ("..", "is a path component"),
            ("../../../../etc/passwd", "contains '/'"),
            ("with/slash", "contains '/'"),
            ("nul\0byte", "control character"),
            ("new\nline", "control character"),
            ("carriage\rreturn", "control character"),
            ("del\u{7f}", "control character"),
            ("with space", "whitespace"),
            ("nbsp\u{a0}", "whitespace"),
        ] {
            let text = refused(name("config.metadata.namespace", bad));
            assert!(text.starts_with("config.metadata.namespace "), "{text}");
            assert!(text.contains(problem), "{bad:?}: {text}");
            assert!(text.contains("allowed: 1 to 253 bytes"), "{text}");
            assert!(!text.contains('\n') && !text.contains('\0'), "{text:?}");
        }
        let text = refused(name("config.metadata.name", "new\nline"));
        assert!(text.contains(r#""new\nline""#), "{text}");
    }

    #[test]
    fn long_values_are_quoted_cut() {
        let text = quoted(&"é".repeat(100_000));
        assert!(text.len() < 200, "{text}");
        assert!(text.ends_with("… (200000 bytes)"), "{text}");
        assert_eq!(quoted("a\0"), r#""a\0""#);
    }

    #[test]
    fn hostnames_must_be_dns_subdomains() {
        for ok in [
            "",
            "test-hostname",
            "web-0",
            "web-0.db.default.svc.cluster.local",
            "0a",
            "a".repeat(63).as_str(),
        ] {
            hostname("config.hostname", ok).unwrap();
        }
        let long = vec!["a".repeat(63); 4].join(".") + ".aa";
        for bad in [
            "$(id)",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            ".a",
            "a.",
            "under_score",
            "spa ce",
            "ünï",
            "a".repeat(64).as_str(),
            long.as_str(),
        ] {
            let text = refused(hostname("config.hostname", bad));
            assert!(text.contains("is not a DNS-1123 subdomain"), "{text}");
            assert!(text.contains("lowercase letters"), "{text}");
        }
    }

    #[test]
    fn log_paths_stay_inside_the_log_directory() {
        for ok in ["", "app.log", "app/0.log", "a.b/..c/d..", "x/.hidden"] {
            log_path("config.log_path", ok).unwrap();
        }
        for (bad, problem) in [
            ("/etc/cron.d/x", "is absolute"),
            ("../x.log", "component"),
            ("app/../../x", "component"),
            ("app/./0.log", "component"),
            ("app//0.log", "component"),
            ("app/", "component"),
            ("nul\0.log", "NUL"),
        ] {
            let text = refused(log_path("config.log_path", bad));
            assert!(text.contains(problem), "{bad:?}: {text}");
            assert!(
                text.contains("relative to the pod's log directory"),
                "{text}"
            );
        }
    }

    #[test]
    fn cgroup_parents_never_climb() {
        for ok in [
            "",
            "/kubepods/burstable/pod1",
            "kubepods-besteffort.slice",
            "/a..b",
        ] {
            cgroup_parent("config.linux.cgroup_parent", ok).unwrap();
        }
        for bad in ["/kubepods/../../etc", "..", "a\0"] {
            let text = refused(cgroup_parent("config.linux.cgroup_parent", bad));
            assert!(text.contains("cgroup path"), "{text}");
        }
    }

    #[test]
    fn maps_are_bounded_in_bytes() {
        let mut map = HashMap::from([("k".to_string(), "v".repeat(MAX_MAP_BYTES - 1))]);
        map_size("config.annotations", &map).unwrap();
        map.insert("x".into(), String::new());
        let text = refused(map_size("config.annotations", &map));
        assert!(
            text.contains("config.annotations hold 262145 bytes") && text.contains("262144"),
            "{text}"
        );
    }
}
