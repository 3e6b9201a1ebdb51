//! The server side of `PortForward`: one gRPC stream pumped to and from one
//! connection into the pod ([`runtimes::types::PortStream`]).

use berth_proto::delegate::port_input::Input;
use berth_proto::delegate::{PortInput, PortOutput, PortStart};
use runtimes::types::PortStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::stream::BoxStream;

/// The first message of a forward: its `start`.
pub async fn start(inbound: &mut Streaming<PortInput>) -> Result<PortStart, Status> {
    match inbound.message().await? {
        Some(PortInput {
            input: Some(Input::Start(start)),
        }) => Ok(start),
        _ => Err(Status::invalid_argument(
            "delegate protocol: a port forward's first message must be `start`",
        )),
    }
}

/// Pumps `connection` until the pod side closed (the output ends) or the client went
/// away (the connection is dropped, closing it).
pub fn pump(connection: PortStream, mut inbound: Streaming<PortInput>) -> BoxStream<PortOutput> {
    let (tx, rx) = mpsc::channel::<Result<PortOutput, Status>>(16);
    let (mut from_pod, mut to_pod) = tokio::io::split(connection);
    tokio::spawn(async move {
        let input = async move {
            while let Ok(Some(message)) = inbound.message().await {
                match message.input {
                    Some(Input::Data(bytes)) => {
                        if to_pod.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Some(Input::Close(_)) => {
                        let _ = to_pod.shutdown().await;
                        // Half-closed: wait for the pod side, or the client to leave.
                        while let Ok(Some(_)) = inbound.message().await {}
                        break;
                    }
                    Some(Input::Start(_)) | None => {}
                }
            }
        };
        let output = async move {
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match from_pod.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let data = buf[..n].to_vec();
                        if tx.send(Ok(PortOutput { data })).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = output => {}
            () = input => {}
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
