//! The malformed-request campaign: thousands of CRI requests of every RuntimeService
//! and ImageService verb, drawn from fixed seeds, with empty, huge (up to ~1 MB),
//! unicode, control-character and path-traversal strings, numbers at the edges, wrong
//! ids and ids of the other kind, duplicate names and random label and annotation
//! maps, against a real berth. No answer may be `Unknown` or `Internal` (bad input is
//! the client's error; an `Internal` must be a real host failure, and this host has
//! none to give), berth must not panic and must keep answering `Version` after every
//! batch, `ListPodSandbox` of everything made must fit a 4 MiB message, and every pod
//! made must be removable, leaving the host as it was.

mod pods;
mod values;
mod verbs;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_proto::cri::v1::image_service_client::ImageServiceClient;
use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::v1::*;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::world::World;
use crate::{connect, Berth};
use values::Rng;

/// One seed per round; printed, so a failure can be replayed.
const SEEDS: [u64; 3] = [0x00be_7401, 0x5eed_0002, 0x0c0f_fee3];
/// Requests per round, checked in batches.
const REQUESTS: usize = 1200;
const BATCH: usize = 100;
/// gRPC's default message limit, which kubelet's and most clients' decoders keep.
const FOUR_MIB: usize = 4 << 20;
/// The longest a single call may take (a stop with a long grace period, say).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The clients and what the campaign knows of berth: the pods and containers it made
/// (ids the random requests pick from) and the image.
pub struct Target<'a> {
    pub world: &'a World,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    /// Pods made, with the config each was made from.
    pub pods: Vec<(String, PodSandboxConfig)>,
    pub containers: Vec<String>,
    /// The registry's `host:port` (loopback): every pull names it, so no request leaves
    /// the machine.
    pub registry: String,
    pub image_id: String,
    pub log: Log,
}

impl Target<'_> {
    /// Every id the campaign knows, of any kind: for "wrong id" draws.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.pods.iter().map(|(id, _)| id.clone()).collect();
        ids.extend(self.containers.iter().cloned());
        ids.push(self.image_id.clone());
        ids.push(self.world.image.clone());
        ids
    }
}

/// `message` in a request with the campaign's deadline.
pub fn req<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// The codes each verb answered, and the answers no request may get.
#[derive(Default)]
pub struct Log {
    codes: BTreeMap<(&'static str, String), usize>,
    bad: Vec<String>,
    pub requests: usize,
}

impl Log {
    /// Notes `answer` of `verb`; its value when it succeeded.
    pub fn note<T>(
        &mut self,
        verb: &'static str,
        answer: Result<tonic::Response<T>, Status>,
    ) -> Option<T> {
        self.requests += 1;
        let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
        *self.codes.entry((verb, format!("{code:?}"))).or_default() += 1;
        match answer {
            Ok(response) => Some(response.into_inner()),
            Err(status) => {
                if matches!(status.code(), Code::Unknown | Code::Internal) {
                    let message: String = status.message().chars().take(400).collect();
                    self.bad
                        .push(format!("{verb}: {:?}: {message}", status.code()));
                }
                None
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_codes_and_leave_nothing() -> Result<()> {
    let started = Instant::now();
    let world = World::new().await?;
    let berth = world.start().await?;
    let before = world.host();
    let channel = connect(&berth.socket).await?;
    let images = ImageServiceClient::new(channel.clone())
        .max_decoding_message_size(FOUR_MIB)
        .max_encoding_message_size(usize::MAX);
    let image_id = crate::status(&mut images.clone(), &world.image)
        .await?
        .context("the image was pulled")?
        .id;
    let mut target = Target {
        world: &world,
        runtime: RuntimeServiceClient::new(channel)
            .max_decoding_message_size(FOUR_MIB)
            .max_encoding_message_size(usize::MAX),
        images,
        pods: Vec::new(),
        containers: Vec::new(),
        registry: world
            .image
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        image_id,
        log: Log::default(),
    };

    for seed in SEEDS {
        eprintln!("campaign: seed {seed:#x}");
        let mut rng = Rng::new(seed);
        for batch in 0..REQUESTS / BATCH {
            for _ in 0..BATCH {
                verbs::one(&mut rng, &mut target).await;
            }
            still_up(&berth, &mut target.runtime)
                .await
                .with_context(|| format!("after batch {batch} of seed {seed:#x}"))?;
        }
    }

    // Everything made is listed, within a 4 MiB message.
    let listed = target
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .context("ListPodSandbox of everything the campaign made, in 4 MiB")?
        .into_inner()
        .items;
    let containers = target
        .runtime
        .list_containers(ListContainersRequest::default())
        .await
        .context("ListContainers of everything the campaign made, in 4 MiB")?
        .into_inner()
        .containers;
    let listing_bytes = prost::Message::encoded_len(&ListPodSandboxResponse {
        items: listed.clone(),
    });
    eprintln!(
        "campaign: {} requests in {:?}; {} pods ({listing_bytes} bytes listed) and {} \
         containers left to remove",
        target.log.requests,
        started.elapsed(),
        listed.len(),
        containers.len()
    );
    for ((verb, code), n) in &target.log.codes {
        eprintln!("campaign: {verb:<26} {code:<18} {n}");
    }

    let mut runtime = target.runtime.clone();
    for pod in &listed {
        let id = &pod.id;
        runtime
            .stop_pod_sandbox(req(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await
            .with_context(|| format!("stopping pod {id} ({:?})", pod.metadata))?;
        runtime
            .remove_pod_sandbox(req(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await
            .with_context(|| format!("removing pod {id} ({:?})", pod.metadata))?;
    }
    ensure!(crate::world::list_pods(&mut runtime).await?.is_empty());
    ensure!(crate::world::list_containers(&mut runtime)
        .await?
        .is_empty());
    still_up(&berth, &mut runtime).await?;
    ensure!(
        target.log.bad.is_empty(),
        "{} answers were Unknown or Internal:\n{}",
        target.log.bad.len(),
        target.log.bad.join("\n")
    );
    assert_eq!(world.host(), before, "the campaign left things on the host");
    eprintln!("campaign: done in {:?}", started.elapsed());
    Ok(())
}

/// berth runs, has not panicked, and answers `Version`.
async fn still_up(berth: &Berth, runtime: &mut RuntimeServiceClient<Channel>) -> Result<()> {
    let stderr = berth.stderr();
    ensure!(!stderr.contains("panicked"), "berth panicked:\n{stderr}");
    runtime
        .version(req(VersionRequest::default()))
        .await
        .context("berth stopped answering Version")?;
    Ok(())
}
