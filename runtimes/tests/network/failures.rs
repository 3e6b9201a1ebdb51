//! Attachments that fail or are cut short leave nothing; detaching what was never (or
//! only half) attached succeeds.

use std::time::{Duration, Instant};

use runtimes::network::NsKind;
use runtimes::Error;
use serde_json::json;

use crate::{dnat_chains, free_ports, pod, Env};

#[tokio::test]
async fn a_plugin_failing_mid_chain_undoes_bridge_and_portmap() {
    let env = Env::with_plugins(vec![
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        json!({"type": "refuse"}),
    ]);
    env.fake(
        "refuse",
        r#"[ "$CNI_COMMAND" = ADD ] || exit 0
printf '%s' '{"cniVersion":"1.0.0","code":7,"msg":"refused by the test plugin","details":"on purpose"}'
exit 1"#,
    );
    let before = env.snapshot();
    let key = env.key("refused");
    let pod = pod("refused", free_ports(1)[0], 80);
    let netns = env.net.pin(NsKind::Net, &key).unwrap();
    let err = env.net.attach(&key, &netns, &pod).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("CNI ADD of plugin refuse")
            && msg.contains("refused by the test plugin: on purpose (CNI error code 7)"),
        "{msg}"
    );
    assert!(!msg.contains("undoing it failed"), "{msg}");
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn a_missing_plugin_binary_is_reported_and_nothing_runs() {
    let env = Env::with_plugins(vec![json!({"type": "no-such-plugin"})]);
    let status = env.net.status().unwrap_err();
    assert!(status.contains("no-such-plugin"), "{status}");
    let before = env.snapshot();
    let key = env.key("missing");
    let netns = env.net.pin(NsKind::Net, &key).unwrap();
    let err = env
        .net
        .attach(&key, &netns, &pod("missing", 0, 80))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("not ready: CNI plugin(s) no-such-plugin of network berth"),
        "{msg}"
    );
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn detach_of_an_unknown_pod_succeeds() {
    let env = Env::default_network();
    let before = env.snapshot();
    let key = env.key("unknown");
    env.net
        .detach(&key, None, &pod("unknown", 0, 80))
        .await
        .unwrap();
    let missing = env.net.pin_path(NsKind::Net, &key);
    env.net
        .detach(&key, Some(&missing), &pod("unknown", 0, 80))
        .await
        .unwrap();
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn a_half_made_attachment_is_removed_by_detach() {
    let env = Env::with_plugins(vec![
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        json!({"type": "hang"}),
    ]);
    let started = env.dir.path().join("hang-started");
    env.fake(
        "hang",
        &format!(
            "[ \"$CNI_COMMAND\" = ADD ] || exit 0\ntouch {}\nexec sleep 60",
            started.display()
        ),
    );
    let before = env.snapshot();
    let key = env.key("half");
    let pod = pod("half", free_ports(1)[0], 80);
    let netns = env.net.pin(NsKind::Net, &key).unwrap();
    {
        // The request is dropped while the last plugin runs (kubelet gave up, or berth
        // is shutting down): bridge and portmap have done their part.
        let attach = env.net.attach(&key, &netns, &pod);
        tokio::pin!(attach);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !started.exists() {
            assert!(Instant::now() < deadline, "the hang plugin never ran");
            tokio::select! {
                r = &mut attach => panic!("attach finished: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
    assert_eq!(env.bridge_ports().len(), 1, "half made: a veth");
    assert_eq!(env.allocations().len(), 1, "half made: an address");
    assert_eq!(
        dnat_chains(&env.nat_rules()).len(),
        1,
        "half made: a DNAT chain"
    );

    env.net.detach(&key, Some(&netns), &pod).await.unwrap();
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert_eq!(env.snapshot(), before);
}
