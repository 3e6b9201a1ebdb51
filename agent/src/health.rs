//! `berth health`: asks a serving berth for CRI `Status` and succeeds only when it says
//! RuntimeReady and NetworkReady, for probes (the Helm chart's readiness probe) and
//! scripts. What is not ready is printed with the runtime's reason and message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth::config::Config;
use berth::Error;
use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::v1::StatusRequest;
use tonic::transport::Endpoint;

/// The conditions a node needs before kubelet runs pods on it.
const REQUIRED: [&str; 2] = ["RuntimeReady", "NetworkReady"];

/// Checks the berth on `socket`, or on the socket of the config at `config` (the
/// default config when neither is given), within `timeout`. `Ok(false)`: it answered
/// but is not ready (what is missing went to stderr).
pub fn run(
    config: Option<&Path>,
    socket: Option<PathBuf>,
    timeout: Duration,
) -> berth::Result<bool> {
    let socket = match socket {
        Some(socket) => socket,
        None => Config::load(config)?.socket,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?
        .block_on(async {
            match tokio::time::timeout(timeout, check(&socket)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f32())),
            }
        })
        .or_else(|why| {
            eprintln!("berth health: {}: {why}", socket.display());
            Ok(false)
        })
}

/// `Ok(ready)` once the socket answered `Status`; `Err` when it could not be asked.
async fn check(socket: &Path) -> Result<bool, String> {
    let channel = Endpoint::from_shared(format!("unix://{}", socket.display()))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {}", chain(&e)))?;
    let status = RuntimeServiceClient::new(channel)
        .status(StatusRequest { verbose: false })
        .await
        .map_err(|e| format!("Status failed: {} {}", e.code(), e.message()))?
        .into_inner()
        .status
        .unwrap_or_default();
    let mut ready = true;
    for want in REQUIRED {
        match status.conditions.iter().find(|c| c.r#type == want) {
            Some(c) if c.status => {}
            Some(c) => {
                eprintln!("berth health: {want} is false: {} {}", c.reason, c.message);
                ready = false;
            }
            None => {
                eprintln!("berth health: Status has no {want} condition");
                ready = false;
            }
        }
    }
    Ok(ready)
}

/// An error with its sources (tonic's transport error alone says only "transport error").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
