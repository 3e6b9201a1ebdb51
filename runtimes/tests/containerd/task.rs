//! A container's whole life through containerd-client alone, as the backend will drive
//! it: Containers.Create with an OCI spec, Tasks.Create with the rootfs given as a bind
//! mount (no image in containerd, no snapshot), runc options of our own, Start, Wait
//! for the exit code, Delete. Pins down the wire details the generated client leaves to
//! its user.

use std::path::Path;

use berth_testkit::containerd::Containerd;
use berth_testkit::host::random;
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, StartRequest, WaitRequest,
};
use containerd_client::types::Mount;
use oci_spec::runtime::{ProcessBuilder, RootBuilder, Spec};
use prost::Message;
use prost_types::Any;
use runtimes::containerd::connect::{connect, with_namespace};

/// The type URL containerd registers the OCI runtime spec under (a JSON value).
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// `containerd.runc.v1.Options`: containerd-client does not generate the runc shim's
/// options (api/types/runc/options/oci.proto), so a client declares the fields it sets,
/// with the proto's tags, and sends them under the message's full name.
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
    #[prost(string, tag = "6")]
    binary_name: String,
    #[prost(string, tag = "7")]
    root: String,
    #[prost(bool, tag = "9")]
    systemd_cgroup: bool,
}

#[tokio::test]
async fn a_container_runs_on_a_bind_mounted_rootfs_and_reports_its_exit_code() {
    let containerd = Containerd::start();
    let dir = containerd.dir();
    let rootfs = dir.join("rootfs");
    // The rootfs is mounted read-only: runc cannot create the default spec's mount
    // points, so they exist beforehand (as in any image).
    for d in ["bin", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (hack/install-deps)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let channel = connect(containerd.socket()).await.unwrap();
    let ns = "berth-test";
    // Unique: with no cgroupsPath in the spec runc puts the container in /<id>.
    let id = format!("berth-task-{}", random());

    // The shim mounts the task's rootfs at <bundle>/rootfs; the spec points there.
    let mut spec = Spec::default();
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(true)
            .build()
            .unwrap(),
    ));
    let process = ProcessBuilder::default()
        .args(vec![
            "/bin/busybox".to_string(),
            "sh".to_string(),
            "-c".to_string(),
            "exit 7".to_string(),
        ])
        .cwd("/")
        .terminal(false)
        .build()
        .unwrap();
    spec.set_process(Some(process));
    spec.set_hostname(None);
    let container = Container {
        id: id.clone(),
        runtime: Some(Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(Any {
            type_url: SPEC_TYPE_URL.into(),
            value: serde_json::to_vec(&spec).unwrap(),
        }),
        ..Default::default()
    };
    let mut containers = ContainersClient::new(channel.clone());
    containers
        .create(
            with_namespace(
                ns,
                CreateContainerRequest {
                    container: Some(container),
                },
            )
            .unwrap(),
        )
        .await
        .unwrap();

    // runc's state below the test's directory (<root>/<namespace>/<id>), not in the
    // machine-wide /run/containerd/runc/<namespace>.
    let options = RuncOptions {
        binary_name: "/usr/sbin/runc".into(),
        root: dir.join("runc").display().to_string(),
        systemd_cgroup: false,
    };
    let mut tasks = TasksClient::new(channel.clone());
    let create = CreateTaskRequest {
        container_id: id.clone(),
        rootfs: vec![Mount {
            r#type: "bind".into(),
            source: rootfs.display().to_string(),
            target: String::new(),
            options: vec!["rbind".into(), "ro".into()],
        }],
        options: Some(Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.encode_to_vec(),
        }),
        ..Default::default()
    };
    let created = tasks
        .create(with_namespace(ns, create).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert!(created.pid > 0);
    assert!(
        dir.join("runc").join(ns).join(&id).exists(),
        "runc state not in our root"
    );

    let wait = WaitRequest {
        container_id: id.clone(),
        exec_id: String::new(),
    };
    let waiting = {
        let mut tasks = tasks.clone();
        let request = with_namespace(ns, wait).unwrap();
        tokio::spawn(async move { tasks.wait(request).await })
    };
    let start = StartRequest {
        container_id: id.clone(),
        exec_id: String::new(),
    };
    tasks
        .start(with_namespace(ns, start).unwrap())
        .await
        .unwrap();
    let exited = waiting.await.unwrap().unwrap().into_inner();
    assert_eq!(exited.exit_status, 7);
    assert!(exited.exited_at.is_some());

    let delete = DeleteTaskRequest {
        container_id: id.clone(),
    };
    let deleted = tasks
        .delete(with_namespace(ns, delete).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.exit_status, 7);
    containers
        .delete(with_namespace(ns, DeleteContainerRequest { id: id.clone() }).unwrap())
        .await
        .unwrap();
    assert!(!dir.join("runc").join(ns).join(&id).exists());
    assert_eq!(
        berth_testkit::host::processes_mentioning(&containerd.socket().display().to_string()),
        Vec::<String>::new(),
        "the shim outlived its task"
    );
}
