//! What an attachment is for (the pod) and what it gave (the addresses): the CNI_ARGS
//! and capability arguments built from a pod, and the pod IPs read from a CNI result.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::CniError;
use crate::error::{Error, Result};
use crate::types::{PortMapping, Protocol};

/// The pod a network attachment is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// Pod name (`K8S_POD_NAME`).
    pub name: String,
    /// Pod namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// Pod uid (`K8S_POD_UID`).
    pub uid: String,
    /// hostPort mappings, handed to plugins declaring the `portMappings` capability;
    /// mappings with `host_port` 0 are not host ports and are left out.
    pub port_mappings: Vec<PortMapping>,
}

/// What an attachment gave the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The pod's addresses without prefix length, the primary one (the first IPv4, as
    /// containerd picks it) first.
    pub ips: Vec<String>,
    /// The interface inside the pod (`eth0`).
    pub interface: String,
}

/// Checks a pod key, which is the CNI container id and a file name under the run dir:
/// the CNI spec's container-id alphabet, starting with a letter or digit.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let mut chars = key.chars();
    let ok = key.len() <= 200
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "network key {key:?} must be 1-200 letters, digits, '_', '.' or '-', starting with \
             a letter or digit"
        )))
    }
}

impl PodNetwork {
    /// CNI_ARGS as libcni-based runtimes pass them to Kubernetes pods. `IgnoreUnknown=1`
    /// comes first because plugins reject keys they do not know otherwise.
    pub(crate) fn cni_args(&self, key: &str) -> Result<String> {
        let pairs = [
            ("K8S_POD_NAMESPACE", self.namespace.as_str()),
            ("K8S_POD_NAME", self.name.as_str()),
            ("K8S_POD_INFRA_CONTAINER_ID", key),
            ("K8S_POD_UID", self.uid.as_str()),
        ];
        let mut out = String::from("IgnoreUnknown=1");
        for (k, v) in pairs {
            // The format has no escaping: a ';' or '=' would split into other arguments.
            if v.contains([';', '=']) || v.chars().any(char::is_control) {
                return Err(Error::InvalidSpec(format!(
                    "pod {k} {v:?} cannot be passed to CNI plugins (contains ';', '=' or a \
                     control character)"
                )));
            }
            out.push_str(&format!(";{k}={v}"));
        }
        Ok(out)
    }

    /// The capability arguments: `portMappings` in the CNI convention's shape.
    pub(crate) fn capability_args(&self) -> Result<Map<String, Value>> {
        let mut maps = Vec::new();
        for m in self.port_mappings.iter().filter(|m| m.host_port != 0) {
            if m.container_port == 0 {
                return Err(Error::InvalidSpec(format!(
                    "port mapping of host port {} has no container port",
                    m.host_port
                )));
            }
            let protocol = match m.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
            };
            let mut v = json!({
                "hostPort": m.host_port,
                "containerPort": m.container_port,
                "protocol": protocol,
            });
            if !m.host_ip.is_empty() {
                m.host_ip.parse::<IpAddr>().map_err(|_| {
                    Error::InvalidSpec(format!(
                        "port mapping of host port {}: host IP {:?} is not an IP address",
                        m.host_port, m.host_ip
                    ))
                })?;
                v["hostIP"] = json!(m.host_ip);
            }
            maps.push(v);
        }
        let mut caps = Map::new();
        if !maps.is_empty() {
            caps.insert("portMappings".into(), Value::Array(maps));
        }
        Ok(caps)
    }
}

/// The pod's addresses from a CNI result: the `ips` on the interface named `ifname`
/// inside the sandbox (all of them when the result does not tie IPs to interfaces), or
/// the pre-0.3 `ip4`/`ip6` fields.
pub(crate) fn attachment_from_result(result: &Value, ifname: &str) -> Result<Attachment> {
    let interfaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let on_pod_interface = |ip: &Value| match ip["interface"].as_u64() {
        Some(i) => interfaces.get(i as usize).is_some_and(|intf| {
            intf["name"].as_str() == Some(ifname)
                && intf["sandbox"].as_str().is_some_and(|s| !s.is_empty())
        }),
        None => true,
    };
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut push = |cidr: Option<&str>| {
        let addr = cidr.map(|c| c.split('/').next().unwrap_or(c));
        if let Some(ip) = addr.and_then(|a| a.parse::<IpAddr>().ok()) {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    };
    if let Some(ips) = result["ips"].as_array() {
        for ip in ips.iter().filter(|ip| on_pod_interface(ip)) {
            push(ip["address"].as_str());
        }
    }
    push(result["ip4"]["ip"].as_str());
    push(result["ip6"]["ip"].as_str());
    if addrs.is_empty() {
        return Err(CniError::NoAddress {
            ifname: ifname.to_string(),
            result: result.to_string(),
        }
        .into());
    }
    // Primary first: the first IPv4, then the rest in the plugin's order.
    if let Some(v4) = addrs.iter().position(IpAddr::is_ipv4) {
        let primary = addrs.remove(v4);
        addrs.insert(0, primary);
    }
    Ok(Attachment {
        ips: addrs.iter().map(ToString::to_string).collect(),
        interface: ifname.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodNetwork {
        PodNetwork {
            name: "web-0".into(),
            namespace: "default".into(),
            uid: "0c1a3b2e-9f1d-4a53-8c3e-2b7b0f1f6a11".into(),
            port_mappings: vec![],
        }
    }

    #[test]
    fn cni_args_are_what_kubernetes_plugins_expect() {
        assert_eq!(
            pod().cni_args("abc123").unwrap(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0c1a3b2e-9f1d-4a53-8c3e-2b7b0f1f6a11"
        );
        let bad = PodNetwork {
            name: "a;K8S_POD_NAMESPACE=kube-system".into(),
            ..pod()
        };
        let err = bad.cni_args("k").unwrap_err().to_string();
        assert!(err.contains("K8S_POD_NAME"), "{err}");
    }

    #[test]
    fn keys_follow_the_cni_container_id_rules() {
        for good in ["a", "0abc", "pod_1.x-y", &"a".repeat(200)] {
            check_key(good).unwrap();
        }
        for bad in ["", "-a", ".", "..", "a/b", "a b", "é", &"a".repeat(201)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_mappings_become_the_portmappings_capability() {
        let mut p = pod();
        assert!(p.capability_args().unwrap().is_empty());
        p.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Sctp,
                container_port: 9,
                host_port: 9009,
                host_ip: "127.0.0.1".into(),
            },
        ];
        assert_eq!(
            Value::Object(p.capability_args().unwrap()),
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 9009, "containerPort": 9, "protocol": "sctp", "hostIP": "127.0.0.1"}
            ]})
        );
        p.port_mappings[0].host_ip = "localhost".into();
        assert!(p
            .capability_args()
            .unwrap_err()
            .to_string()
            .contains("not an IP"));
        p.port_mappings[0].host_ip.clear();
        p.port_mappings[0].container_port = 0;
        assert!(p
            .capability_args()
            .unwrap_err()
            .to_string()
            .contains("no container port"));
    }

    #[test]
    fn result_ips_on_the_pod_interface_primary_v4_first() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/run/b/netns/p"},
                {"name": "eth1", "mac": "dd", "sandbox": "/run/b/netns/p"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.85.0.1/16", "interface": 0},
                {"address": "10.85.0.5/16", "gateway": "10.85.0.1", "interface": 2},
                {"address": "192.168.9.9/24", "interface": 3}
            ]
        });
        let a = attachment_from_result(&result, "eth0").unwrap();
        assert_eq!(a.ips, vec!["10.85.0.5", "fd00::5"]);
        assert_eq!(a.interface, "eth0");
    }

    #[test]
    fn result_without_interface_indexes_or_in_old_format() {
        let r = json!({"ips": [{"version": "4", "address": "10.1.0.7/24"}]});
        assert_eq!(
            attachment_from_result(&r, "eth0").unwrap().ips,
            vec!["10.1.0.7"]
        );
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.3/16"}, "ip6": {"ip": "fd01::3/64"}});
        assert_eq!(
            attachment_from_result(&r, "eth0").unwrap().ips,
            vec!["10.2.0.3", "fd01::3"]
        );
        let r = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}]});
        let err = attachment_from_result(&r, "eth0").unwrap_err().to_string();
        assert!(err.contains("no IP address for eth0"), "{err}");
    }
}
