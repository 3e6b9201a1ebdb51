//! What this crate reports to the agent's metrics: CNI plugin run times and what
//! happened to the pods' supervisors. The agent installs an [`Observer`] at start-up
//! ([`install`]); until one is installed nothing is reported, and this crate keeps no
//! metrics of its own (nor depends on the agent).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What happened to a pod's supervisor (youki backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SupervisorEvent {
    /// berth started one for a new pod.
    Started,
    /// berth (restarted) found the pod's supervisor alive and serves its pod again.
    Reconnected,
    /// The supervisor was found dead, while its pod ran or when berth restarted: the
    /// pod is not ready for good (a supervisor is never started again for a pod).
    Lost,
}

impl SupervisorEvent {
    /// The event's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SupervisorEvent::Started => "started",
            SupervisorEvent::Reconnected => "reconnected",
            SupervisorEvent::Lost => "lost",
        }
    }
}

/// Takes what this crate reports.
pub trait Observer: Send + Sync {
    /// A CNI plugin of type `plugin` ran `operation` (`ADD`, `DEL`) for the network
    /// list `network`, took `took` and succeeded or not.
    fn cni_operation(&self, operation: &str, network: &str, plugin: &str, took: Duration, ok: bool);
    /// A pod's supervisor `event`.
    fn supervisor(&self, event: SupervisorEvent);
}

static OBSERVER: OnceLock<Arc<dyn Observer>> = OnceLock::new();

/// Installs the process's observer; false when one was installed already (it stays).
pub fn install(observer: Arc<dyn Observer>) -> bool {
    OBSERVER.set(observer).is_ok()
}

fn observer() -> Option<&'static dyn Observer> {
    OBSERVER.get().map(|o| o.as_ref())
}

/// Reports a supervisor event.
pub(crate) fn supervisor(event: SupervisorEvent) {
    if let Some(o) = observer() {
        o.supervisor(event);
    }
}

/// Times one CNI plugin run from its creation; reported when dropped, as failed
/// unless [`CniTimer::succeeded`] was called (an early return is a failure).
pub(crate) struct CniTimer<'a> {
    operation: &'static str,
    network: &'a str,
    plugin: &'a str,
    started: Instant,
    ok: bool,
}

impl<'a> CniTimer<'a> {
    pub(crate) fn start(operation: &'static str, network: &'a str, plugin: &'a str) -> Self {
        CniTimer {
            operation,
            network,
            plugin,
            started: Instant::now(),
            ok: false,
        }
    }

    /// The run succeeded.
    pub(crate) fn succeeded(&mut self) {
        self.ok = true;
    }
}

impl Drop for CniTimer<'_> {
    fn drop(&mut self) {
        if let Some(o) = observer() {
            o.cni_operation(
                self.operation,
                self.network,
                self.plugin,
                self.started.elapsed(),
                self.ok,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what it is told (the process has one observer: only this test
    /// installs it, and it looks only at its own network).
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, String, String, bool)>>);

    impl Observer for Recorded {
        fn cni_operation(&self, op: &str, network: &str, plugin: &str, _: Duration, ok: bool) {
            let run = (op.into(), network.into(), plugin.into(), ok);
            self.0.lock().unwrap().push(run);
        }
        fn supervisor(&self, _: SupervisorEvent) {}
    }

    #[test]
    fn a_cni_run_is_reported_once_and_failed_unless_it_succeeded() {
        let recorded = Arc::new(Recorded::default());
        assert!(install(recorded.clone()));
        assert!(!install(Arc::new(Recorded::default())), "the first stays");
        drop(CniTimer::start("ADD", "metered-net", "bridge"));
        let mut ok = CniTimer::start("DEL", "metered-net", "portmap");
        ok.succeeded();
        drop(ok);
        let runs: Vec<_> = recorded
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.1 == "metered-net")
            .cloned()
            .collect();
        assert_eq!(
            runs,
            [
                ("ADD".into(), "metered-net".into(), "bridge".into(), false),
                ("DEL".into(), "metered-net".into(), "portmap".into(), true),
            ]
        );
    }
}
