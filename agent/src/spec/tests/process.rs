//! Arguments, environment, working directory, user request, oom_score_adj.

use berth_proto::cri::v1::{
    Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    SupplementalGroupsPolicy as CriPolicy,
};
use runtimes::types::{ImageInfo, SupplementalGroupsPolicy, UserRequest};

use super::*;

fn with_image(
    c: &ContainerConfig,
    f: impl FnOnce(&mut ImageInfo),
) -> runtimes::Result<ContainerSpec> {
    let mut img = image();
    f(&mut img);
    build(&SpecInput {
        container: c,
        sandbox: &pod(),
        image: &img,
        host: &host(),
        lookup: &FakeLookup::default(),
    })
}

fn args_of(s: &ContainerSpec) -> Vec<String> {
    s.oci.process().as_ref().unwrap().args().clone().unwrap()
}

fn env_of(s: &ContainerSpec) -> Vec<String> {
    s.oci.process().as_ref().unwrap().env().clone().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// (request command, request args, image entrypoint, image cmd, argv).
type Case<'a> = (
    &'a [&'a str],
    &'a [&'a str],
    &'a [&'a str],
    &'a [&'a str],
    &'a [&'a str],
);

#[test]
fn command_and_args_combine_with_the_image_like_docker() {
    let cases: &[Case] = &[
        (&[], &[], &["/ep"], &["c1", "c2"], &["/ep", "c1", "c2"]),
        (&[], &["a"], &["/ep"], &["c1"], &["/ep", "a"]),
        (&["/cmd"], &[], &["/ep"], &["c1"], &["/cmd"]),
        (
            &["/cmd"],
            &["a", "b"],
            &["/ep"],
            &["c1"],
            &["/cmd", "a", "b"],
        ),
        (&[], &[], &[], &["sh"], &["sh"]),
        (&[], &["x"], &[], &["sh"], &["x"]),
        // An entrypoint of one empty string means none.
        (
            &[],
            &[],
            &[""],
            &["sh", "-c", "true"],
            &["sh", "-c", "true"],
        ),
    ];
    for (command, args, entrypoint, cmd, want) in cases {
        let mut c = ctr();
        c.command = strings(command);
        c.args = strings(args);
        let s = with_image(&c, |i| {
            i.config.entrypoint = strings(entrypoint);
            i.config.cmd = strings(cmd);
        })
        .unwrap();
        assert_eq!(
            args_of(&s),
            strings(want),
            "{command:?} {args:?} {entrypoint:?} {cmd:?}"
        );
    }
}

#[test]
fn no_command_anywhere_is_invalid() {
    let mut c = ctr();
    c.command.clear();
    let err = with_image(&c, |i| i.config.cmd.clear()).unwrap_err();
    assert!(
        err.to_string().starts_with("config.command: neither"),
        "{err}"
    );
}

#[test]
fn an_empty_program_or_a_nul_byte_is_invalid() {
    let mut c = ctr();
    c.command = strings(&[""]);
    assert!(invalid(&c, &pod()).contains("the program to run is empty"));
    c.command = strings(&["sh", "a\0b"]);
    assert!(invalid(&c, &pod()).contains("NUL"));
}

#[test]
fn env_starts_from_path_and_hostname_then_image_then_request() {
    let mut c = ctr();
    c.envs = vec![
        KeyValue {
            key: "A".into(),
            value: "request".into(),
        },
        KeyValue {
            key: "PATH".into(),
            value: "/opt/bin".into(),
        },
        KeyValue {
            key: "EMPTY".into(),
            value: Vec::new(),
        },
    ];
    let s = with_image(&c, |i| {
        i.config.env = strings(&["A=image", "B=image=with=equals"]);
    })
    .unwrap();
    assert_eq!(
        env_of(&s),
        strings(&[
            "PATH=/opt/bin",
            "HOSTNAME=pod-host",
            "A=request",
            "B=image=with=equals",
            "EMPTY=",
        ])
    );
}

#[test]
fn default_path_stays_when_nobody_sets_one_and_tty_adds_term() {
    let mut c = ctr();
    c.tty = true;
    let s = with_image(&c, |i| i.config.env.clear()).unwrap();
    assert_eq!(
        env_of(&s),
        strings(&[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
            "HOSTNAME=pod-host",
        ])
    );
    assert_eq!(s.oci.process().as_ref().unwrap().terminal(), Some(true));
    assert!(s.tty);
}

#[test]
fn a_bad_variable_name_is_invalid() {
    for key in ["", "A=B", "A\0"] {
        let mut c = ctr();
        c.envs = vec![KeyValue {
            key: key.into(),
            value: "v".into(),
        }];
        assert!(invalid(&c, &pod()).starts_with("config.envs[0]"), "{key:?}");
    }
}

#[test]
fn hostname_env_follows_the_pod() {
    let c = ctr();
    let mut p = pod();
    p.hostname.clear();
    // A pod-network pod without a hostname is called after the pod.
    assert!(env_of(&spec(&c, &p)).contains(&"HOSTNAME=pod".to_string()));
    // A host-network one sees the node's.
    let mut host_net = pod_with(|sc| {
        sc.namespace_options = Some(berth_proto::cri::v1::NamespaceOption {
            network: berth_proto::cri::v1::NamespaceMode::Node as i32,
            ..Default::default()
        })
    });
    host_net.hostname.clear();
    assert!(env_of(&spec(&c, &host_net)).contains(&"HOSTNAME=node-1".to_string()));
}

#[test]
fn working_dir_comes_from_the_request_then_the_image() {
    let cwd = |s: &ContainerSpec| s.oci.process().as_ref().unwrap().cwd().clone();
    let mut c = ctr();
    assert_eq!(cwd(&spec(&c, &pod())), PathBuf::from("/"));
    assert_eq!(
        cwd(&with_image(&c, |i| i.config.working_dir = "/srv".into()).unwrap()),
        PathBuf::from("/srv")
    );
    assert_eq!(
        cwd(&with_image(&c, |i| i.config.working_dir = "app".into()).unwrap()),
        PathBuf::from("/app")
    );
    c.working_dir = "/work".into();
    assert_eq!(
        cwd(&with_image(&c, |i| i.config.working_dir = "/srv".into()).unwrap()),
        PathBuf::from("/work")
    );
    c.working_dir = "work".into();
    assert!(invalid(&c, &pod()).starts_with("config.working_dir: \"work\" is not an absolute path"));
}

fn user_of(c: &ContainerConfig, image_user: &str) -> runtimes::Result<UserRequest> {
    with_image(c, |i| i.config.user = image_user.into()).map(|s| s.user)
}

#[test]
fn the_image_user_is_used_when_the_request_names_none() {
    let cases = [
        ("", UserRequest::default()),
        (
            "1000",
            UserRequest {
                uid: Some(1000),
                ..Default::default()
            },
        ),
        (
            "nobody",
            UserRequest {
                username: Some("nobody".into()),
                ..Default::default()
            },
        ),
        (
            "1000:50",
            UserRequest {
                uid: Some(1000),
                gid: Some(50),
                ..Default::default()
            },
        ),
        (
            "www:staff",
            UserRequest {
                username: Some("www".into()),
                group: Some("staff".into()),
                ..Default::default()
            },
        ),
    ];
    for (image_user, want) in cases {
        assert_eq!(user_of(&ctr(), image_user).unwrap(), want, "{image_user:?}");
        // A security context without user fields keeps the image's user too.
        assert_eq!(
            user_of(&ctr_with(|_| {}), image_user).unwrap(),
            want,
            "{image_user:?}"
        );
    }
}

#[test]
fn run_as_user_and_group_replace_the_image_user() {
    let c = ctr_with(|sc| {
        sc.run_as_user = Some(Int64Value { value: 1001 });
        sc.run_as_group = Some(Int64Value { value: 1002 });
    });
    let want = UserRequest {
        uid: Some(1001),
        gid: Some(1002),
        ..Default::default()
    };
    assert_eq!(user_of(&c, "www:staff").unwrap(), want);
    // Only the uid: the primary group comes from /etc/passwd, not from the image's User.
    let c = ctr_with(|sc| sc.run_as_user = Some(Int64Value { value: 0 }));
    assert_eq!(
        user_of(&c, "1000:50").unwrap(),
        UserRequest {
            uid: Some(0),
            ..Default::default()
        }
    );
}

#[test]
fn run_as_username_wins_over_run_as_user() {
    let c = ctr_with(|sc| {
        sc.run_as_username = "nobody".into();
        sc.run_as_user = Some(Int64Value { value: 5 });
        sc.run_as_group = Some(Int64Value { value: 7 });
    });
    let want = UserRequest {
        username: Some("nobody".into()),
        gid: Some(7),
        ..Default::default()
    };
    assert_eq!(user_of(&c, "").unwrap(), want);
}

#[test]
fn run_as_group_without_a_user_is_invalid_as_critest_expects() {
    let c = ctr_with(|sc| sc.run_as_group = Some(Int64Value { value: 1002 }));
    assert_eq!(
        invalid(&c, &pod()),
        "config.linux.security_context.run_as_group: is set without run_as_user or run_as_username"
    );
}

#[test]
fn ids_outside_the_kernel_range_are_invalid() {
    for bad in [-1, i64::from(u32::MAX), i64::from(u32::MAX) + 1] {
        let c = ctr_with(|sc| sc.run_as_user = Some(Int64Value { value: bad }));
        assert!(
            invalid(&c, &pod()).starts_with("config.linux.security_context.run_as_user"),
            "{bad}"
        );
        let c = ctr_with(|sc| sc.supplemental_groups = vec![5, bad]);
        assert!(
            invalid(&c, &pod()).starts_with("config.linux.security_context.supplemental_groups[1]"),
            "{bad}"
        );
    }
}

#[test]
fn supplemental_groups_and_their_policy_are_passed_on() {
    let c = ctr_with(|sc| {
        sc.run_as_user = Some(Int64Value { value: 1000 });
        sc.supplemental_groups = vec![1234, 5678];
        sc.supplemental_groups_policy = CriPolicy::Strict as i32;
    });
    let u = user_of(&c, "").unwrap();
    assert_eq!(u.supplemental_groups, vec![1234, 5678]);
    assert_eq!(u.policy, SupplementalGroupsPolicy::Strict);
    let c = ctr_with(|sc| sc.supplemental_groups_policy = 7);
    assert!(invalid(&c, &pod()).contains("supplemental_groups_policy: unknown policy 7"));
}

fn with_oom(adj: i64) -> ContainerConfig {
    let mut c = ctr();
    c.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            oom_score_adj: adj,
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

#[test]
fn oom_score_adj_is_raised_to_the_agents_own() {
    let adj = |c: &ContainerConfig| {
        spec(c, &pod())
            .oci
            .process()
            .as_ref()
            .unwrap()
            .oom_score_adj()
    };
    assert_eq!(adj(&with_oom(-998)), Some(-500));
    assert_eq!(adj(&with_oom(1000)), Some(1000));
    assert_eq!(adj(&with_oom(-500)), Some(-500));
    // Without resources the process inherits the supervisor's.
    assert_eq!(adj(&ctr()), None);
    assert!(invalid(&with_oom(1001), &pod()).starts_with("config.linux.resources.oom_score_adj"));
    assert!(invalid(&with_oom(-1001), &pod()).starts_with("config.linux.resources.oom_score_adj"));
}

#[test]
fn log_path_joins_the_pod_directory_and_stop_signal_comes_from_the_image() {
    let s = with_image(&ctr(), |i| i.config.stop_signal = "SIGQUIT".into()).unwrap();
    assert_eq!(
        s.log_path,
        Some(PathBuf::from("/var/log/pods/ns_pod_uid-1/app/0.log"))
    );
    assert_eq!(s.stop_signal.as_deref(), Some("SIGQUIT"));
    let mut p = pod();
    p.log_directory.clear();
    let s = spec(&ctr(), &p);
    assert_eq!(s.log_path, None);
    assert_eq!(s.stop_signal, None);
}

/// Kubernetes 1.37's `ContainerConfig.stop_signal` (the pod's `lifecycle.stopSignal`)
/// wins over the image's; the runtime default leaves the image's.
#[test]
fn the_pod_stop_signal_overrides_the_image() {
    let mut c = ctr();
    c.stop_signal = berth_proto::cri::v1::Signal::Sigusr1 as i32;
    let s = with_image(&c, |i| i.config.stop_signal = "SIGQUIT".into()).unwrap();
    assert_eq!(s.stop_signal.as_deref(), Some("SIGUSR1"));
    c.stop_signal = berth_proto::cri::v1::Signal::RuntimeDefault as i32;
    let s = with_image(&c, |i| i.config.stop_signal = "SIGQUIT".into()).unwrap();
    assert_eq!(s.stop_signal.as_deref(), Some("SIGQUIT"));
}

/// CRI sends env values as bytes; an OCI environment holds strings.
#[test]
fn an_env_value_that_is_not_utf8_is_refused() {
    let mut c = ctr();
    c.envs = vec![KeyValue {
        key: "RAW".into(),
        value: vec![0xff, 0xfe],
    }];
    let err = with_image(&c, |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("config.envs[0]") && err.contains("UTF-8"),
        "{err}"
    );
}
