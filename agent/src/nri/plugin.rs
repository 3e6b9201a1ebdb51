//! One connected NRI plugin: the multiplexed unix connection, berth's ttrpc client
//! of the plugin's service and berth's ttrpc server of the runtime service.
//!
//! A plugin is never trusted to behave: every call is bounded by a timeout, every
//! length is checked ([`wire`]), and a plugin that times out, hangs up or breaks the
//! protocol is closed; the adaptation then drops it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::nri as api;
use berth_proto::ttrpc;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Message, PLUGIN_CONN, RUNTIME_CONN, TYPE_REQUEST, TYPE_RESPONSE};
use super::NriError;

/// The plugin service's ttrpc name.
const PLUGIN_SERVICE: &str = "nri.pkg.api.v1alpha1.Plugin";
/// The runtime service's ttrpc name.
const RUNTIME_SERVICE: &str = "nri.pkg.api.v1alpha1.Runtime";
/// gRPC's `Unimplemented`.
const UNIMPLEMENTED: i32 = 12;

/// A connected, registered plugin.
pub(super) struct Plugin {
    /// `idx-name`, as NRI names plugins.
    pub name: String,
    /// The two-digit index that orders plugins.
    pub idx: String,
    /// The events it subscribed to (bit `event - 1`), set once configured.
    events: AtomicU32,
    next_stream: AtomicU32,
    core: Arc<Core>,
}

/// What the reader task shares with the callers: the write half, the calls waiting
/// for an answer, and whether the connection is closed.
struct Core {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Mutex<HashMap<u32, oneshot::Sender<ttrpc::Response>>>,
    closed: CancellationToken,
}

impl Plugin {
    /// Takes a fresh connection and waits up to `timeout` for the plugin to register.
    pub async fn connect(stream: UnixStream, timeout: Duration) -> Result<Arc<Self>, NriError> {
        let (read, write) = stream.into_split();
        let (registered, registration) = oneshot::channel();
        let core = Arc::new(Core {
            writer: tokio::sync::Mutex::new(write),
            pending: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        });
        tokio::spawn(read_loop(read, core.clone(), registered));
        let request = tokio::select! {
            r = registration => r.map_err(|_| {
                NriError::Registration("the plugin hung up before registering".into())
            }),
            () = tokio::time::sleep(timeout) => Err(NriError::Registration(format!(
                "no RegisterPlugin within {timeout:?}"
            ))),
        };
        let request = request.and_then(|r| checked(&r).map(|()| r));
        let request = request.inspect_err(|_| core.close())?;
        Ok(Arc::new(Plugin {
            name: format!("{}-{}", request.plugin_idx, request.plugin_name),
            idx: request.plugin_idx,
            events: AtomicU32::new(0),
            next_stream: AtomicU32::new(1),
            core,
        }))
    }

    /// Whether it subscribed to `event`.
    pub fn subscribed(&self, event: api::Event) -> bool {
        let bit = (event as i32) - 1;
        (0..32).contains(&bit) && self.events.load(Ordering::Relaxed) & (1 << bit) != 0
    }

    /// Records the events it subscribed to (every valid one for 0, as NRI does).
    pub fn subscribe(&self, events: i32) -> Result<(), NriError> {
        let valid = (1u32 << (api::Event::Last as u32 - 1)) - 1;
        let events = events as u32;
        if events & !valid != 0 {
            return Err(NriError::Protocol(format!(
                "plugin {} subscribed to unknown events 0x{:x}",
                self.name,
                events & !valid
            )));
        }
        let events = if events == 0 { valid } else { events };
        self.events.store(events, Ordering::Relaxed);
        Ok(())
    }

    /// Whether its connection is closed.
    pub fn is_closed(&self) -> bool {
        self.core.closed.is_cancelled()
    }

    /// Closes its connection; every call in flight fails.
    pub fn close(&self) {
        self.core.close();
    }

    /// Calls `method` of its plugin service and waits up to `timeout` for the answer.
    /// A timeout, a hang-up or an answer that does not decode closes the plugin (the
    /// error is then [`NriError::is_fatal`]); an error the plugin answers leaves it open.
    pub async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &'static str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, NriError> {
        if self.is_closed() {
            return Err(self.closed());
        }
        let payload = request.encode_to_vec();
        let (tx, rx) = oneshot::channel();
        let mut sent = None;
        let answer = tokio::time::timeout(timeout, async {
            {
                // ttrpc servers refuse a stream id that does not increase: ids are
                // taken in the order frames are written.
                let mut writer = self.core.writer.lock().await;
                let stream = self.next_stream.fetch_add(2, Ordering::Relaxed);
                let envelope = ttrpc::Request {
                    service: PLUGIN_SERVICE.into(),
                    method: method.into(),
                    payload,
                    timeout_nano: i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX),
                    metadata: Vec::new(),
                };
                let frame = wire::encode(
                    PLUGIN_CONN,
                    &Message {
                        stream,
                        kind: TYPE_REQUEST,
                        flags: 0,
                        payload: envelope.encode_to_vec(),
                    },
                )?;
                lock(&self.core.pending).insert(stream, tx);
                sent = Some(stream);
                writer
                    .write_all(&frame)
                    .await
                    .map_err(|e| NriError::Protocol(format!("writing to the plugin: {e}")))?;
            }
            tokio::select! {
                r = rx => r.map_err(|_| self.closed()),
                () = self.core.closed.cancelled() => Err(self.closed()),
            }
        })
        .await;
        if let Some(stream) = sent {
            lock(&self.core.pending).remove(&stream);
        }
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                self.close();
                return Err(err);
            }
            Err(_) => {
                self.close();
                return Err(NriError::Timeout {
                    plugin: self.name.clone(),
                    method,
                    timeout,
                });
            }
        };
        if let Some(status) = response.status.filter(|s| s.code != 0) {
            return Err(NriError::Plugin {
                plugin: self.name.clone(),
                method,
                message: status.message,
            });
        }
        Resp::decode(response.payload.as_slice()).map_err(|e| {
            self.close();
            NriError::Protocol(format!(
                "plugin {}: {method} answer does not decode: {e}",
                self.name
            ))
        })
    }

    fn closed(&self) -> NriError {
        NriError::Closed {
            plugin: self.name.clone(),
        }
    }
}

impl Core {
    fn close(&self) {
        if self.closed.is_cancelled() {
            return;
        }
        self.closed.cancel();
        lock(&self.pending).clear();
    }

    async fn write(&self, frame: &[u8]) -> Result<(), NriError> {
        let mut writer = self.writer.lock().await;
        writer
            .write_all(frame)
            .await
            .map_err(|e| NriError::Protocol(format!("writing to the plugin: {e}")))
    }

    /// Answers a request of the plugin to the runtime service.
    async fn serve(
        &self,
        message: Message,
        registered: &mut Option<oneshot::Sender<api::RegisterPluginRequest>>,
    ) -> Result<(), NriError> {
        let request = ttrpc::Request::decode(message.payload.as_slice())
            .map_err(|e| NriError::Protocol(format!("ttrpc request does not decode: {e}")))?;
        let (status, payload) = match (request.service.as_str(), request.method.as_str()) {
            (RUNTIME_SERVICE, "RegisterPlugin") => {
                let register = api::RegisterPluginRequest::decode(request.payload.as_slice())
                    .map_err(|e| {
                        NriError::Protocol(format!("RegisterPlugin does not decode: {e}"))
                    })?;
                match registered.take() {
                    Some(tx) => {
                        let _ = tx.send(register);
                        (None, api::Empty {}.encode_to_vec())
                    }
                    None => (
                        Some(status(9, "the plugin is registered already")),
                        Vec::new(),
                    ),
                }
            }
            (RUNTIME_SERVICE, "UpdateContainers") => {
                // Unsolicited updates are not applied: every one is answered as failed.
                let update = api::UpdateContainersRequest::decode(request.payload.as_slice())
                    .map_err(|e| {
                        NriError::Protocol(format!("UpdateContainers does not decode: {e}"))
                    })?;
                let answer = api::UpdateContainersResponse {
                    failed: update.update,
                };
                (None, answer.encode_to_vec())
            }
            (service, method) => (
                Some(status(
                    UNIMPLEMENTED,
                    &format!("berth does not serve {service}/{method}"),
                )),
                Vec::new(),
            ),
        };
        let response = ttrpc::Response { status, payload };
        let frame = wire::encode(
            RUNTIME_CONN,
            &Message {
                stream: message.stream,
                kind: TYPE_RESPONSE,
                flags: 0,
                payload: response.encode_to_vec(),
            },
        )?;
        self.write(&frame).await
    }
}

fn status(code: i32, message: &str) -> ttrpc::Status {
    ttrpc::Status {
        code,
        message: message.into(),
    }
}

/// Reads frames until the plugin hangs up, breaks the protocol or is closed.
async fn read_loop(
    mut read: OwnedReadHalf,
    core: Arc<Core>,
    registered: oneshot::Sender<api::RegisterPluginRequest>,
) {
    let mut registered = Some(registered);
    let mut streams: [wire::Stream; 2] = Default::default();
    let result: Result<(), NriError> = async {
        loop {
            let mut header = [0u8; wire::MUX_HEADER];
            tokio::select! {
                r = read.read_exact(&mut header) => r.map_err(hung_up)?,
                () = core.closed.cancelled() => return Ok(()),
            };
            let (conn, len) = wire::frame_header(header)?;
            let mut payload = vec![0u8; len];
            tokio::select! {
                r = read.read_exact(&mut payload) => r.map_err(hung_up)?,
                () = core.closed.cancelled() => return Ok(()),
            };
            for message in streams[conn as usize - 1].push(&payload)? {
                match (conn, message.kind) {
                    (PLUGIN_CONN, TYPE_RESPONSE) => {
                        let response = ttrpc::Response::decode(message.payload.as_slice())
                            .map_err(|e| {
                                NriError::Protocol(format!("ttrpc response does not decode: {e}"))
                            })?;
                        if let Some(tx) = lock(&core.pending).remove(&message.stream) {
                            let _ = tx.send(response);
                        }
                    }
                    (RUNTIME_CONN, TYPE_REQUEST) => tokio::select! {
                        r = core.serve(message, &mut registered) => r?,
                        () = core.closed.cancelled() => return Ok(()),
                    },
                    (conn, kind) => {
                        return Err(NriError::Protocol(format!(
                            "unexpected ttrpc message type {kind} on connection {conn}"
                        )))
                    }
                }
            }
        }
    }
    .await;
    if let Err(err) = result {
        tracing::info!(error = %err, "NRI plugin connection ends");
    }
    core.close();
    let _ = core.writer.lock().await.shutdown().await;
}

fn hung_up(err: std::io::Error) -> NriError {
    NriError::Protocol(format!("reading from the plugin: {err}"))
}

/// NRI's rules for a plugin's name and index: a two-digit index, a name that can be
/// part of a file name.
pub(super) fn checked(request: &api::RegisterPluginRequest) -> Result<(), NriError> {
    let idx = &request.plugin_idx;
    if idx.len() != 2 || !idx.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NriError::Registration(format!(
            "plugin index {idx:?} is not two digits"
        )));
    }
    let name = &request.plugin_name;
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 128 || !name.chars().all(valid) {
        return Err(NriError::Registration(format!(
            "plugin name {name:?} is empty, too long or not [A-Za-z0-9._-]"
        )));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// The plugin's side: registers `idx-name` on the runtime connection.
    async fn register(peer: &mut UnixStream, name: &str, idx: &str) {
        let request = ttrpc::Request {
            service: RUNTIME_SERVICE.into(),
            method: "RegisterPlugin".into(),
            payload: api::RegisterPluginRequest {
                plugin_name: name.into(),
                plugin_idx: idx.into(),
                nri_version: String::new(),
            }
            .encode_to_vec(),
            ..Default::default()
        };
        let frame = wire::encode(
            RUNTIME_CONN,
            &Message {
                stream: 1,
                kind: TYPE_REQUEST,
                flags: 0,
                payload: request.encode_to_vec(),
            },
        )
        .unwrap();
        peer.write_all(&frame).await.unwrap();
    }

    /// The plugin's side: reads one whole frame (conn, ttrpc message).
    async fn read_frame(peer: &mut UnixStream) -> (u32, Message) {
        let mut header = [0u8; wire::MUX_HEADER];
        peer.read_exact(&mut header).await.unwrap();
        let (conn, len) = wire::frame_header(header).unwrap();
        let mut payload = vec![0; len];
        peer.read_exact(&mut payload).await.unwrap();
        let mut messages = wire::Stream::default().push(&payload).unwrap();
        (conn, messages.remove(0))
    }

    #[tokio::test]
    async fn a_plugin_registers_and_answers_a_call() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let plugin = tokio::spawn(Plugin::connect(ours, SECOND));
        register(&mut peer, "probe", "05").await;
        // The registration is answered on the runtime connection.
        let (conn, answer) = read_frame(&mut peer).await;
        assert_eq!(
            (conn, answer.kind, answer.stream),
            (RUNTIME_CONN, TYPE_RESPONSE, 1)
        );
        let plugin = plugin.await.unwrap().unwrap();
        assert_eq!(plugin.name, "05-probe");
        let call = {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                plugin
                    .call::<_, api::ConfigureResponse>(
                        "Configure",
                        &api::ConfigureRequest::default(),
                        SECOND,
                    )
                    .await
            })
        };
        let (conn, request) = read_frame(&mut peer).await;
        assert_eq!(
            (conn, request.kind, request.stream),
            (PLUGIN_CONN, TYPE_REQUEST, 1)
        );
        let envelope = ttrpc::Request::decode(request.payload.as_slice()).unwrap();
        assert_eq!(
            (envelope.service.as_str(), envelope.method.as_str()),
            (PLUGIN_SERVICE, "Configure")
        );
        let response = ttrpc::Response {
            status: None,
            payload: api::ConfigureResponse { events: 1 << 3 }.encode_to_vec(),
        };
        let frame = wire::encode(
            PLUGIN_CONN,
            &Message {
                stream: 1,
                kind: TYPE_RESPONSE,
                flags: 0,
                payload: response.encode_to_vec(),
            },
        )
        .unwrap();
        // Split across two frames: the stream is reassembled.
        let inner = &frame[wire::MUX_HEADER..];
        for part in [&inner[..7], &inner[7..]] {
            peer.write_all(&PLUGIN_CONN.to_be_bytes()).await.unwrap();
            peer.write_all(&(part.len() as u32).to_be_bytes())
                .await
                .unwrap();
            peer.write_all(part).await.unwrap();
        }
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer.events, 8);
        plugin.subscribe(answer.events).unwrap();
        assert!(plugin.subscribed(api::Event::CreateContainer));
        assert!(!plugin.subscribed(api::Event::RunPodSandbox));
        assert!(plugin.subscribe(1 << 20).is_err(), "unknown events");
    }

    #[tokio::test]
    async fn a_silent_plugin_times_out_and_is_closed() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let plugin = tokio::spawn(Plugin::connect(ours, SECOND));
        register(&mut peer, "silent", "10").await;
        read_frame(&mut peer).await;
        let plugin = plugin.await.unwrap().unwrap();
        let err = plugin
            .call::<_, api::Empty>(
                "Synchronize",
                &api::SynchronizeRequest::default(),
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, NriError::Timeout { .. }), "{err}");
        assert!(err.is_fatal());
        assert!(plugin.is_closed());
        // The plugin sees the connection end.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(SECOND, peer.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection stays open");
    }

    #[tokio::test]
    async fn malformed_or_missing_registrations_are_refused() {
        // A frame for a connection that does not exist.
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let plugin = tokio::spawn(Plugin::connect(ours, SECOND));
        peer.write_all(&[0, 0, 0, 9, 0, 0, 0, 0]).await.unwrap();
        let err = plugin.await.unwrap().err().unwrap();
        assert!(matches!(err, NriError::Registration(_)), "{err}");
        // A frame announcing more than a message may hold.
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let plugin = tokio::spawn(Plugin::connect(ours, SECOND));
        peer.write_all(&[0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert!(plugin.await.unwrap().is_err());
        // An invalid index.
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let plugin = tokio::spawn(Plugin::connect(ours, SECOND));
        register(&mut peer, "bad", "1x").await;
        let err = plugin.await.unwrap().err().unwrap();
        assert!(err.to_string().contains("two digits"), "{err}");
        // Nothing at all.
        let (ours, _peer) = UnixStream::pair().unwrap();
        let err = Plugin::connect(ours, Duration::from_millis(100))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("no RegisterPlugin"), "{err}");
    }
}
