//! The optional features the backend reports, each exercised for real: recursive
//! read-only bind mounts and pod user namespaces.

use oci_spec::runtime::Mount;
use runtimes::types::NamespaceMode;
use runtimes::Runtime;

use crate::containers::bind;
use crate::{container, log_text, remove_all, sandbox, wait_exited, Env};

/// A read-only bind of `source` at `destination`, recursive (`rro`) or not.
fn readonly_bind(source: &std::path::Path, destination: &str, recursive: bool) -> Mount {
    let mut mount = bind(&source.to_string_lossy(), destination);
    let mut options = mount.options().clone().unwrap_or_default();
    options.push("ro".to_string());
    if recursive {
        options.push("rro".to_string());
    }
    mount.set_options(Some(options));
    mount
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_read_only_binds_cover_submounts() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let features = rt.features();
    assert!(features.recursive_read_only_mounts && features.supplemental_groups_policy);
    let pod = env.pod_id("rro");
    rt.run_pod_sandbox(&pod, &sandbox("rro", NamespaceMode::Node))
        .await
        .unwrap();
    // A host directory with a writable tmpfs mounted below it.
    let host = env.root.join("volume");
    let sub = host.join("tmpfs");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let script = "touch /v/top 2>/dev/null && echo top-rw || echo top-ro; \
                  touch /v/tmpfs/f 2>/dev/null && echo sub-rw || echo sub-ro";
    let mut seen = Vec::new();
    for (role, recursive) in [("plain", false), ("recursive", true)] {
        let id = pod.with_role(role).unwrap();
        let log = env.root.join(format!("{role}.log"));
        let mut spec = container(&image, &["sh", "-c", script], Some(log.clone()));
        let mut mounts = spec.oci.mounts().clone().unwrap_or_default();
        mounts.push(readonly_bind(&host, "/v", recursive));
        spec.oci.set_mounts(Some(mounts));
        rt.create_container(&pod, &id, &spec).await.unwrap();
        rt.start_container(&id).await.unwrap();
        assert_eq!(wait_exited(&rt, &id).await.exit_code, 0, "{role}");
        seen.push((role, log_text(&log)));
    }
    assert_eq!(
        seen,
        [
            ("plain", "top-ro\nsub-rw\n".to_string()),
            ("recursive", "top-ro\nsub-ro\n".to_string())
        ],
        "ro covers only the bound mount; rro every mount below it"
    );
    nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH).unwrap();
    remove_all(&env, &rt, &[&pod]).await;
}

/// The pod's user namespace: mapped as asked, the container's root is root inside it
/// (it writes its own rootfs and `/dev/shm`), and the pod's PID namespace is owned by
/// it (`/proc` mounts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_user_namespace_maps_its_containers() {
    use runtimes::types::{IdMapping, UserNamespace};
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    assert!(rt.features().user_namespaces);
    let range = IdMapping {
        host_id: 200000,
        container_id: 0,
        length: 65536,
    };
    let user = UserNamespace {
        mode: NamespaceMode::Pod,
        uids: vec![range],
        gids: vec![range],
    };
    let pod = env.pod_id("userns");
    let mut pod_spec = sandbox("userns", NamespaceMode::Pod);
    pod_spec.namespaces.pid = NamespaceMode::Pod;
    pod_spec.namespaces.user = Some(user.clone());
    rt.run_pod_sandbox(&pod, &pod_spec).await.unwrap();
    let id = pod.with_role("c").unwrap();
    let log = env.root.join("userns.log");
    let script = "tr -s ' ' < /proc/self/uid_map; id -u; echo x > /made && echo rootfs-rw; \
                  echo x > /dev/shm/x && echo shm-rw";
    let mut spec = container(&image, &["sh", "-c", script], Some(log.clone()));
    spec.namespaces.pid = NamespaceMode::Pod;
    spec.namespaces.user = Some(user);
    let created = rt.create_container(&pod, &id, &spec).await;
    if let Err(e) = &created {
        let logs = shim_logs(&env);
        panic!("create: {e}\n{logs}");
    }
    rt.start_container(&id).await.unwrap();
    assert_eq!(
        wait_exited(&rt, &id).await.exit_code,
        0,
        "{}",
        log_text(&log)
    );
    assert_eq!(
        log_text(&log),
        " 0 200000 65536\n0\nrootfs-rw\nshm-rw\n",
        "mapped, root inside, owner of its files"
    );
    remove_all(&env, &rt, &[&pod]).await;
}

/// Every supervisor log of the test, for a failure message.
fn shim_logs(env: &Env) -> String {
    let mut out = String::new();
    let pods = env.run_dir().join("youki/pods");
    for entry in std::fs::read_dir(pods).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path().join("shim.log")).unwrap_or_default();
        out.push_str(&format!("{}:\n{text}\n", entry.path().display()));
    }
    out
}
