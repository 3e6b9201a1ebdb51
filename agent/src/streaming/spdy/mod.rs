//! SPDY/3.1, the multiplexing protocol kubelet's streaming clients (client-go's
//! remotecommand and portforward, crictl, kubectl through the API server) speak after
//! an HTTP `Upgrade: SPDY/3.1`. No maintained Rust crate implements it, so this is
//! the subset moby/spdystream uses: streams opened by the client with SYN_STREAM
//! and accepted with SYN_REPLY, DATA with FIN half-closes, RST_STREAM, PING echo,
//! GOAWAY. spdystream implements no flow control (it never sends WINDOW_UPDATE and
//! ignores windows), so neither does this: backpressure is TCP's.

mod conn;
mod dictionary;
mod frame;
#[cfg(test)]
mod frame_tests;
mod headers;
#[cfg(test)]
pub(crate) mod vectors_tests;

pub use conn::{serve, Handle, Incoming};
pub use frame::rst;
#[cfg(test)]
pub use frame::{Frame, FrameDecoder, FLAG_FIN};

/// A protocol or compression error of the peer: the connection cannot go on. Read
/// and write failures stay the `io::Error`s they are.
pub(crate) fn protocol_error(message: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("SPDY: {message}"))
}
