//! `berth health`: exit 0 when the berth on the socket answers Status with RuntimeReady
//! and NetworkReady, 1 with the reason otherwise.

use std::process::{Command, Output};

use anyhow::Result;

use super::Home;

fn health(home: &Home) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["health", "--config"])
        .arg(home.config())
        .output()?)
}

#[tokio::test]
async fn health_is_ok_when_berth_serves_and_its_network_is_ready() -> Result<()> {
    let home = Home::new("")?;
    let _berth = home.start().await?;
    let out = health(&home)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr, "");
    Ok(())
}

#[tokio::test]
async fn health_fails_when_no_berth_serves() -> Result<()> {
    let home = Home::new("")?;
    let out = health(&home)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&home.socket().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("cannot connect"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn health_fails_and_says_why_when_the_network_is_not_ready() -> Result<()> {
    let home = Home::with_node("test-node", "  plugin_dirs: [/nonexistent-cni-bin]\n", "")?;
    let _berth = home.start().await?;
    let out = health(&home)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NetworkReady is false"), "{stderr}");
    assert!(!stderr.contains("RuntimeReady"), "{stderr}");
    Ok(())
}
