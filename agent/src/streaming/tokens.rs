//! Single-use tokens: each URL handed to a CRI client names one pending request,
//! which the first connection to the URL takes; a reused or expired token finds
//! nothing (HTTP 404), as with kubelet's streaming server.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use runtimes::{ContainerId, Error};
use tokio::time::Instant;

use super::remotecommand::Target;

/// At most this many URLs wait for their use at once (kubelet's limit); a client
/// asking for more gets `Unavailable` and retries.
const MAX_IN_FLIGHT: usize = 1000;

/// Random bytes per token: 256 bits, unguessable although it travels in a URL.
const TOKEN_BYTES: usize = 32;

/// A request waiting for its client to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// An exec or an attach.
    Session(Target),
    /// A port forward.
    PortForward {
        /// The pod sandbox.
        sandbox: ContainerId,
        /// The ports the CRI request named (used by the WebSocket protocol, which
        /// cannot name ports itself); may be empty.
        ports: Vec<u16>,
    },
}

impl Pending {
    /// The first URL path segment of this kind of request.
    pub fn path(&self) -> &'static str {
        match self {
            Pending::Session(Target::Exec { .. }) => "exec",
            Pending::Session(Target::Attach { .. }) => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

/// The pending requests by token.
pub struct Tokens {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Tokens {
    /// Tokens that expire `ttl` after they are made.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, (Instant, Pending)>> {
        // A panic elsewhere cannot leave the map half-updated: every update is one call.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `request` under a new token and returns the token.
    pub fn insert(&self, request: Pending) -> runtimes::Result<String> {
        let mut raw = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut raw).map_err(|e| Error::Backend {
            backend: "streaming".into(),
            message: format!("no randomness for a streaming token: {e}"),
        })?;
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(Error::Unavailable {
                service: "streaming server".into(),
                message: format!(
                    "{MAX_IN_FLIGHT} streaming URLs are waiting for their clients; retry later"
                ),
            });
        }
        entries.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// Takes the request of `token` if it is still valid and of the kind `path`
    /// names. The token is spent either way.
    pub fn consume(&self, token: &str, path: &str) -> Option<Pending> {
        let (expires, request) = self.entries().remove(token)?;
        (Instant::now() < expires && request.path() == path).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> Pending {
        Pending::PortForward {
            sandbox: ContainerId::new("web.default", "sandbox", 0, "node").unwrap(),
            ports: vec![80],
        }
    }

    #[tokio::test]
    async fn a_token_is_used_once() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let token = tokens.insert(forward()).unwrap();
        assert_eq!(token.len(), 43, "256 bits in unpadded base64url");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(tokens.consume(&token, "portforward"), Some(forward()));
        assert_eq!(tokens.consume(&token, "portforward"), None);
        assert_ne!(tokens.insert(forward()).unwrap(), token);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_expires_after_its_ttl() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let early = tokens.insert(forward()).unwrap();
        let late = tokens.insert(forward()).unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(tokens.consume(&early, "portforward").is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tokens.consume(&late, "portforward"), None);
    }

    #[tokio::test]
    async fn a_token_for_another_kind_of_request_is_spent_and_refused() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let token = tokens.insert(forward()).unwrap();
        assert_eq!(tokens.consume(&token, "exec"), None);
        assert_eq!(tokens.consume(&token, "portforward"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_waiting_urls_are_refused_until_some_expire() {
        let tokens = Tokens::new(Duration::from_secs(60));
        for _ in 0..MAX_IN_FLIGHT {
            tokens.insert(forward()).unwrap();
        }
        let err = tokens.insert(forward()).unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        tokio::time::advance(Duration::from_secs(61)).await;
        tokens.insert(forward()).unwrap();
        assert_eq!(tokens.entries().len(), 1, "expired entries were dropped");
    }
}
