//! `PortForward`: one TCP connection into a pod on the delegate, carried by one
//! bidirectional gRPC stream and handed to the streaming server as a byte stream.

use berth_proto::delegate::port_input::Input;
use berth_proto::delegate::{PortInput, PortStart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::wire::id;
use super::DelegateRuntime;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::PortStream;

/// Bytes buffered between the gRPC stream and the streaming server.
const PIPE: usize = 64 << 10;

impl DelegateRuntime {
    pub(super) async fn forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        let (input, inbound) = mpsc::channel::<PortInput>(16);
        let start = PortStart {
            sandbox: Some(id(sandbox)),
            port: port.into(),
        };
        input
            .send(PortInput {
                input: Some(Input::Start(start)),
            })
            .await
            .map_err(|_| Error::backend("delegate", "port-forward input closed"))?;
        let answer = self
            .client()?
            .port_forward(ReceiverStream::new(inbound))
            .await;
        let mut outbound = answer.map_err(|s| self.error(s))?.into_inner();
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let (mut from_client, mut to_client) = tokio::io::split(theirs);
        // Client → pod; EOF is a half-close.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 << 10];
            loop {
                let message = match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => Input::Close(true),
                    Ok(n) => Input::Data(buf[..n].to_vec()),
                };
                let last = matches!(message, Input::Close(_));
                if input
                    .send(PortInput {
                        input: Some(message),
                    })
                    .await
                    .is_err()
                    || last
                {
                    // Keep the call open until the pod side is done.
                    input.closed().await;
                    return;
                }
            }
        });
        // Pod → client; the end of the call is EOF.
        tokio::spawn(async move {
            while let Ok(Some(message)) = outbound.message().await {
                if to_client.write_all(&message.data).await.is_err() {
                    return;
                }
            }
            let _ = to_client.shutdown().await;
        });
        Ok(Box::new(ours))
    }
}
