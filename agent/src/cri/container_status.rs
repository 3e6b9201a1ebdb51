//! `ContainerStatus`.

use std::collections::HashMap;

use berth_proto::cri::v1 as cri;
use runtimes::types::{ContainerState, ContainerStatus};
use serde_json::json;

use super::shared::container::{cri_state, image_ref, image_spec, observe};
use super::shared::objects::{add_inspection, resolve, shown_labels, unix_nanos};
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "ContainerStatus";

/// The container as recorded, with its state, times, exit and user from the backend.
/// `verbose` adds `info["info"]`: the ContainerId, the backend it runs on, its pid,
/// what the backend can tell of its supervisor, cgroup and network namespace (see
/// `add_inspection`) and the config it was created with.
pub(super) async fn container_status(
    cri: &Cri,
    request: cri::ContainerStatusRequest,
) -> runtimes::Result<cri::ContainerStatusResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    let observed = observe(cri, &record).await;
    let info = if request.verbose {
        let info = verbose_info(cri, &record, &observed).await;
        HashMap::from([("info".to_string(), info)])
    } else {
        HashMap::new()
    };
    Ok(cri::ContainerStatusResponse {
        status: Some(to_cri_status(&record, observed)),
        info,
    })
}

fn to_cri_status(record: &ContainerRecord, observed: ContainerStatus) -> cri::ContainerStatus {
    let exited = matches!(
        observed.state,
        ContainerState::Exited | ContainerState::Unknown
    );
    let reason = match observed.reason.as_str() {
        "" if observed.state == ContainerState::Exited && observed.exit_code == 0 => "Completed",
        "" if observed.state == ContainerState::Exited => "Error",
        reason => reason,
    };
    // As containerd: a created container has no start time, a running one no finish.
    let time = |t: Option<std::time::SystemTime>| t.map(unix_nanos).unwrap_or(0);
    let started_at = match observed.state {
        ContainerState::Created => 0,
        _ => time(observed.started_at),
    };
    cri::ContainerStatus {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: cri_state(observed.state) as i32,
        created_at: record.created_at,
        started_at,
        finished_at: if exited {
            time(observed.finished_at)
        } else {
            0
        },
        exit_code: observed.exit_code,
        // The pod's own stop signal; the image's or SIGTERM show as the default.
        stop_signal: record.config.stop_signal,
        image: Some(image_spec(record)),
        image_ref: image_ref(record),
        reason: reason.to_string(),
        message: observed.message,
        labels: shown_labels(&record.config.labels, &record.container_id),
        annotations: record.config.annotations.clone(),
        mounts: record.config.mounts.clone(),
        log_path: record
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: record
            .resources
            .clone()
            .map(|linux| cri::ContainerResources {
                linux: Some(linux),
                windows: None,
            }),
        image_id: record.image_id.clone(),
        user: observed.user.map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u.supplemental_groups.into_iter().map(i64::from).collect(),
            }),
        }),
    }
}

async fn verbose_info(cri: &Cri, record: &ContainerRecord, observed: &ContainerStatus) -> String {
    let mut info = json!({
        "sandboxID": record.sandbox_id,
        "containerId": record.container_id.to_string(),
        "backend": cri.runtime.backend_of(&record.container_id),
        "pid": observed.pid,
        "imageId": record.image_id,
        "logPath": record.log_path,
        "config": record.config,
    });
    add_inspection(cri, &record.container_id, &mut info).await;
    info.to_string()
}

#[cfg(test)]
mod tests {
    use runtimes::types::ResolvedUser;

    use super::*;
    use crate::cri::testing::Harness;

    async fn status(h: &Harness, id: &str, verbose: bool) -> cri::ContainerStatusResponse {
        container_status(
            &h.cri,
            cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose,
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn reports_the_record_and_the_backend_state() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "app").await;
        let created = status(&h, &id, false).await.status.unwrap();
        assert_eq!(created.state(), cri::ContainerState::ContainerCreated);
        assert_eq!((created.started_at, created.finished_at), (0, 0));
        assert!(created.created_at > 0);
        assert_eq!(created.metadata.unwrap().name, "app");
        assert_eq!(
            created.image.unwrap().image,
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(created.image_ref, "docker.io/library/busybox@sha256:bbbb");
        assert_eq!(created.image_id, "sha256:aaaa");
        assert_eq!(created.log_path, "/var/log/pods/web/app/0.log");
        assert_eq!(created.labels["tier"], "app");
        assert_eq!(created.annotations["note"], "x");

        let id = h.start(&pod, "runner").await;
        let running = status(&h, &id, false).await.status.unwrap();
        assert_eq!(running.state(), cri::ContainerState::ContainerRunning);
        assert!(running.started_at > 0);
        assert_eq!(running.finished_at, 0);
        assert_eq!(
            running.user.unwrap().linux.unwrap(),
            cri::LinuxContainerUser {
                uid: 0,
                gid: 0,
                supplemental_groups: vec![]
            }
        );
    }

    #[tokio::test]
    async fn an_exit_has_its_code_reason_and_times() {
        let h = Harness::new().await;
        let (pod, id) = h.running_app().await;
        let cid = h.container_id_of(&id);
        h.mock.exit_container(&cid, 3);
        let exited = status(&h, &id, false).await.status.unwrap();
        assert_eq!(exited.state(), cri::ContainerState::ContainerExited);
        assert_eq!((exited.exit_code, exited.reason.as_str()), (3, "Error"));
        assert!(exited.finished_at >= exited.started_at && exited.started_at > 0);

        let id = h.start(&pod, "done").await;
        let cid = h.container_id_of(&id);
        h.mock.exit_container(&cid, 0);
        let done = status(&h, &id, false).await.status.unwrap();
        assert_eq!((done.exit_code, done.reason.as_str()), (0, "Completed"));
    }

    #[tokio::test]
    async fn a_container_the_backend_lost_has_exited_for_an_unknown_reason() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        h.mock.fail("container_status", || {
            runtimes::Error::not_found("container", "x")
        });
        let lost = status(&h, &id, false).await.status.unwrap();
        assert_eq!(lost.state(), cri::ContainerState::ContainerExited);
        assert_eq!((lost.exit_code, lost.reason.as_str()), (255, "Unknown"));
        h.mock
            .fail("container_status", || runtimes::Error::Unavailable {
                service: "supervisor".into(),
                message: "socket closed".into(),
            });
        let unknown = status(&h, &id, false).await.status.unwrap();
        assert_eq!(unknown.state(), cri::ContainerState::ContainerUnknown);
        assert!(unknown.message.contains("socket closed"));
    }

    #[tokio::test]
    async fn verbose_info_names_the_container_id_backend_and_pid() {
        let h = Harness::new().await;
        let (pod, id) = h.running_app().await;
        let answer = status(&h, &id, true).await;
        let info: serde_json::Value = serde_json::from_str(&answer.info["info"]).unwrap();
        assert_eq!(info["containerId"], "web.default-app-0-on-node-a");
        assert_eq!(info["backend"], "mock");
        assert_eq!(info["sandboxID"], pod);
        assert!(info["pid"].as_u64().is_some_and(|p| p > 0), "{info}");
        assert_eq!(info["cgroupPath"], "/mock/web.default-app-0-on-node-a");
        assert_eq!(info["netnsPath"], "/run/mock/netns/1");
        assert!(info.get("supervisorPid").is_none(), "{info}");
        assert_eq!(info["config"]["metadata"]["name"], "app");
        assert!(status(&h, &id, false).await.info.is_empty());
    }

    #[tokio::test]
    async fn unknown_ids_are_not_found_and_prefixes_resolve() {
        let h = Harness::new().await;
        let err = container_status(&h.cri, cri::ContainerStatusRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(err, runtimes::Error::InvalidSpec(_)), "{err:?}");
        let req = |id: &str| cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        assert!(container_status(&h.cri, req("no-such-container"))
            .await
            .unwrap_err()
            .is_not_found());
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "app").await;
        let by_prefix = container_status(&h.cri, req(&id[..12])).await.unwrap();
        assert_eq!(by_prefix.status.unwrap().id, id);
    }

    #[test]
    fn resolved_users_are_reported() {
        let record = ContainerRecord {
            id: "c".into(),
            sandbox_id: "s".into(),
            container_id: runtimes::ContainerId::new("a.b", "c", 0, "n").unwrap(),
            phase: crate::store::ContainerPhase::Created,
            created_at: 1,
            config: Default::default(),
            image_id: "sha256:1".into(),
            image_tag: None,
            image_digest: None,
            log_path: None,
            resources: None,
        };
        let status = to_cri_status(
            &record,
            ContainerStatus {
                state: ContainerState::Running,
                user: Some(ResolvedUser {
                    uid: 1000,
                    gid: 100,
                    supplemental_groups: vec![10, 20],
                }),
                ..Default::default()
            },
        );
        let user = status.user.unwrap().linux.unwrap();
        assert_eq!(
            (user.uid, user.gid, user.supplemental_groups),
            (1000, 100, vec![10, 20])
        );
        assert_eq!(status.image_ref, "sha256:1");
    }
}
