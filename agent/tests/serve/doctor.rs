//! `berth doctor`: ok on this host with berth's test config, exit 1 naming the fix
//! when the CNI plugins are not where the config says, and nothing written either way.

use std::process::Command;

use anyhow::Result;

use crate::Home;

fn doctor(home: &Home) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["doctor", "--config"])
        .arg(home.config())
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn doctor_says_what_is_missing_and_how_to_fix_it() -> Result<()> {
    berth_testkit::require::root("berth doctor checks as root");
    let home = Home::new("")?;
    let (ok, out) = doctor(&home)?;
    assert!(ok, "{out}");
    assert!(out.contains("ok       CNI"), "{out}");
    assert!(out.ends_with("berth can serve on this host\n"), "{out}");

    let broken = Home::with_node("doctor", "  plugin_dirs: [/nonexistent/cni]\n", "")?;
    let (ok, out) = doctor(&broken)?;
    assert!(!ok, "{out}");
    assert!(out.contains("MISSING  CNI"), "{out}");
    assert!(out.contains("fix: install the CNI plugins"), "{out}");
    assert!(out.contains("1 required check(s) missing"), "{out}");
    // The doctor only looks: no default network written, no state dir made.
    assert!(!broken.dir.path().join("cni").exists());
    assert!(!broken.dir.path().join("state").exists());
    Ok(())
}
