//! `CreateContainer`.

use std::path::{Component, Path};

use berth_proto::cri::v1::{
    ContainerConfig, CreateContainerRequest, CreateContainerResponse, PodSandboxConfig,
};
use runtimes::types::{ContainerSpec, ContainerState, ImageInfo, ImageVolume};
use runtimes::{Error, Runtime};

use super::shared::fields;
use super::shared::image::requested_image;
use super::shared::objects::{
    abandon, abandon_nri, in_method, mark, new_cri_id, now_nanos, resolve,
};
use super::shared::sandbox_spec::pod_host_fields;
use super::Cri;
use crate::error::{CallError, CallResult};
use crate::identity;
use crate::spec::{self, SpecInput};
use crate::store::{ContainerPhase, ContainerRecord, SandboxPhase, SandboxRecord};
use crate::telemetry::{self, CallField};

const METHOD: &str = "CreateContainer";

fn not_ready(sandbox: &SandboxRecord) -> Error {
    Error::FailedPrecondition(format!(
        "{METHOD}: pod sandbox {} ({}) is not ready",
        sandbox.id, sandbox.container_id
    ))
}

/// Builds the container's spec from the request and its (pulled) image, records it as
/// `Creating` with a fresh ContainerId, asks the backend to create it, then marks it
/// `Created`. Its name (`name_attempt`) must be unique in the pod; the pod must be
/// ready; the image must have been pulled. On failure nothing is left.
pub(super) async fn create_container(
    cri: &Cri,
    request: CreateContainerRequest,
) -> CallResult<CreateContainerResponse> {
    let Prepared {
        sandbox,
        config,
        name,
        image,
        mut spec,
    } = prepare(cri, request).await?;

    let id = new_cri_id()?;
    telemetry::record(CallField::ContainerId, &id);
    let unique_name = ContainerRecord::name_of(&config);
    // No NRI plugin synchronizes between the record and the container's events.
    let _nri = cri.nri.block().await;
    let record = cri.store.insert::<_, CallError>(|snapshot| {
        // Checked again here, atomically with the insert: the pod may have changed.
        let pod = snapshot
            .sandboxes
            .iter()
            .find(|s| s.id == sandbox.id && s.phase != SandboxPhase::Creating)
            .ok_or_else(|| Error::not_found("pod sandbox", &sandbox.id))?;
        if pod.phase != SandboxPhase::Ready {
            return Err(not_ready(pod).into());
        }
        if let Some(holder) = snapshot
            .containers
            .iter()
            .find(|c| c.sandbox_id == pod.id && c.name() == unique_name)
        {
            return Err(Error::AlreadyExists {
                kind: "container",
                id: format!(
                    "named {unique_name} in pod sandbox {} (id {}, {})",
                    pod.id, holder.id, holder.container_id
                ),
            }
            .into());
        }
        let container_id = identity::container_id(&pod.container_id, &name, &snapshot.allocated)
            .map_err(|source| CallError::Identity {
                method: METHOD,
                source,
            })?;
        Ok(ContainerRecord {
            id: id.clone(),
            sandbox_id: pod.id.clone(),
            container_id,
            phase: ContainerPhase::Creating,
            created_at: now_nanos(),
            config: config.clone(),
            image_id: image.id.clone(),
            image_tag: image.repo_tags.first().cloned(),
            image_digest: image.repo_digests.first().cloned(),
            log_path: spec.log_path.clone(),
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
        })
    })?;

    telemetry::record(CallField::PodSandboxId, &record.sandbox_id);
    let cid = &record.container_id;
    telemetry::record(CallField::BerthId, tracing::field::display(cid));
    telemetry::record(CallField::Name, name.as_str());
    if let Some(metadata) = &config.metadata {
        telemetry::record(CallField::Attempt, metadata.attempt);
    }
    // NRI plugins see the container while it is `Creating` (not listed); their
    // adjustments change its spec, and one that refuses it leaves nothing.
    let nri = cri.nri.active();
    if nri {
        let mut container = crate::nri::container_of(&record);
        if let Some(process) = spec.oci.process() {
            container.env = process.env().clone().unwrap_or_default();
            container.args = process.args().clone().unwrap_or_default();
        }
        let pod = crate::nri::pod_of(&sandbox);
        match cri.nri.create_container(pod, container).await {
            Err(err) => return Err(abandon_nri(&cri.store, &record, err, Ok(()))),
            Ok((adjust, updates)) => {
                if !adjust.is_empty() {
                    let mut annotations = record.config.annotations.clone();
                    if let Err(err) = adjust.apply(&mut spec.oci, &mut annotations, &cri.host) {
                        return Err(abandon_nri(&cri.store, &record, err, Ok(())));
                    }
                    let marked = mark::<ContainerRecord>(&cri.store, &id, |r| {
                        r.config.annotations = annotations;
                    });
                    if let Err(err) = marked {
                        return Err(abandon(&cri.store, &record, err, Ok(())).into());
                    }
                }
                // Other containers' updates, before this one exists (containerd's order).
                if let Err(err) = cri.apply_nri_updates(METHOD, &updates).await {
                    return Err(abandon(&cri.store, &record, err, Ok(())).into());
                }
            }
        }
    }
    let created = cri
        .runtime
        .create_container(&sandbox.container_id, cid, &spec)
        .await;
    if let Err(err) = created {
        // The backend cleaned up after itself.
        return Err(abandon(&cri.store, &record, err, Ok(())).into());
    }
    if let Err(err) =
        mark::<ContainerRecord>(&cri.store, &id, |r| r.phase = ContainerPhase::Created)
    {
        // Created but not recorded as such: undo it rather than leak it.
        let undone = cri.runtime.remove_container(cid).await;
        return Err(abandon(&cri.store, &record, err, undone).into());
    }
    cri.store
        .set_container_state(&id, ContainerState::Created, None);
    if nri {
        if let Ok(Some(created)) = cri.store.get::<ContainerRecord>(&id) {
            let (pod, container) = (
                crate::nri::pod_of(&sandbox),
                crate::nri::container_of(&created),
            );
            cri.nri
                .container_event(berth_proto::nri::Event::PostCreateContainer, pod, container)
                .await;
        }
    }
    Ok(CreateContainerResponse { container_id: id })
}

/// What a valid request makes before anything is recorded.
struct Prepared {
    sandbox: SandboxRecord,
    config: ContainerConfig,
    /// The container's name (metadata).
    name: String,
    image: ImageInfo,
    spec: ContainerSpec,
}

/// Checks the request against its (ready) pod and (pulled) image and builds the
/// container's spec; records and makes nothing.
async fn prepare(cri: &Cri, request: CreateContainerRequest) -> CallResult<Prepared> {
    let sandbox: SandboxRecord = resolve(&cri.store, METHOD, &request.pod_sandbox_id)?;
    if sandbox.phase != SandboxPhase::Ready {
        return Err(not_ready(&sandbox).into());
    }
    let config = request
        .config
        .ok_or_else(|| Error::InvalidSpec(format!("{METHOD}: config is missing")))?;
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    request_fields(&name, &config, request.sandbox_config.as_ref())
        .map_err(|e| in_method(METHOD, e))?;
    let image_name = requested_image(METHOD, config.image.as_ref())?;
    // The image must be pulled first (kubelet always does); never pull here.
    let Some(image) = cri.runtime.image_status(image_name).await? else {
        // One whose pull was refused as ROUTE_TO_PEER (no backend here runs its OS)
        // is refused the same way: the pod belongs on another node.
        let refusal = cri
            .runtime
            .refusal_of_missing_image(&sandbox.container_id, image_name)
            .await;
        return Err(refusal
            .unwrap_or_else(|| Error::not_found("image", image_name))
            .into());
    };
    let sandbox_config = request.sandbox_config.as_ref().unwrap_or(&sandbox.config);
    let mut spec = spec::build(&SpecInput {
        container: &config,
        sandbox: sandbox_config,
        image: &image,
        host: &cri.host,
        lookup: &spec::SystemLookup,
    })?;
    let mut config = config;
    image_volumes(cri.runtime.as_ref(), &mut config, &mut spec).await?;
    Ok(Prepared {
        sandbox,
        config,
        name,
        image,
        spec,
    })
}

/// The request's image volumes (mounts naming an image, KEP-4639) into `spec`, each
/// image resolved to its id, which the stored config keeps as the mount's
/// `image.image_ref` (ContainerStatus reports it). An image volume is read-only,
/// names no host path, and its `image_sub_path` stays inside the image; its image
/// must have been pulled (kubelet pulls it as it pulls the container's).
async fn image_volumes(
    runtime: &dyn Runtime,
    config: &mut ContainerConfig,
    spec: &mut ContainerSpec,
) -> runtimes::Result<()> {
    for (i, mount) in config.mounts.iter_mut().enumerate() {
        let Some(image) = mount.image.as_mut().filter(|i| !i.image.is_empty()) else {
            continue;
        };
        let field = format!("{METHOD}: config.mounts[{i}]");
        let invalid = |why: &str| Error::InvalidSpec(format!("{field}: {why}"));
        if !mount.host_path.is_empty() {
            return Err(invalid("an image volume names no host_path"));
        }
        if !mount.readonly {
            return Err(invalid("an image volume is read-only (readonly: true)"));
        }
        let destination = Path::new(&mount.container_path);
        if !destination.is_absolute() || !plain(destination) || destination == Path::new("/") {
            return Err(invalid(
                "container_path must be an absolute path without `..`, not /",
            ));
        }
        let sub_path = Path::new(&mount.image_sub_path);
        if sub_path.is_absolute() || !plain(sub_path) {
            return Err(invalid(
                "image_sub_path must be a relative path without `..`",
            ));
        }
        let Some(found) = runtime.image_status(&image.image).await? else {
            return Err(Error::not_found(
                "image",
                format!(
                    "{} (the image volume at {})",
                    image.image, mount.container_path
                ),
            ));
        };
        image.image_ref = found.id.clone();
        spec.image_volumes.push(ImageVolume {
            destination: destination.to_path_buf(),
            image_id: found.id,
            sub_path: sub_path.to_path_buf(),
        });
    }
    Ok(())
}

/// No `..` in `path`.
fn plain(path: &Path) -> bool {
    !path.components().any(|c| matches!(c, Component::ParentDir))
}

/// The fields Kubernetes validates (see [`fields`]): the container's name, log path,
/// labels and annotations, and what the request's pod config brings to the host.
fn request_fields(
    name: &str,
    config: &ContainerConfig,
    sandbox_config: Option<&PodSandboxConfig>,
) -> runtimes::Result<()> {
    fields::name("config.metadata.name", name)?;
    fields::log_path("config.log_path", &config.log_path)?;
    fields::map_size("config.labels", &config.labels)?;
    fields::map_size("config.annotations", &config.annotations)?;
    if let Some(image) = &config.image {
        fields::map_size("config.image.annotations", &image.annotations)?;
    }
    match sandbox_config {
        Some(pod) => pod_host_fields("sandbox_config", pod),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1 as cri;

    use super::*;
    use crate::cri::stop_pod_sandbox::stop_pod_sandbox;
    use crate::cri::testing::{container_request, Harness};
    use crate::identity::CONTAINER_ID_LABEL;

    async fn create_err(h: &Harness, request: CreateContainerRequest) -> CallError {
        let err = create_container(&h.cri, request).await.unwrap_err();
        assert!(h.store().list::<ContainerRecord>().unwrap().len() <= 1);
        err
    }

    #[tokio::test]
    async fn creates_a_container_whose_id_follows_its_pod() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "Nginx_Main").await;
        let record = h.store().get::<ContainerRecord>(&id).unwrap().unwrap();
        assert_eq!(record.phase, ContainerPhase::Created);
        assert_eq!(record.sandbox_id, pod);
        assert_eq!(
            record.container_id.to_string(),
            "web.default-nginx--main-0-on-node-a"
        );
        assert_eq!(record.image_id, "sha256:aaaa");
        assert_eq!(
            record.image_tag.as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
        assert_eq!(
            record.log_path.as_deref(),
            Some(std::path::Path::new("/var/log/pods/web/Nginx_Main/0.log"))
        );
        assert_eq!(
            h.mock.container_state(&record.container_id),
            Some(runtimes::types::ContainerState::Created)
        );
        let listed = super::super::list_containers::list_containers(&h.cri, Default::default())
            .await
            .unwrap();
        assert_eq!(
            listed.containers[0].labels[CONTAINER_ID_LABEL],
            record.container_id.to_string()
        );
    }

    #[tokio::test]
    async fn a_duplicate_name_in_the_pod_is_already_exists_but_a_new_attempt_is_not() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let first = h.create(&pod, "app").await;
        let err = create_container(&h.cri, container_request(&pod, "app", 0))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::Runtime(Error::AlreadyExists { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("app_0") && err.to_string().contains(&first),
            "{err}"
        );
        // The next attempt coexists with the previous one, under another ContainerId.
        let second = create_container(&h.cri, container_request(&pod, "app", 1))
            .await
            .unwrap()
            .container_id;
        let cid = |id: &str| h.container_id_of(id).to_string();
        assert_eq!(cid(&first), "web.default-app-0-on-node-a");
        assert_eq!(cid(&second), "web.default-app-1-on-node-a");
        // The same name in another pod is fine.
        let other = h.run_pod("db").await;
        h.create(&other, "app").await;
    }

    #[tokio::test]
    async fn an_unknown_pod_is_not_found() {
        let h = Harness::new().await;
        let err = create_err(&h, container_request("no-such-pod", "app", 0)).await;
        assert!(
            matches!(&err, CallError::Runtime(e) if e.is_not_found()),
            "{err:?}"
        );
        assert!(err.to_string().contains("no-such-pod"), "{err}");
    }

    #[tokio::test]
    async fn a_stopped_pod_is_a_failed_precondition() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        stop_pod_sandbox(
            &h.cri,
            cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            },
        )
        .await
        .unwrap();
        let err = create_err(&h, container_request(&pod, "app", 0)).await;
        assert!(
            matches!(err, CallError::Runtime(Error::FailedPrecondition(_))),
            "{err:?}"
        );
        assert!(err.to_string().contains("not ready"), "{err}");
        assert!(h.store().list::<ContainerRecord>().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_image_not_pulled_is_not_found_naming_it() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let mut request = container_request(&pod, "app", 0);
        request
            .config
            .as_mut()
            .unwrap()
            .image
            .as_mut()
            .unwrap()
            .image = "nginx:1.25".into();
        let err = create_err(&h, request).await;
        assert!(
            matches!(&err, CallError::Runtime(e) if e.is_not_found()),
            "{err:?}"
        );
        assert!(err.to_string().contains("image nginx:1.25"), "{err}");
        assert!(h.store().list::<ContainerRecord>().unwrap().is_empty());
    }

    #[tokio::test]
    async fn invalid_configs_are_invalid_arguments() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let mut missing = container_request(&pod, "app", 0);
        missing.config = None;
        let mut unnamed = container_request(&pod, "app", 0);
        unnamed.config.as_mut().unwrap().metadata = None;
        let mut no_image = container_request(&pod, "app", 0);
        no_image.config.as_mut().unwrap().image = None;
        for request in [missing, unnamed, no_image] {
            let err = create_err(&h, request).await;
            assert!(
                matches!(err, CallError::Runtime(Error::InvalidSpec(_))),
                "{err:?}"
            );
            assert!(err.to_string().starts_with("CreateContainer: "), "{err}");
        }
        assert!(h.store().list::<ContainerRecord>().unwrap().is_empty());
    }

    #[tokio::test]
    async fn names_and_paths_kubernetes_never_sends_are_refused_creating_nothing() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        type Change = fn(&mut CreateContainerRequest);
        let cases: [(&str, Change); 7] = [
            ("config.metadata.name \"a/b\"", |r| {
                r.config.as_mut().unwrap().metadata.as_mut().unwrap().name = "a/b".into()
            }),
            ("config.metadata.name \"\": is empty", |r| {
                r.config.as_mut().unwrap().metadata = None
            }),
            ("config.log_path \"/etc/cron.d/x\": is absolute", |r| {
                r.config.as_mut().unwrap().log_path = "/etc/cron.d/x".into()
            }),
            ("config.log_path \"app/../../../etc/x\"", |r| {
                r.config.as_mut().unwrap().log_path = "app/../../../etc/x".into()
            }),
            ("config.image.annotations hold", |r| {
                let image = r.config.as_mut().unwrap().image.as_mut().unwrap();
                image.annotations.insert("big".into(), "x".repeat(1 << 20));
            }),
            ("sandbox_config.log_directory: \"logs\"", |r| {
                r.sandbox_config.as_mut().unwrap().log_directory = "logs".into()
            }),
            ("sandbox_config.hostname \"Web\"", |r| {
                r.sandbox_config.as_mut().unwrap().hostname = "Web".into()
            }),
        ];
        let calls = h.mock.calls().len();
        for (expected, change) in cases {
            let mut request = container_request(&pod, "app", 0);
            change(&mut request);
            let err = create_err(&h, request).await;
            assert!(
                matches!(err, CallError::Runtime(Error::InvalidSpec(_))),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.starts_with("CreateContainer: "), "{text}");
            assert!(text.contains(expected), "{expected}: {text}");
        }
        assert_eq!(h.mock.calls().len(), calls, "{:?}", h.mock.calls());
        assert!(h.store().list::<ContainerRecord>().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_backend_failure_leaves_nothing() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        h.mock.fail("create_container", || {
            Error::backend("mock", "rootfs failed")
        });
        let err = create_err(&h, container_request(&pod, "app", 0)).await;
        assert!(err.to_string().contains("rootfs failed"), "{err}");
        assert!(h.store().list::<ContainerRecord>().unwrap().is_empty());
        // Only the sandbox's id and route remain.
        assert_eq!(h.store().allocated_ids().unwrap().len(), 1);
        assert_eq!(h.store().routes().unwrap().len(), 1);
        let cid = runtimes::ContainerId::parse_display("web.default-app-0-on-node-a").unwrap();
        assert!(h.runtime().backend_of(&cid).is_none());
    }
}
