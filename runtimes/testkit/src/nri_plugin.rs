//! A real NRI plugin for berth's tests, speaking the protocol on its own (its framing
//! is written here, apart from berth's, so a test checks one against the other): it
//! connects to the runtime's NRI socket, registers, answers `Configure` (every event)
//! and `Synchronize`, then every request, until the runtime hangs up.
//!
//! - [`Mode::Inject`]: every container gets the environment variable
//!   `NRI_INJECTED=<value>` and the annotation `nri.berth.test/injected=<value>`,
//!   the value being the config `Configure` gave (trimmed) or else the name.
//! - [`Mode::Reject`]: every `CreateContainer` is answered with an error naming the
//!   container.
//! - [`Mode::Limit`]: every container gets a memory limit of [`LIMIT_MEMORY`], an
//!   `RLIMIT_NOFILE` of [`LIMIT_NOFILE`] and the device `/dev/fuse` (10:229); an
//!   `UpdateContainer` keeps the container's memory limit at [`LIMIT_MEMORY`]
//!   whatever the update asks.
//!
//! Each request it answered is reported as a line: `synchronized`, `CreateContainer
//! <container name>`, or the method's name. The `nri-plugin` binary prints them.

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Sender;

use berth_proto::nri as api;
use berth_proto::ttrpc;
use prost::Message;

const PLUGIN_CONN: u32 = 1;
const RUNTIME_CONN: u32 = 2;
const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const MAX: usize = 4 << 20;

/// What the plugin does with containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Adds an environment variable and an annotation to every container.
    Inject,
    /// Refuses every container.
    Reject,
    /// Limits every container's memory and open files, and gives it `/dev/fuse`.
    Limit,
}

/// The memory limit [`Mode::Limit`] sets: 48 MiB.
pub const LIMIT_MEMORY: i64 = 48 << 20;
/// The `RLIMIT_NOFILE` (soft and hard) [`Mode::Limit`] sets.
pub const LIMIT_NOFILE: u64 = 1234;

/// Runs the plugin `idx-name` on `socket`, sending a line per request answered to
/// `events`, until the runtime hangs up (`Ok`) or breaks the protocol.
pub fn run(
    socket: &str,
    mode: Mode,
    name: &str,
    idx: &str,
    events: Sender<String>,
) -> io::Result<()> {
    run_on(UnixStream::connect(socket)?, mode, name, idx, events)
}

/// [`run`] on a connection already made: the socket a runtime that launched the
/// plugin handed it (NRI's `NRI_PLUGIN_SOCKET`).
pub fn run_on(
    mut conn: UnixStream,
    mode: Mode,
    name: &str,
    idx: &str,
    events: Sender<String>,
) -> io::Result<()> {
    let mut injected = name.to_string();
    let mut writer = BufWriter::new(conn.try_clone()?);
    let register = ttrpc::Request {
        service: "nri.pkg.api.v1alpha1.Runtime".into(),
        method: "RegisterPlugin".into(),
        payload: api::RegisterPluginRequest {
            plugin_name: name.into(),
            plugin_idx: idx.into(),
            nri_version: "v0.12.2".into(),
        }
        .encode_to_vec(),
        timeout_nano: 5_000_000_000,
        metadata: Vec::new(),
    };
    send(
        &mut writer,
        RUNTIME_CONN,
        1,
        REQUEST,
        &register.encode_to_vec(),
    )?;
    let mut streams: HashMap<u32, Vec<u8>> = HashMap::new();
    loop {
        let mut header = [0u8; 8];
        if let Err(err) = conn.read_exact(&mut header) {
            if err.kind() == io::ErrorKind::UnexpectedEof {
                return Ok(());
            }
            return Err(err);
        }
        let id = u32::from_be_bytes(header[..4].try_into().unwrap());
        let len = u32::from_be_bytes(header[4..].try_into().unwrap()) as usize;
        if len > MAX + 10 {
            return Err(invalid(format!("frame of {len} bytes")));
        }
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload)?;
        let buf = streams.entry(id).or_default();
        buf.extend_from_slice(&payload);
        while buf.len() >= 10 {
            let size = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if size > MAX {
                return Err(invalid(format!("message of {size} bytes")));
            }
            if buf.len() < 10 + size {
                break;
            }
            let stream = u32::from_be_bytes(buf[4..8].try_into().unwrap());
            let kind = buf[8];
            let body: Vec<u8> = buf[10..10 + size].to_vec();
            buf.drain(..10 + size);
            match (id, kind) {
                (RUNTIME_CONN, RESPONSE) => {
                    let response = ttrpc::Response::decode(body.as_slice()).map_err(invalid)?;
                    if let Some(status) = response.status.filter(|s| s.code != 0) {
                        return Err(invalid(format!("registration refused: {}", status.message)));
                    }
                }
                (PLUGIN_CONN, REQUEST) => {
                    let request = ttrpc::Request::decode(body.as_slice()).map_err(invalid)?;
                    if request.method == "Configure" {
                        let configure = api::ConfigureRequest::decode(request.payload.as_slice())
                            .map_err(invalid)?;
                        if !configure.config.trim().is_empty() {
                            injected = configure.config.trim().to_string();
                        }
                    }
                    let (status, answer) = answer(&request, mode, &injected)?;
                    let response = ttrpc::Response {
                        status,
                        payload: answer,
                    };
                    send(
                        &mut writer,
                        PLUGIN_CONN,
                        stream,
                        RESPONSE,
                        &response.encode_to_vec(),
                    )?;
                    let line = match request.method.as_str() {
                        "Synchronize" => "synchronized".to_string(),
                        "CreateContainer" => {
                            let event = api::ContainerEvent::decode(request.payload.as_slice())
                                .map_err(invalid)?;
                            format!(
                                "CreateContainer {}",
                                event.container.unwrap_or_default().name
                            )
                        }
                        method => method.to_string(),
                    };
                    // A listener that went away does not stop the plugin.
                    let _ = events.send(line);
                }
                (id, kind) => {
                    return Err(invalid(format!("message type {kind} on connection {id}")))
                }
            }
        }
    }
}

/// The answer to one request of the runtime: an error status, or the encoded reply.
fn answer(
    request: &ttrpc::Request,
    mode: Mode,
    name: &str,
) -> io::Result<(Option<ttrpc::Status>, Vec<u8>)> {
    Ok(match request.method.as_str() {
        // 0: every event.
        "Configure" => (None, api::ConfigureResponse { events: 0 }.encode_to_vec()),
        "Synchronize" => (None, api::SynchronizeResponse::default().encode_to_vec()),
        "CreateContainer" if mode == Mode::Reject => {
            let event = api::ContainerEvent::decode(request.payload.as_slice()).map_err(invalid)?;
            let container = event.container.unwrap_or_default().name;
            let message = format!("nri-plugin {name} rejects container {container}");
            (Some(ttrpc::Status { code: 2, message }), Vec::new())
        }
        "CreateContainer" if mode == Mode::Limit => {
            let adjust = api::ContainerAdjustment {
                rlimits: vec![api::PosixRlimit {
                    r#type: "RLIMIT_NOFILE".into(),
                    hard: LIMIT_NOFILE,
                    soft: LIMIT_NOFILE,
                }],
                linux: Some(api::LinuxContainerAdjustment {
                    resources: Some(memory_limit()),
                    devices: vec![api::LinuxDevice {
                        path: "/dev/fuse".into(),
                        r#type: "c".into(),
                        major: 10,
                        minor: 229,
                        file_mode: Some(api::OptionalFileMode { value: 0o666 }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let reply = api::CreateContainerResponse {
                adjust: Some(adjust),
                ..Default::default()
            };
            (None, reply.encode_to_vec())
        }
        "CreateContainer" => {
            let adjust = api::ContainerAdjustment {
                annotations: [("nri.berth.test/injected".to_string(), name.to_string())].into(),
                env: vec![api::KeyValue {
                    key: "NRI_INJECTED".into(),
                    value: name.into(),
                }],
                ..Default::default()
            };
            let reply = api::CreateContainerResponse {
                adjust: Some(adjust),
                ..Default::default()
            };
            (None, reply.encode_to_vec())
        }
        "UpdateContainer" if mode == Mode::Limit => {
            let request =
                api::UpdateContainerRequest::decode(request.payload.as_slice()).map_err(invalid)?;
            let update = api::ContainerUpdate {
                container_id: request.container.unwrap_or_default().id,
                linux: Some(api::LinuxContainerUpdate {
                    resources: Some(memory_limit()),
                }),
                ignore_failure: false,
            };
            let reply = api::UpdateContainerResponse {
                update: vec![update],
                ..Default::default()
            };
            (None, reply.encode_to_vec())
        }
        "UpdateContainer" => (
            None,
            api::UpdateContainerResponse::default().encode_to_vec(),
        ),
        "StopContainer" => (None, api::StopContainerResponse::default().encode_to_vec()),
        _ => (None, api::Empty {}.encode_to_vec()),
    })
}

/// Resources with [`LIMIT_MEMORY`] as the memory limit.
fn memory_limit() -> api::LinuxResources {
    api::LinuxResources {
        memory: Some(api::LinuxMemory {
            limit: Some(api::OptionalInt64 {
                value: LIMIT_MEMORY,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn send(out: &mut impl Write, conn: u32, stream: u32, kind: u8, payload: &[u8]) -> io::Result<()> {
    out.write_all(&conn.to_be_bytes())?;
    out.write_all(&((payload.len() + 10) as u32).to_be_bytes())?;
    out.write_all(&(payload.len() as u32).to_be_bytes())?;
    out.write_all(&stream.to_be_bytes())?;
    out.write_all(&[kind, 0])?;
    out.write_all(payload)?;
    out.flush()
}

fn invalid(err: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}
