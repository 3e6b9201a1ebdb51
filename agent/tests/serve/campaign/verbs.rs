//! One random request of a random verb.

use std::collections::HashMap;

use berth_proto::cri::v1::*;

use super::values::Rng;
use super::{pods, req, Target};

/// An id for a verb taking one of `kind`: mostly a real one, else any id or junk.
fn id_of(rng: &mut Rng, kind: &[String], all: &[String]) -> String {
    if !kind.is_empty() && rng.chance(60) {
        rng.pick(kind).clone()
    } else {
        rng.text(all)
    }
}

fn pod_id(rng: &mut Rng, t: &Target<'_>, ids: &[String]) -> String {
    let pods: Vec<String> = t.pods.iter().map(|(id, _)| id.clone()).collect();
    id_of(rng, &pods, ids)
}

fn container_id(rng: &mut Rng, t: &Target<'_>, ids: &[String]) -> String {
    id_of(rng, &t.containers, ids)
}

fn filter_map(rng: &mut Rng, ids: &[String]) -> HashMap<String, String> {
    if rng.chance(50) {
        HashMap::new()
    } else {
        rng.map(ids)
    }
}

fn image_spec(rng: &mut Rng, t: &Target<'_>, ids: &[String]) -> Option<ImageSpec> {
    if rng.chance(5) {
        return None;
    }
    let image = match rng.below(3) {
        0 => t.world.image.clone(),
        _ => rng.text(ids),
    };
    Some(ImageSpec {
        image,
        annotations: filter_map(rng, ids),
        user_specified_image: rng.text(ids),
        runtime_handler: rng.text(ids),
        image_ref: rng.text(ids),
    })
}

fn resources(rng: &mut Rng, ids: &[String]) -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_period: rng.number(),
        cpu_quota: rng.number(),
        cpu_shares: rng.number(),
        memory_limit_in_bytes: rng.number(),
        oom_score_adj: rng.number(),
        cpuset_cpus: rng.text(ids),
        cpuset_mems: rng.text(ids),
        memory_swap_limit_in_bytes: rng.number(),
        unified: filter_map(rng, ids),
        ..Default::default()
    }
}

/// Sends one random request and notes its answer in `t.log`.
pub async fn one(rng: &mut Rng, t: &mut Target<'_>) {
    let ids = t.ids();
    let mut rt = t.runtime.clone();
    let mut im = t.images.clone();
    match rng.below(34) {
        0..=3 => {
            // Duplicate names come from a small pool.
            let name = if rng.chance(70) {
                format!("pod{}", rng.below(6))
            } else {
                rng.k8s_name()
            };
            let config = pods::pod(rng, t.world, &name, &ids);
            let request = RunPodSandboxRequest {
                config: (!rng.chance(3)).then(|| config.clone()),
                runtime_handler: if rng.chance(90) {
                    String::new()
                } else {
                    rng.text(&ids)
                },
            };
            let answer = rt.run_pod_sandbox(req(request)).await;
            if let Some(r) = t.log.note("RunPodSandbox", answer) {
                t.pods.push((r.pod_sandbox_id, config));
            }
        }
        4 => {
            let id = pod_id(rng, t, &ids);
            t.log.note(
                "StopPodSandbox",
                rt.stop_pod_sandbox(req(StopPodSandboxRequest { pod_sandbox_id: id }))
                    .await,
            );
        }
        5 => {
            let id = pod_id(rng, t, &ids);
            let answer = rt
                .remove_pod_sandbox(req(RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                }))
                .await;
            if t.log.note("RemovePodSandbox", answer).is_some() {
                t.pods.retain(|(p, _)| *p != id);
            }
        }
        6 => {
            let r = PodSandboxStatusRequest {
                pod_sandbox_id: pod_id(rng, t, &ids),
                verbose: rng.chance(50),
            };
            t.log
                .note("PodSandboxStatus", rt.pod_sandbox_status(req(r)).await);
        }
        7 => {
            let filter = (!rng.chance(30)).then(|| PodSandboxFilter {
                id: rng.text(&ids),
                state: rng
                    .chance(50)
                    .then(|| PodSandboxStateValue { state: rng.int() }),
                label_selector: filter_map(rng, &ids),
            });
            t.log.note(
                "ListPodSandbox",
                rt.list_pod_sandbox(req(ListPodSandboxRequest { filter }))
                    .await,
            );
        }
        8..=11 => {
            let (pod, sandbox_config) = match t.pods.get(rng.below(t.pods.len().max(1))) {
                Some((id, config)) if rng.chance(80) => (id.clone(), Some(config.clone())),
                _ => (rng.text(&ids), Some(pods::pod(rng, t.world, "other", &ids))),
            };
            let name = if rng.chance(60) {
                format!("c{}", rng.below(4))
            } else {
                rng.k8s_name()
            };
            let request = CreateContainerRequest {
                pod_sandbox_id: pod,
                config: (!rng.chance(3)).then(|| pods::container(rng, t.world, &name, &ids)),
                sandbox_config: sandbox_config.filter(|_| !rng.chance(10)),
            };
            if let Some(r) = t
                .log
                .note("CreateContainer", rt.create_container(req(request)).await)
            {
                t.containers.push(r.container_id);
            }
        }
        12 | 13 => {
            let id = container_id(rng, t, &ids);
            t.log.note(
                "StartContainer",
                rt.start_container(req(StartContainerRequest { container_id: id }))
                    .await,
            );
        }
        14 => {
            let r = StopContainerRequest {
                container_id: container_id(rng, t, &ids),
                timeout: *rng.pick(&[0, 0, 1, -1, i64::MIN]),
            };
            t.log.note("StopContainer", rt.stop_container(req(r)).await);
        }
        15 => {
            let id = container_id(rng, t, &ids);
            let answer = rt
                .remove_container(req(RemoveContainerRequest {
                    container_id: id.clone(),
                }))
                .await;
            if t.log.note("RemoveContainer", answer).is_some() {
                t.containers.retain(|c| *c != id);
            }
        }
        16 => {
            let filter = (!rng.chance(30)).then(|| ContainerFilter {
                id: rng.text(&ids),
                state: rng
                    .chance(50)
                    .then(|| ContainerStateValue { state: rng.int() }),
                pod_sandbox_id: rng.text(&ids),
                label_selector: filter_map(rng, &ids),
            });
            t.log.note(
                "ListContainers",
                rt.list_containers(req(ListContainersRequest { filter }))
                    .await,
            );
        }
        17 => {
            let r = ContainerStatusRequest {
                container_id: container_id(rng, t, &ids),
                verbose: rng.chance(50),
            };
            t.log
                .note("ContainerStatus", rt.container_status(req(r)).await);
        }
        18 => {
            let r = UpdateContainerResourcesRequest {
                container_id: container_id(rng, t, &ids),
                linux: rng.chance(80).then(|| resources(rng, &ids)),
                windows: None,
                annotations: filter_map(rng, &ids),
            };
            t.log.note(
                "UpdateContainerResources",
                rt.update_container_resources(req(r)).await,
            );
        }
        19 => {
            let id = container_id(rng, t, &ids);
            t.log.note(
                "ReopenContainerLog",
                rt.reopen_container_log(req(ReopenContainerLogRequest { container_id: id }))
                    .await,
            );
        }
        20 => {
            let cmd = match rng.below(4) {
                0 => vec!["true".to_string()],
                1 => vec!["sh".into(), "-c".into(), rng.text(&ids)],
                _ => rng.texts(&ids),
            };
            let r = ExecSyncRequest {
                container_id: container_id(rng, t, &ids),
                cmd,
                timeout: *rng.pick(&[0, 1, 2, -1, i64::MIN, i64::MAX]),
            };
            t.log.note("ExecSync", rt.exec_sync(req(r)).await);
        }
        21 => {
            let r = ExecRequest {
                container_id: container_id(rng, t, &ids),
                cmd: rng.texts(&ids),
                tty: rng.chance(50),
                stdin: rng.chance(50),
                stdout: rng.chance(50),
                stderr: rng.chance(50),
            };
            t.log.note("Exec", rt.exec(req(r)).await);
        }
        22 => {
            let r = AttachRequest {
                container_id: container_id(rng, t, &ids),
                stdin: rng.chance(50),
                tty: rng.chance(50),
                stdout: rng.chance(50),
                stderr: rng.chance(50),
            };
            t.log.note("Attach", rt.attach(req(r)).await);
        }
        23 => {
            let r = PortForwardRequest {
                pod_sandbox_id: pod_id(rng, t, &ids),
                port: vec![rng.int(), rng.int()],
            };
            t.log.note("PortForward", rt.port_forward(req(r)).await);
        }
        24 => {
            let id = container_id(rng, t, &ids);
            t.log.note(
                "ContainerStats",
                rt.container_stats(req(ContainerStatsRequest { container_id: id }))
                    .await,
            );
            let filter = rng.chance(50).then(|| ContainerStatsFilter {
                id: rng.text(&ids),
                pod_sandbox_id: rng.text(&ids),
                label_selector: filter_map(rng, &ids),
            });
            t.log.note(
                "ListContainerStats",
                rt.list_container_stats(req(ListContainerStatsRequest { filter }))
                    .await,
            );
        }
        25 => {
            let id = pod_id(rng, t, &ids);
            t.log.note(
                "PodSandboxStats",
                rt.pod_sandbox_stats(req(PodSandboxStatsRequest { pod_sandbox_id: id }))
                    .await,
            );
            let filter = rng.chance(50).then(|| PodSandboxStatsFilter {
                id: rng.text(&ids),
                label_selector: filter_map(rng, &ids),
            });
            t.log.note(
                "ListPodSandboxStats",
                rt.list_pod_sandbox_stats(req(ListPodSandboxStatsRequest { filter }))
                    .await,
            );
        }
        26 => {
            let r = UpdateRuntimeConfigRequest {
                runtime_config: rng.chance(80).then(|| RuntimeConfig {
                    network_config: Some(NetworkConfig {
                        pod_cidr: rng.text(&ids),
                    }),
                }),
            };
            t.log.note(
                "UpdateRuntimeConfig",
                rt.update_runtime_config(req(r)).await,
            );
            t.log.note(
                "Status",
                rt.status(req(StatusRequest {
                    verbose: rng.chance(50),
                }))
                .await,
            );
            t.log.note(
                "Version",
                rt.version(req(VersionRequest {
                    version: rng.text(&ids),
                }))
                .await,
            );
            t.log.note(
                "RuntimeConfig",
                rt.runtime_config(req(RuntimeConfigRequest {})).await,
            );
        }
        27 => {
            let r = CheckpointContainerRequest {
                container_id: container_id(rng, t, &ids),
                location: rng.text(&ids),
                timeout: rng.number(),
            };
            t.log
                .note("CheckpointContainer", rt.checkpoint_container(req(r)).await);
            let events = rt.get_container_events(req(GetEventsRequest {})).await;
            t.log
                .note("GetContainerEvents", events.map(|r| r.map(|_| ())));
            t.log.note(
                "ListMetricDescriptors",
                rt.list_metric_descriptors(req(ListMetricDescriptorsRequest {}))
                    .await,
            );
            t.log.note(
                "ListPodSandboxMetrics",
                rt.list_pod_sandbox_metrics(req(ListPodSandboxMetricsRequest {}))
                    .await,
            );
        }
        28 => {
            // Always at the campaign's loopback registry: no pull leaves the machine.
            let image = match rng.below(3) {
                0 => t.world.image.clone(),
                1 => format!("127.0.0.1:1/{}", rng.alnum(6)),
                _ => format!("{}/{}", t.registry, rng.text(&ids)),
            };
            let r = PullImageRequest {
                image: Some(ImageSpec {
                    image,
                    annotations: filter_map(rng, &ids),
                    ..Default::default()
                }),
                auth: rng.chance(30).then(|| AuthConfig {
                    username: rng.text(&ids),
                    password: rng.text(&ids),
                    auth: rng.text(&ids),
                    server_address: rng.text(&ids),
                    identity_token: rng.text(&ids),
                    registry_token: rng.text(&ids),
                }),
                sandbox_config: rng
                    .chance(20)
                    .then(|| pods::pod(rng, t.world, "puller", &ids)),
            };
            t.log.note("PullImage", im.pull_image(req(r)).await);
        }
        29 | 30 => {
            let r = ImageStatusRequest {
                image: image_spec(rng, t, &ids),
                verbose: rng.chance(50),
            };
            t.log.note("ImageStatus", im.image_status(req(r)).await);
            let filter = rng.chance(50).then(|| ImageFilter {
                image: image_spec(rng, t, &ids),
            });
            t.log.note(
                "ListImages",
                im.list_images(req(ListImagesRequest { filter })).await,
            );
        }
        31 => {
            // Never the campaign's own image: containers are made from it.
            let image = image_spec(rng, t, &ids).filter(|s| {
                let i = s.image.to_lowercase();
                !(i.is_empty()
                    || t.world.image.contains(&i)
                    || t.image_id.starts_with(&i)
                    || i.contains("busybox"))
            });
            t.log.note(
                "RemoveImage",
                im.remove_image(req(RemoveImageRequest { image })).await,
            );
        }
        _ => {
            t.log.note(
                "ImageFsInfo",
                im.image_fs_info(req(ImageFsInfoRequest {})).await,
            );
        }
    }
}
