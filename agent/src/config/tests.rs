use std::collections::BTreeSet;

use super::*;

/// The contract's example (CONFIG-CONTRACT.md), every section filled in.
const CONTRACT_EXAMPLE: &str = r#"
socket: /run/berth/test.sock
state_dir: /var/lib/berth-test
run_dir: /run/berth-test
cgroup_parent: /berth-test
node_id: node-a
log:
  level: debug
  format: json
registries:
  mirrors:
    registry.k8s.io: ["http://127.0.0.1:5000"]
    docker.io: ["http://127.0.0.1:5000", "https://mirror.example"]
  insecure: ["127.0.0.1:5000"]
  credentials:
    "127.0.0.1:5000": { username: u, password: p }
    "other:5000": { auth: dTpw }
    "third:5000": { identity_token: tok }
"#;

#[test]
fn contract_example_parses_into_every_field() {
    let config = Config::from_yaml(CONTRACT_EXAMPLE).unwrap();
    assert_eq!(config.socket, Path::new("/run/berth/test.sock"));
    assert_eq!(config.state_dir, Path::new("/var/lib/berth-test"));
    assert_eq!(config.run_dir, Path::new("/run/berth-test"));
    assert_eq!(config.cgroup_parent, "/berth-test");
    assert_eq!(config.node_id, "node-a");
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.log.format, LogFormat::Json);
    let r = &config.registries;
    assert_eq!(r.mirrors["docker.io"].len(), 2);
    assert_eq!(r.mirrors["registry.k8s.io"], ["http://127.0.0.1:5000"]);
    assert_eq!(r.insecure, ["127.0.0.1:5000"]);
    assert_eq!(r.credentials["127.0.0.1:5000"].username, "u");
    assert_eq!(r.credentials["127.0.0.1:5000"].password, "p");
    assert_eq!(r.credentials["other:5000"].auth, "dTpw");
    assert_eq!(r.credentials["third:5000"].identity_token, "tok");
}

#[test]
fn empty_or_comment_only_documents_are_all_defaults() {
    for text in ["", "\n", "# nothing here\n", "---\n"] {
        assert_eq!(
            Config::from_yaml(text).unwrap(),
            Config::default(),
            "{text:?}"
        );
    }
}

#[test]
fn missing_fields_take_their_defaults() {
    let config = Config::from_yaml("log:\n  format: json\n").unwrap();
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.socket, Config::default().socket);
}

#[test]
fn unknown_fields_are_named_at_every_level() {
    let cases = [
        ("sockett: /x\n", "sockett"),
        ("log:\n  lvl: debug\n", "lvl"),
        ("registries:\n  mirror: {}\n", "mirror"),
        ("registries:\n  credentials:\n    h: { user: u }\n", "user"),
    ];
    for (text, field) in cases {
        let message = Config::from_yaml(text).unwrap_err();
        assert!(
            message.contains(&format!("unknown field `{field}`")),
            "{text:?} gave {message:?}"
        );
    }
}

#[test]
fn nested_errors_say_where_they_are() {
    let message = Config::from_yaml("log:\n  lvl: debug\n").unwrap_err();
    assert!(message.contains("log"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn bad_values_are_rejected_naming_the_field() {
    let cases = [
        ("log:\n  format: xml\n", "xml"),
        ("log:\n  level: 'info,[='\n", "log.level"),
        ("node_id: 'two words'\n", "node_id"),
        ("socket: ''\n", "socket"),
        ("state_dir: ''\n", "state_dir"),
        ("run_dir: run\n", "run_dir"),
        ("cgroup_parent: berth\n", "cgroup_parent"),
        ("cgroup_parent: /a/../b\n", "cgroup_parent"),
        (
            "backends:\n  containerd:\n    handler: youki\n",
            "backends.containerd.handler",
        ),
        (
            "telemetry:\n  otlp:\n    sampling_ratio: 1.5\n",
            "telemetry.otlp.sampling_ratio",
        ),
        (
            "telemetry:\n  otlp:\n    sampling_ratio: .nan\n",
            "telemetry.otlp.sampling_ratio",
        ),
        (
            "telemetry:\n  otlp:\n    endpoint: collector:4317\n",
            "telemetry.otlp.endpoint",
        ),
        (
            "telemetry:\n  otlp:\n    endpoint: https://collector:4317\n",
            "telemetry.otlp.endpoint",
        ),
        (
            "telemetry:\n  otlp:\n    protocol: http/json\n",
            "http/json",
        ),
        (
            "telemetry:\n  otlp:\n    service_name: ''\n",
            "telemetry.otlp.service_name",
        ),
    ];
    for (text, needle) in cases {
        let message = Config::from_yaml(text).unwrap_err();
        assert!(message.contains(needle), "{text:?} gave {message:?}");
    }
    let long = format!("socket: /{}\n", "s".repeat(120));
    assert!(Config::from_yaml(&long)
        .unwrap_err()
        .contains("limited to 107"));
}

#[test]
fn otlp_export_is_off_by_default_and_parses_when_set() {
    assert_eq!(Config::default().telemetry.otlp.endpoint, None);
    let text = "telemetry:\n  otlp:\n    endpoint: https://collector.example/otlp\n    \
                protocol: http/protobuf\n    sampling_ratio: 0.25\n    service_name: b\n    \
                resource_attributes: {k8s.cluster.name: prod}\n";
    let otlp = Config::from_yaml(text).unwrap().telemetry.otlp;
    assert_eq!(otlp.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(otlp.sampling_ratio, 0.25);
    assert_eq!(otlp.service_name, "b");
    assert_eq!(otlp.resource_attributes["k8s.cluster.name"], "prod");
}

#[test]
fn youki_serves_a_named_handler_unless_it_is_empty() {
    assert_eq!(Config::default().backends.youki.handler, "youki");
    let config = Config::from_yaml("backends:\n  youki:\n    handler: ''\n").unwrap();
    assert_eq!(config.backends.youki.handler, "");
    // Freed by youki, the name may go to containerd.
    let text = "backends:\n  youki: {handler: runc}\n  containerd: {handler: youki}\n";
    let config = Config::from_yaml(text).unwrap();
    assert_eq!(config.backends.containerd.unwrap().handler, "youki");
}

#[test]
fn load_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fs::write(&path, "log:\n  levle: debug\n").unwrap();
    let message = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("unknown field `levle`"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn an_explicit_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let err = Config::load(Some(&path)).unwrap_err();
    assert!(matches!(err, Error::ConfigRead { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.yaml"));
}

#[test]
fn the_printed_default_config_is_the_default() {
    assert_eq!(
        Config::from_yaml(DEFAULT_CONFIG_YAML).unwrap(),
        Config::default()
    );
}

/// Every field name of the config appears in the printed default, so a new field
/// cannot be added without documenting it there.
#[test]
fn the_printed_default_config_shows_every_field() {
    fn keys(value: &serde_yaml::Value, out: &mut BTreeSet<String>) {
        if let serde_yaml::Value::Mapping(map) = value {
            for (k, v) in map {
                out.insert(k.as_str().unwrap().to_string());
                keys(v, out);
            }
        }
    }
    let mut config = Config::default();
    // Non-empty maps so the per-host structs' fields are listed too.
    config
        .registries
        .credentials
        .insert("h".into(), runtimes::types::RegistryAuth::default());
    config.streaming.tls = Some(crate::streaming::TlsFiles {
        cert: "/c".into(),
        key: "/k".into(),
    });
    let mut names = BTreeSet::new();
    keys(&serde_yaml::to_value(&config).unwrap(), &mut names);
    names.remove("h");
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        assert!(
            DEFAULT_CONFIG_YAML.contains(&format!("{name}:")),
            "default.yaml does not show `{name}`"
        );
    }
}

#[test]
fn redacted_json_hides_secrets_but_keeps_the_rest() {
    let config = Config::from_yaml(CONTRACT_EXAMPLE).unwrap();
    let json = config.redacted_json();
    let text = json.to_string();
    for secret in ["\"p\"", "dTpw", "\"tok\""] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let creds = &json["registries"]["credentials"]["127.0.0.1:5000"];
    assert_eq!(creds["username"], "u");
    assert_eq!(creds["password"], "<redacted>");
    assert_eq!(
        json["registries"]["credentials"]["other:5000"]["password"],
        ""
    );
    assert_eq!(json["socket"], "/run/berth/test.sock");
}

#[test]
fn delegate_sections_parse_and_bad_values_are_named() {
    let config = Config::from_yaml(
        "backends:\n  delegate:\n    address: https://10.0.0.2:7443\n    tls: { ca: /c, cert: /n.crt, key: /n.key }\n\
         delegate:\n  socket: null\n  tcp: 0.0.0.0:7443\n  tls: { cert: /d.crt, key: /d.key, client_ca: /ca }\n",
    )
    .unwrap();
    let d = config.backends.delegate.unwrap();
    assert_eq!(d.handler, "wsl2");
    assert_eq!(d.os, ["linux"]);
    assert_eq!(d.tls.unwrap().server_name, "");
    assert_eq!(config.delegate.socket, None);
    assert_eq!(config.delegate.tcp.as_deref(), Some("0.0.0.0:7443"));

    let cases = [
        (
            "backends:\n  delegate:\n    handler: ''\n",
            "backends.delegate.handler",
        ),
        (
            "backends:\n  delegate:\n    address: https://h:1\n",
            "backends.delegate.tls",
        ),
        (
            "backends:\n  delegate:\n    address: tcp://h:1\n",
            "backends.delegate.address",
        ),
        (
            "backends:\n  delegate:\n    address: unix://rel.sock\n",
            "backends.delegate.address",
        ),
        (
            "backends:\n  delegate:\n    os: []\n",
            "backends.delegate.os",
        ),
        (
            "backends:\n  containerd:\n    handler: wsl2\n  delegate: {}\n",
            "containerd's handler",
        ),
        ("delegate:\n  tcp: 127.0.0.1:7443\n", "delegate.tls"),
        ("delegate:\n  tcp: nowhere\n", "delegate.tcp"),
    ];
    for (text, needle) in cases {
        let message = Config::from_yaml(text).unwrap_err();
        assert!(message.contains(needle), "{text:?} gave {message:?}");
    }
}
