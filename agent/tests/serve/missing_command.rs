//! A command the image does not have is the request's fault: `CreateContainer` and
//! `ExecSync` answer `InvalidArgument` naming it (not `Internal`), and a refused
//! create leaves nothing behind.

use anyhow::Result;
use berth_proto::cri::v1::*;
use tonic::Code;

use crate::world::{create, create_and_start, list_containers, run_pod, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_is_an_invalid_argument() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("nocmd", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    // The pod's cgroup is made with its first container: make one before comparing.
    let app = world.container("app", &["sleep", "3600"]);
    let ctr = create_and_start(&mut client, &pod, &pod_config, &app).await?;
    let listed = list_containers(&mut client).await?.len();
    let held = world.host();

    let missing = world.container("missing", &["no-such-command", "x"]);
    let status = create(&mut client, &pod, &pod_config, &missing)
        .await
        .expect_err("a container whose command the image lacks was created");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("no-such-command"), "{status:?}");
    assert_eq!(list_containers(&mut client).await?.len(), listed);
    assert_eq!(world.host(), held);

    for cmd in [vec!["no-such-command"], vec![""]] {
        let status = client
            .exec_sync(ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 5,
            })
            .await
            .expect_err("exec of a missing command succeeded");
        assert_eq!(status.code(), Code::InvalidArgument, "{cmd:?}: {status:?}");
        assert!(status.message().contains(cmd[0]), "{status:?}");
    }
    crate::world::remove_all_pods(&mut client).await?;
    Ok(())
}
