//! `ready`: whether the delegate answers its handshake, without making every caller
//! (`Status`, which kubelet polls, and each new pod for the delegate) wait out the
//! handshake timeout of a delegate that does not answer (a TCP peer gone silent).
//!
//! One probe runs at a time, in the background. A caller starts one unless one is
//! running, and waits for it at most [`PROBE_WAIT`]: a delegate that answers (or
//! refuses the connection) is reported as it is now; one that is slow to answer is
//! reported as the last probe found it, until the probe in flight ends (within the
//! handshake timeout). Only the first call, with nothing known yet, waits for the
//! probe's end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::delegate::HandshakeRequest;
use tokio::sync::watch;

use super::{connect, DelegateRuntime, PROTOCOL};
use crate::error::{Error, Result};
use crate::image::share_error;
use crate::types::Features;

/// How long `ready` waits for the delegate's handshake.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for the probe in flight before it answers with the last
/// probe's finding.
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// The delegate's readiness as the probes found it.
pub(super) struct Readiness {
    /// The last probe's answer; `None` before the first ended.
    last: Arc<watch::Sender<Option<Arc<Result<()>>>>>,
    /// True while a probe runs.
    probing: Arc<AtomicBool>,
    /// [`READY_TIMEOUT`] and [`PROBE_WAIT`] (shorter in tests).
    timeout: Duration,
    wait: Duration,
}

impl Readiness {
    pub(super) fn new() -> Self {
        Self::with_timeouts(READY_TIMEOUT, PROBE_WAIT)
    }

    fn with_timeouts(timeout: Duration, wait: Duration) -> Self {
        Self {
            last: Arc::new(watch::channel(None).0),
            probing: Arc::new(AtomicBool::new(false)),
            timeout,
            wait,
        }
    }
}

impl DelegateRuntime {
    /// Reachable and speaking our protocol, as the latest probe says (see the module
    /// documentation).
    pub(super) async fn probe_ready(&self) -> Result<()> {
        let readiness = &self.readiness;
        let mut answers = readiness.last.subscribe();
        let last = answers.borrow_and_update().clone();
        self.start_probe();
        let wait = match &last {
            Some(_) => readiness.wait,
            // Nothing known yet: this probe's answer is the only one there is.
            None => readiness.timeout + readiness.wait,
        };
        if let Ok(Ok(())) = tokio::time::timeout(wait, answers.changed()).await {
            if let Some(answer) = answers.borrow().as_ref() {
                return copy(answer);
            }
        }
        match last {
            Some(answer) => copy(&answer),
            None => Err(Error::Unavailable {
                service: self.service(),
                message: format!("{NO_HANDSHAKE} {:?}", readiness.timeout),
            }),
        }
    }
}

impl DelegateRuntime {
    /// Starts a probe in the background unless one runs.
    fn start_probe(&self) {
        let readiness = &self.readiness;
        if readiness.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let probe = handshake(
            self.ungated_client(),
            self.config.node.clone(),
            self.service(),
            self.features.clone(),
            readiness.timeout,
        );
        let (sender, probing) = (readiness.last.clone(), readiness.probing.clone());
        tokio::spawn(async move {
            let answer = probe.await;
            // Cleared first: a caller that comes in between starts a probe of its own
            // rather than wait for an answer that was already sent.
            probing.store(false, Ordering::Release);
            sender.send_replace(Some(Arc::new(answer)));
        });
    }

    /// When the last probe found the delegate silent (it took the connection, or
    /// none was refused, but no handshake came within the timeout), that finding:
    /// a call would only wait out the connect timeout as well. A probe starts, so the
    /// delegate's return is noticed. `None` otherwise: a refused connection fails
    /// fast by itself, and an answering delegate is called.
    pub(super) fn silent(&self) -> Option<Error> {
        let last = self.readiness.last.borrow().clone()?;
        match last.as_ref() {
            Err(e @ Error::Unavailable { message, .. }) if message.starts_with(NO_HANDSHAKE) => {
                self.start_probe();
                Some(share_error(e))
            }
            _ => None,
        }
    }
}

/// How a probe that timed out says so.
const NO_HANDSHAKE: &str = "no handshake within";

/// A caller's own copy of a probe's answer.
fn copy(answer: &Result<()>) -> Result<()> {
    answer.as_ref().map_err(share_error).copied()
}

/// One handshake with the delegate, bounded by `timeout`; notes the features it
/// reports.
async fn handshake(
    mut client: super::Client,
    node: String,
    service: String,
    features: Arc<Mutex<Features>>,
    timeout: Duration,
) -> Result<()> {
    let request = HandshakeRequest {
        protocol: PROTOCOL,
        node,
    };
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(timeout, client.handshake(request))
        .await
        .map_err(|_| Error::Unavailable {
            service: service.clone(),
            message: format!("{NO_HANDSHAKE} {timeout:?}"),
        })?
        .map_err(|s| {
            // The dial timed out (its TLS handshake unanswered), or the call was slow
            // to fail: the peer is silent, as when no handshake came at all. Both
            // tests count: the probe may have joined a dial another call began, and
            // then fails soon after it started.
            let silent = connect::timed_out(&s) || started.elapsed() >= timeout / 2;
            match connect::from_status(service.clone(), s) {
                Error::Unavailable { service, message } if silent => Error::Unavailable {
                    service,
                    message: format!("{NO_HANDSHAKE} {timeout:?}: {message}"),
                },
                e => e,
            }
        })?
        .into_inner();
    if let Some(f) = answer.features {
        *features.lock().unwrap_or_else(|p| p.into_inner()) = Features {
            recursive_read_only_mounts: f.recursive_read_only_mounts,
            user_namespaces: f.user_namespaces,
            supplemental_groups_policy: f.supplemental_groups_policy,
        };
    }
    if answer.protocol != PROTOCOL {
        return Err(Error::FailedPrecondition(format!(
            "{service} speaks delegate protocol {}, this node {PROTOCOL}",
            answer.protocol
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::delegate::DelegateConfig;
    use crate::runtime::Runtime;

    /// A delegate that takes connections and never answers (a peer gone silent)
    /// costs the handshake timeout once; later calls answer within the probe wait
    /// with what the last probe found, while the next probe runs.
    #[tokio::test]
    async fn a_silent_delegate_does_not_hold_every_call_for_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        // Bound and listening, never accepting: connections sit in the backlog.
        let _silent = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let address = format!("unix://{}", path.display());
        let mut delegate = DelegateRuntime::open(DelegateConfig {
            address: address.clone(),
            os: vec!["linux".into()],
            tls: None,
            node: "n1".into(),
        })
        .unwrap();
        let (timeout, wait) = (Duration::from_millis(1500), Duration::from_millis(100));
        delegate.readiness = Readiness::with_timeouts(timeout, wait);

        let started = Instant::now();
        let err = delegate.probe_ready().await.unwrap_err();
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains(&address), "{err}");
        for _ in 0..3 {
            let started = Instant::now();
            let err = delegate.probe_ready().await.unwrap_err();
            assert!(started.elapsed() < timeout / 2, "{:?}", started.elapsed());
            assert!(err.to_string().contains("no handshake"), "{err}");
        }
        // Other calls fail as fast, naming the delegate, instead of each waiting out
        // the connect timeout.
        let started = Instant::now();
        let err = delegate.image_fs_info().await.unwrap_err();
        assert!(started.elapsed() < timeout / 2, "{:?}", started.elapsed());
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains(&address), "{err}");
    }
}
