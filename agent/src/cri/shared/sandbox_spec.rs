//! `RunPodSandboxRequest` → the validated [`SandboxSpec`] a backend runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_proto::cri::v1 as cri;
use runtimes::types::{DnsConfig, PortMapping, Protocol, SandboxSpec};
use runtimes::Error;

use super::fields;
use super::objects::in_method;
use crate::spec::{self, HostFacts};

const METHOD: &str = "RunPodSandbox";

fn invalid(message: String) -> Error {
    Error::InvalidSpec(format!("{METHOD}: {message}"))
}

/// Checks the request and turns it into a spec. Metadata name, namespace and uid are
/// required (they make the sandbox's unique name). Namespace options, sysctls and the
/// hostname follow the same rules as the containers' specs (`crate::spec`).
pub(in crate::cri) fn sandbox_spec(
    request: &cri::RunPodSandboxRequest,
    host: &HostFacts,
) -> runtimes::Result<SandboxSpec> {
    let config = request
        .config
        .as_ref()
        .ok_or_else(|| invalid("config is missing".into()))?;
    let metadata = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata is missing".into()))?;
    config_fields(config, metadata).map_err(|e| in_method(METHOD, e))?;
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let namespaces = spec::namespace_options(
        "config.linux.security_context.namespace_options",
        security.namespace_options.as_ref(),
    )?;
    let os = match (&config.linux, &config.windows) {
        (_, Some(_)) => Some("windows".to_string()),
        (Some(_), None) => Some("linux".to_string()),
        (None, None) => None,
    };
    Ok(SandboxSpec {
        runtime_handler: request.runtime_handler.clone(),
        annotations: sorted(&config.annotations),
        labels: sorted(&config.labels),
        os,
        image: None,
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        uid: metadata.uid.clone(),
        hostname: spec::pod_hostname(config, &namespaces, host),
        log_directory: (!config.log_directory.is_empty())
            .then(|| PathBuf::from(&config.log_directory)),
        dns: config.dns_config.as_ref().map(|d| DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: config
            .port_mappings
            .iter()
            .enumerate()
            .map(|(i, p)| port_mapping(i, p))
            .collect::<runtimes::Result<_>>()?,
        sysctls: spec::sysctls(config, &namespaces)?,
        namespaces,
        cgroup_parent: linux.cgroup_parent.clone(),
        privileged: security.privileged,
    })
}

/// The fields Kubernetes validates (see [`fields`]): metadata names, the hostname,
/// the cgroup parent, labels and annotations.
fn config_fields(
    config: &cri::PodSandboxConfig,
    metadata: &cri::PodSandboxMetadata,
) -> runtimes::Result<()> {
    fields::name("config.metadata.name", &metadata.name)?;
    fields::name("config.metadata.namespace", &metadata.namespace)?;
    fields::name("config.metadata.uid", &metadata.uid)?;
    pod_host_fields("config", config)?;
    if let Some(linux) = &config.linux {
        fields::cgroup_parent("config.linux.cgroup_parent", &linux.cgroup_parent)?;
    }
    fields::map_size("config.labels", &config.labels)?;
    fields::map_size("config.annotations", &config.annotations)
}

/// The fields of a pod's config that reach the host when a container is made from it:
/// its hostname (the containers' `HOSTNAME`) and log directory. `at` names the config
/// in the request.
pub(in crate::cri) fn pod_host_fields(
    at: &str,
    config: &cri::PodSandboxConfig,
) -> runtimes::Result<()> {
    fields::hostname(&format!("{at}.hostname"), &config.hostname)?;
    if !config.log_directory.is_empty() {
        spec::absolute(&format!("{at}.log_directory"), &config.log_directory)?;
    }
    Ok(())
}

fn sorted(map: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn port_mapping(index: usize, p: &cri::PortMapping) -> runtimes::Result<PortMapping> {
    let field = format!("config.port_mappings[{index}]");
    let protocol = match cri::Protocol::try_from(p.protocol) {
        Ok(cri::Protocol::Tcp) => Protocol::Tcp,
        Ok(cri::Protocol::Udp) => Protocol::Udp,
        Ok(cri::Protocol::Sctp) => Protocol::Sctp,
        Err(_) => {
            return Err(invalid(format!(
                "{field}.protocol {} is not TCP, UDP or SCTP",
                p.protocol
            )))
        }
    };
    let port = |name: &str, value: i32, min: i32| {
        u16::try_from(value)
            .ok()
            .filter(|_| value >= min)
            .ok_or_else(|| invalid(format!("{field}.{name} {value} is not in {min}..=65535")))
    };
    Ok(PortMapping {
        protocol,
        container_port: port("container_port", p.container_port, 1)?,
        host_port: port("host_port", p.host_port, 0)?,
        host_ip: p.host_ip.clone(),
    })
}

#[cfg(test)]
pub(in crate::cri) mod tests {
    use std::collections::HashMap;

    use runtimes::types::NamespaceMode;

    use super::*;

    /// A valid request for the pod `name` in `default`.
    pub(crate) fn request(name: &str) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: name.into(),
                    uid: format!("uid-{name}"),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                hostname: name.into(),
                log_directory: format!("/var/log/pods/{name}"),
                labels: HashMap::from([("app".into(), name.into())]),
                linux: Some(cri::LinuxPodSandboxConfig::default()),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    fn error(request: &cri::RunPodSandboxRequest) -> String {
        let err = sandbox_spec(request, &HostFacts::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        err.to_string()
    }

    #[test]
    fn metadata_is_required() {
        assert!(error(&cri::RunPodSandboxRequest::default()).contains("config is missing"));
        let mut r = request("p");
        r.config.as_mut().unwrap().metadata = None;
        assert!(error(&r).contains("config.metadata is missing"));
        for field in ["name", "namespace", "uid"] {
            let mut r = request("p");
            let m = r.config.as_mut().unwrap().metadata.as_mut().unwrap();
            match field {
                "name" => m.name.clear(),
                "namespace" => m.namespace = " ".into(),
                _ => m.uid.clear(),
            }
            let text = error(&r);
            assert!(text.starts_with("RunPodSandbox: "), "{text}");
            assert!(
                text.contains(&format!("config.metadata.{field} ")),
                "{text}"
            );
        }
    }

    #[test]
    fn what_kubernetes_never_sends_is_refused_naming_the_field() {
        type Change = fn(&mut cri::PodSandboxConfig);
        let cases: [(&str, Change); 9] = [
            ("config.metadata.name \"../../../../etc/passwd\"", |c| {
                c.metadata.as_mut().unwrap().name = "../../../../etc/passwd".into()
            }),
            ("config.metadata.namespace \"with/slash\"", |c| {
                c.metadata.as_mut().unwrap().namespace = "with/slash".into()
            }),
            ("config.metadata.uid \"a\\nb\"", |c| {
                c.metadata.as_mut().unwrap().uid = "a\nb".into()
            }),
            ("config.metadata.name \"xxxx", |c| {
                c.metadata.as_mut().unwrap().name = "x".repeat(254)
            }),
            ("config.hostname \"$(id)\"", |c| c.hostname = "$(id)".into()),
            (
                "config.log_directory: \"var/log/pods/p\" is not an absolute path",
                |c| c.log_directory = "var/log/pods/p".into(),
            ),
            (
                "config.log_directory: \"/var/log/../../etc\" must not contain '..'",
                |c| c.log_directory = "/var/log/../../etc".into(),
            ),
            ("config.linux.cgroup_parent \"/kubepods/../../etc\"", |c| {
                c.linux.as_mut().unwrap().cgroup_parent = "/kubepods/../../etc".into()
            }),
            ("config.annotations hold 262145 bytes", |c| {
                c.annotations = HashMap::from([("a".into(), "b".repeat(256 << 10))])
            }),
        ];
        for (expected, change) in cases {
            let mut r = request("p");
            change(r.config.as_mut().unwrap());
            let text = error(&r);
            assert!(text.starts_with("RunPodSandbox: "), "{text}");
            assert!(text.contains(expected), "{expected}: {text}");
        }
        // A pod named after its hostname's limit is still fine: the backend cuts it.
        let mut r = request(&"p".repeat(253));
        let c = r.config.as_mut().unwrap();
        c.hostname.clear();
        c.metadata.as_mut().unwrap().uid = "uid-1".into();
        assert_eq!(
            sandbox_spec(&r, &HostFacts::default()).unwrap().hostname,
            "p".repeat(253)
        );
    }

    #[test]
    fn every_field_is_carried() {
        let mut r = request("web");
        r.runtime_handler = "kata".into();
        let c = r.config.as_mut().unwrap();
        c.annotations.insert("a".into(), "1".into());
        c.dns_config = Some(cri::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        c.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        }];
        let linux = c.linux.as_mut().unwrap();
        linux.cgroup_parent = "/kubepods/pod1".into();
        linux
            .sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        linux.security_context = Some(cri::LinuxSandboxSecurityContext {
            privileged: true,
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                pid: cri::NamespaceMode::Container as i32,
                ipc: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
        let spec = sandbox_spec(&r, &HostFacts::default()).unwrap();
        assert_eq!(spec.runtime_handler, "kata");
        assert_eq!(
            (
                spec.name.as_str(),
                spec.namespace.as_str(),
                spec.uid.as_str()
            ),
            ("web", "default", "uid-web")
        );
        assert_eq!(spec.os.as_deref(), Some("linux"));
        assert_eq!(spec.hostname, "web");
        assert_eq!(spec.log_directory, Some(PathBuf::from("/var/log/pods/web")));
        assert_eq!(spec.labels["app"], "web");
        assert_eq!(spec.annotations["a"], "1");
        assert_eq!(spec.dns.unwrap().options, ["ndots:5"]);
        assert_eq!(
            spec.port_mappings,
            [PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into()
            }]
        );
        assert_eq!(spec.namespaces.network, NamespaceMode::Node);
        assert_eq!(spec.namespaces.pid, NamespaceMode::Container);
        assert_eq!(spec.cgroup_parent, "/kubepods/pod1");
        assert_eq!(spec.sysctls["kernel.shm_rmid_forced"], "1");
        assert!(spec.privileged);
        assert!(spec.image.is_none());
    }

    #[test]
    fn the_os_comes_from_the_config_section() {
        let mut r = request("p");
        r.config.as_mut().unwrap().windows = Some(cri::WindowsPodSandboxConfig::default());
        assert_eq!(
            sandbox_spec(&r, &HostFacts::default())
                .unwrap()
                .os
                .as_deref(),
            Some("windows")
        );
        r.config.as_mut().unwrap().windows = None;
        r.config.as_mut().unwrap().linux = None;
        assert_eq!(sandbox_spec(&r, &HostFacts::default()).unwrap().os, None);
    }

    #[test]
    fn bad_ports_and_modes_are_refused() {
        let mut r = request("p");
        r.config.as_mut().unwrap().port_mappings = vec![cri::PortMapping {
            container_port: 80,
            host_port: 70000,
            ..Default::default()
        }];
        assert!(error(&r).contains("port_mappings[0].host_port 70000"));
        r.config.as_mut().unwrap().port_mappings[0] = cri::PortMapping {
            container_port: 0,
            ..Default::default()
        };
        assert!(error(&r).contains("container_port 0"));
        r.config.as_mut().unwrap().port_mappings[0] = cri::PortMapping {
            protocol: 9,
            container_port: 80,
            ..Default::default()
        };
        assert!(error(&r).contains("protocol 9"));
        let mut r = request("p");
        r.config.as_mut().unwrap().linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: 7,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(error(&r).contains("namespace_options.pid"));
    }
}
