//! `ContainerId`: the structured identity backends, logs, traces and errors speak.
//!
//! CRI ids stay opaque to kubelet; every pod sandbox and container also gets a
//! `ContainerId { service, role, replica, node }` whose display form is
//! `{service}-{role}-{replica}-on-{node}`.
//!
//! Services (`web.default`) and roles (Kubernetes container names, DNS labels) may
//! contain `-`, which is also the separator. To keep [`ContainerId::parse_display`] an
//! exact inverse of `Display`, a `-` inside the service or the role is written twice
//! (`sidecar-proxy` → `sidecar--proxy`); a single `-` is always a separator. Neither
//! field may start or end with `-` (true of every DNS name), so a run like `---` is never
//! ambiguous. The node id is everything after the first `-on-` that follows the replica
//! and is written verbatim, so node names stay as readable as they are.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The role of a pod's sandbox (its containers use their container name).
pub const SANDBOX_ROLE: &str = "sandbox";

/// A pod sandbox's or container's structured identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawContainerId", into = "RawContainerId")]
pub struct ContainerId {
    service: String,
    role: String,
    replica: u32,
    node: String,
}

/// Why a would-be [`ContainerId`] is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The {field} `{value}` is not valid: {why}.
    #[error("{field} `{value}` is not valid: {why}")]
    Invalid {
        /// Which field (`service`, `role`, `node`).
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What rule it broke.
        why: &'static str,
    },
}

impl ContainerId {
    /// Builds an id, checking every field:
    /// - `service`: lowercase letters, digits, `-` and `.`, not starting or ending with `-`;
    /// - `role`: a DNS label (lowercase letters, digits and `-`, not starting or ending with `-`);
    /// - `node`: non-empty, no whitespace or control characters.
    pub fn new(
        service: impl Into<String>,
        role: impl Into<String>,
        replica: u32,
        node: impl Into<String>,
    ) -> Result<Self, IdError> {
        let id = Self {
            service: service.into(),
            role: role.into(),
            replica,
            node: node.into(),
        };
        check_name("service", &id.service, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
        })?;
        check_name("role", &id.role, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })?;
        if id.node.is_empty() || id.node.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdError::Invalid {
                field: "node",
                value: id.node,
                why: "it must be non-empty without whitespace or control characters",
            });
        }
        Ok(id)
    }

    /// The workload this pod belongs to, qualified by namespace (`web.default`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// `sandbox` for a pod sandbox, else the container's name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The instance number of the service on this node.
    pub fn replica(&self) -> u32 {
        self.replica
    }

    /// The node that owns this object.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// True for the id of a pod sandbox.
    pub fn is_sandbox(&self) -> bool {
        self.role == SANDBOX_ROLE
    }

    /// The same identity with another role: the sandbox's id for a container, or a
    /// container's id from its sandbox's.
    pub fn with_role(&self, role: impl Into<String>) -> Result<Self, IdError> {
        Self::new(self.service.clone(), role, self.replica, self.node.clone())
    }

    /// The same identity with another replica number.
    pub fn with_replica(&self, replica: u32) -> Self {
        Self {
            replica,
            ..self.clone()
        }
    }

    /// Parses the `Display` form back; `None` for anything `Display` cannot produce
    /// (a CRI hex id, a bare name, a non-canonical replica such as `007`).
    pub fn parse_display(s: &str) -> Option<Self> {
        let (service, rest) = split_escaped(s)?;
        let (role, rest) = split_escaped(rest)?;
        let (replica, node) = rest.split_once("-on-")?;
        let canonical = !replica.is_empty()
            && replica.bytes().all(|b| b.is_ascii_digit())
            && (replica == "0" || !replica.starts_with('0'));
        if !canonical {
            return None;
        }
        Self::new(service, role, replica.parse().ok()?, node).ok()
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-on-{}",
            self.service.replace('-', "--"),
            self.role.replace('-', "--"),
            self.replica,
            self.node
        )
    }
}

impl std::str::FromStr for ContainerId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_display(s).ok_or_else(|| IdError::Invalid {
            field: "container id",
            value: s.to_string(),
            why: "it is not of the form {service}-{role}-{replica}-on-{node}",
        })
    }
}

fn check_name(
    field: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    let why = if value.is_empty() {
        "it is empty"
    } else if !value.chars().all(allowed) {
        "it has a character outside the allowed set"
    } else if value.starts_with('-') || value.ends_with('-') {
        "it starts or ends with `-`"
    } else {
        return Ok(());
    };
    Err(IdError::Invalid {
        field,
        value: value.to_string(),
        why,
    })
}

/// Splits `s` at its first single `-`, turning each `--` before it back into `-`.
fn split_escaped(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut field = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                field.push('-');
                i += 2;
                continue;
            }
            return Some((field, &s[i + 1..]));
        }
        // Safe: `-` is ASCII, so `i` is always at a char boundary here.
        let c = s[i..].chars().next()?;
        field.push(c);
        i += c.len_utf8();
    }
    None
}

#[derive(Serialize, Deserialize)]
struct RawContainerId {
    service: String,
    role: String,
    replica: u32,
    node: String,
}

impl TryFrom<RawContainerId> for ContainerId {
    type Error = IdError;

    fn try_from(raw: RawContainerId) -> Result<Self, Self::Error> {
        ContainerId::new(raw.service, raw.role, raw.replica, raw.node)
    }
}

impl From<ContainerId> for RawContainerId {
    fn from(id: ContainerId) -> Self {
        RawContainerId {
            service: id.service,
            role: id.role,
            replica: id.replica,
            node: id.node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(service: &str, role: &str, replica: u32, node: &str) -> ContainerId {
        ContainerId::new(service, role, replica, node).unwrap()
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            id("web.default", "nginx", 0, "node1").to_string(),
            "web.default-nginx-0-on-node1"
        );
        assert_eq!(
            id("my-app.prod", "sidecar-proxy", 3, "node-1.example").to_string(),
            "my--app.prod-sidecar--proxy-3-on-node-1.example"
        );
    }

    #[test]
    fn parse_display_round_trips_hyphens_and_dots() {
        for original in [
            id("web.default", "sandbox", 0, "n"),
            id("a-b-c.kube-system", "x-y", 42, "worker-on-3"),
            id("xn--bcher-kva.ns", "a--b", 7, "node-1-on-2"),
        ] {
            let shown = original.to_string();
            assert_eq!(
                ContainerId::parse_display(&shown),
                Some(original),
                "{shown}"
            );
        }
    }

    #[test]
    fn parse_display_rejects_non_ids() {
        for s in [
            "",
            "4f2a9c0e1b7d",
            "web",
            "web-nginx-0",
            "web-nginx-x-on-node",
            "web-nginx-007-on-node",
            "web-nginx-0-on-",
            "-web-nginx-0-on-n",
            "web---nginx-0-on-n",
            "Web-nginx-0-on-n",
            "web-nginx-+1-on-n",
        ] {
            assert_eq!(ContainerId::parse_display(s), None, "{s:?}");
        }
    }

    #[test]
    fn new_rejects_bad_fields() {
        assert!(ContainerId::new("", "r", 0, "n").is_err());
        assert!(ContainerId::new("-s", "r", 0, "n").is_err());
        assert!(ContainerId::new("s", "r.x", 0, "n").is_err());
        assert!(ContainerId::new("s", "r-", 0, "n").is_err());
        assert!(ContainerId::new("s", "r", 0, "").is_err());
        assert!(ContainerId::new("s", "r", 0, "a b").is_err());
    }

    #[test]
    fn serde_validates() {
        let good = id("web.default", "nginx", 1, "n1");
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<ContainerId>(&json).unwrap(), good);
        let bad = r#"{"service":"-bad","role":"r","replica":0,"node":"n"}"#;
        assert!(serde_json::from_str::<ContainerId>(bad).is_err());
    }

    fn dns_label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
    }

    fn service() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?"
    }

    proptest! {
        #[test]
        fn round_trip(service in service(), role in dns_label(), replica in any::<u32>(),
                      node in "[A-Za-z0-9._:-]{1,30}") {
            let original = ContainerId::new(service, role, replica, node).unwrap();
            let shown = original.to_string();
            prop_assert_eq!(ContainerId::parse_display(&shown), Some(original));
        }

        #[test]
        fn parse_never_panics_and_only_accepts_displayed_forms(s in "[a-z0-9.-]{0,40}(-on-[a-z0-9-]{0,8})?") {
            if let Some(parsed) = ContainerId::parse_display(&s) {
                prop_assert_eq!(parsed.to_string(), s);
            }
        }
    }
}
