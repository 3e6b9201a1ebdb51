//! Image references, normalized the way Docker and containerd's CRI plugin do.
//!
//! `busybox` → `docker.io/library/busybox:latest`; `localhost:5000/x` keeps its host;
//! `name:tag@sha256:…` drops the tag (the digest names the content, as in containerd's
//! `ParseDockerRef`); a bare 64-hex string is refused because it is an image id.

use std::fmt;

use crate::error::{Error, Result};

/// Docker Hub's canonical domain.
pub(crate) const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// A normalized image reference: domain, repository path and either a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// The registry host, e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The repository name with its domain, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, absent when the reference names a digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The manifest digest, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `<repository>@<digest>`: the repo digest CRI reports for this repository.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repository())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalizes `reference` as Docker does and containerd's CRI plugin stores it.
pub fn normalize(reference: &str) -> Result<Reference> {
    let invalid =
        |why: &str| Error::InvalidSpec(format!("invalid image reference {reference:?}: {why}"));
    if reference.is_empty() {
        return Err(invalid("it is empty"));
    }
    if is_hex64(reference) {
        return Err(invalid(
            "a 64-character hexadecimal string is an image id, not a repository name",
        ));
    }
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    // The tag follows the last ':' that comes after the last '/'; an earlier ':' is a port.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    let (domain, path) = split_domain(name);
    if !valid_domain(&domain) {
        return Err(invalid(&format!("{domain:?} is not a valid registry host")));
    }
    if path.to_lowercase() != path {
        return Err(invalid(&format!(
            "repository name {path:?} must be lowercase"
        )));
    }
    if path.is_empty() || !path.split('/').all(valid_path_component) {
        return Err(invalid(&format!("{path:?} is not a valid repository path")));
    }
    if domain.len() + 1 + path.len() > MAX_NAME_LEN {
        return Err(invalid(&format!(
            "the repository name is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(tag) = tag {
        if !valid_tag(tag) {
            return Err(invalid(&format!("{tag:?} is not a valid tag")));
        }
    }
    if let Some(digest) = digest {
        validate_digest(digest).map_err(|why| invalid(&why))?;
    }
    Ok(Reference {
        domain,
        path,
        // A digest names the content; the tag beside it is dropped, as containerd does.
        tag: match (digest, tag) {
            (Some(_), _) => None,
            (None, Some(tag)) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
        },
        digest: digest.map(str::to_string),
    })
}

/// Checks that `digest` is `sha256:` followed by 64 lowercase hex digits, the only
/// algorithm berth stores content under.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if is_hex64(hex) => Ok(()),
        Some(("sha256", _)) => Err(format!(
            "digest {digest:?} must have 64 lowercase hex digits"
        )),
        Some((algorithm, _)) if !algorithm.is_empty() => Err(format!(
            "digest algorithm {algorithm:?} is not supported (only sha256)"
        )),
        _ => Err(format!("{digest:?} is not a digest (sha256:<hex>)")),
    }
}

/// True for exactly 64 lowercase hex digits.
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits `name` into domain and path the way Docker's `splitDockerDomain` does.
fn split_domain(name: &str) -> (String, String) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DOCKER_HUB {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !rest.contains('/') {
        format!("{OFFICIAL_PREFIX}{rest}")
    } else {
        rest
    };
    (domain, path)
}

/// `host[:port]` where host is DNS labels or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after))
                if !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') =>
            {
                match after {
                    "" => return true,
                    p => return p.strip_prefix(':').is_some_and(valid_port),
                }
            }
            _ => return false,
        }
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok) && port.is_none_or(valid_port)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        normalize(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn docker_hub_names_get_domain_library_and_latest() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn explicit_hosts_are_kept() {
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("localhost/x:1"), "localhost/x:1");
        assert_eq!(norm("127.0.0.1:5000/a/b/c:t"), "127.0.0.1:5000/a/b/c:t");
        assert_eq!(
            norm("registry.k8s.io/e2e-test-images/busybox:1.29-2"),
            "registry.k8s.io/e2e-test-images/busybox:1.29-2"
        );
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        let r = normalize("localhost:5000/x").unwrap();
        assert_eq!((r.domain(), r.path()), ("localhost:5000", "x"));
    }

    #[test]
    fn digests_drop_the_tag() {
        assert_eq!(
            norm(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            norm(&format!("busybox:1.36@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        let r = normalize(&format!("localhost:5000/x:t@{D}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(D)));
        assert_eq!(r.with_digest(D), format!("localhost:5000/x@{D}"));
    }

    #[test]
    fn malformed_references_are_refused_with_their_name() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:4b825dc642cb6eb9a060e54bf8d69288",
            &format!("busybox@{}", D.to_uppercase().replace("SHA256", "sha256")),
            "a//b",
            "a/b/",
            "-a",
            "a..b",
            "a___b",
            "host:port/x",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            &format!("busybox:{}", "t".repeat(129)),
            &format!("x/{}", "a".repeat(260)),
        ] {
            match normalize(bad) {
                Err(Error::InvalidSpec(msg)) => assert!(msg.contains(&format!("{bad:?}")), "{msg}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn separators_follow_the_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0/b1.c_d"] {
            assert!(normalize(ok).is_ok(), "{ok}");
        }
        assert!(valid_tag("v1.2-rc_3"));
        assert!(!valid_tag(".x"));
    }
}
