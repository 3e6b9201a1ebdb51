//! `UpdateRuntimeConfig`: the pod CIDR kubelet sends renders `network.conf_template`,
//! pods get addresses from it, and a restarted berth keeps it.

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use tonic::Code;

use crate::world::{pod_ip, run_pod, stop_and_remove_pod, Client, World};

fn update(cidr: &str) -> UpdateRuntimeConfigRequest {
    UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    }
}

async fn network_ready(client: &mut Client) -> Result<(bool, String)> {
    let status = client
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner()
        .status
        .context("no status")?;
    let network = status
        .conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .context("no NetworkReady")?;
    Ok((network.status, network.message.clone()))
}

/// Runs the pod `name`, checks its address is in the /24 `cidr`, and removes it.
async fn a_pod_gets_an_address_in(
    client: &mut Client,
    world: &World,
    name: &str,
    cidr: &str,
) -> Result<()> {
    let pod = run_pod(client, &world.pod(name, &[])).await?;
    let ip = pod_ip(client, &pod).await?;
    let net = cidr.trim_end_matches("0/24");
    anyhow::ensure!(ip.starts_with(net), "{ip} not in {cidr}");
    stop_and_remove_pod(client, &pod).await
}

#[tokio::test]
async fn the_pod_cidr_kubelet_sends_makes_the_network() -> Result<()> {
    let templates = tempfile::tempdir()?;
    let template = templates.path().join("pods.conflist");
    let world =
        World::with_network_config(&format!("  conf_template: {}\n", template.display()), "")
            .await?;
    std::fs::write(
        &template,
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "pods-{tag}", "plugins": [{{"type": "bridge",
                "bridge": "{bridge}", "isGateway": true, "ipam": {{"type": "host-local",
                "ranges": [[{{"subnet": "{{{{.PodCIDR}}}}"}}]],
                "dataDir": "{ipam}"}}}}]}}"#,
            tag = world.tag,
            bridge = world.bridge,
            ipam = world.dir().join("ipam").display(),
        ),
    )?;
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;

    // Until kubelet sends the CIDR there is no network of berth's.
    let (ready, why) = network_ready(&mut client).await?;
    assert!(!ready, "the network is ready before the pod CIDR came");
    assert!(why.contains("no CNI network config"), "{why}");

    let bad = client
        .update_runtime_config(update("10.1.2.3"))
        .await
        .expect_err("a CIDR without a length was taken");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");

    let cidr = format!("{}7.0/24", world.prefix);
    client.update_runtime_config(update(&cidr)).await?;
    assert_eq!(network_ready(&mut client).await?, (true, String::new()));
    a_pod_gets_an_address_in(&mut client, &world, "cidr", &cidr).await?;

    // A restarted berth has the network without kubelet sending the CIDR again, even
    // when the rendered file is gone.
    berth.kill9().await?;
    std::fs::remove_dir_all(world.dir().join("cni"))?;
    let berth = world.start_as("berth-again").await?;
    let mut client = berth.runtime().await?;
    assert_eq!(network_ready(&mut client).await?, (true, String::new()));
    a_pod_gets_an_address_in(&mut client, &world, "again", &cidr).await?;
    Ok(())
}
