//! Port forwarding over WebSocket channels (kubelet's `v4.channel.k8s.io` port
//! forward, which crictl does not speak): driven with tungstenite as the client.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::port_forward::{closed_port, web_server};
use crate::{pod_id, Harness};

/// Every message until the server closes, as (channel, payload).
async fn messages(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    base64: bool,
) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(data) if !base64 => out.push((data[0], data[1..].to_vec())),
            Message::Text(text) if base64 => {
                let bytes = text.as_bytes();
                out.push((bytes[0] - b'0', STANDARD.decode(&bytes[1..]).unwrap()));
            }
            Message::Close(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// What came on `channel` after its first message (the port).
fn payload(messages: &[(u8, Vec<u8>)], channel: u8) -> Vec<u8> {
    messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .skip(1)
        .flat_map(|(_, p)| p.clone())
        .collect()
}

async fn connect(
    h: &Harness,
    ports: Vec<u16>,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let url = h.server.get_port_forward_url(&pod_id(), ports).unwrap();
    let mut request = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let tcp = TcpStream::connect(h.server.local_addr()).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    ws
}

#[tokio::test]
async fn channels_carry_the_port_then_the_data() {
    let h = Harness::start().await;
    let port = web_server("page over channels").await;
    let mut ws = connect(&h, vec![port], "v4.channel.k8s.io").await;
    let mut request = vec![0u8];
    request.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    ws.send(Message::Binary(request.into())).await.unwrap();
    let got = messages(&mut ws, false).await;
    // Each channel's first message is the port, little endian.
    let port_bytes = port.to_le_bytes().to_vec();
    assert_eq!(got[0], (0, port_bytes.clone()));
    assert_eq!(got[1], (1, port_bytes));
    let page = String::from_utf8(payload(&got, 0)).unwrap();
    assert!(page.ends_with("page over channels"), "{page}");
    assert!(payload(&got, 1).is_empty(), "no error");
}

#[tokio::test]
async fn base64_channels_and_a_closed_port_error() {
    let h = Harness::start().await;
    let open = web_server("second port").await;
    let closed = closed_port().await;
    let mut ws = connect(&h, vec![closed, open], "v4.base64.channel.k8s.io").await;
    let request = format!("2{}", STANDARD.encode("GET / HTTP/1.0\r\n\r\n"));
    ws.send(Message::text(request)).await.unwrap();
    let got = messages(&mut ws, true).await;
    let error = String::from_utf8(payload(&got, 1)).unwrap();
    assert!(
        error.contains(&format!("error forwarding port {closed} to pod")),
        "{error:?}"
    );
    let page = String::from_utf8(payload(&got, 2)).unwrap();
    assert!(page.ends_with("second port"), "{page:?}");
}
