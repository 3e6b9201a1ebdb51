//! StopContainer: the stop signal, then SIGKILL to every process of the container once
//! the timeout passes (at once for a timeout of 0). Stopping a stopped or missing
//! container succeeds.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::{
    container_state::Status, error::Code, reply, request, Kill, State, Wait,
};

use crate::error::Result;
use crate::id::ContainerId;

use super::super::backend::{blocking, Backend};
use super::super::client::{CallError, CALL_TIMEOUT};
use super::super::layout::key;
use super::super::records::ContainerRecord;

/// How long to wait for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(30);

impl Backend {
    /// Stops the container `id`, escalating to SIGKILL after `timeout`.
    pub async fn stop_container(
        self: &Arc<Self>,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<()> {
        let _guard = self.lock(&key(id)).await;
        let Some(record) = self.index().containers.get(id).cloned() else {
            return Ok(());
        };
        let me = self.clone();
        blocking(move || me.stop_blocking(&record, timeout)).await
    }

    /// Kills the container at once (StopPodSandbox; the pod's lock is held).
    pub async fn kill_container(self: &Arc<Self>, record: &ContainerRecord) -> Result<()> {
        let _guard = self.lock(&key(&record.id)).await;
        let (me, record) = (self.clone(), record.clone());
        blocking(move || me.stop_blocking(&record, Duration::ZERO)).await
    }

    fn stop_blocking(&self, record: &ContainerRecord, timeout: Duration) -> Result<()> {
        let client = self.supervisor(&record.pod);
        let k = key(&record.id);
        let name = record.id.to_string();
        let fail = |e: CallError| e.into_error("container", &name);
        // A container that never started has no process to ask politely: its init
        // waits for the start signal.
        let mut timeout = timeout;
        match client.call(request::Kind::State(State { id: k.clone() }), CALL_TIMEOUT) {
            Ok(reply::Kind::State(s)) if s.status == Status::Exited as i32 => return Ok(()),
            Ok(reply::Kind::State(s)) if s.status == Status::Created as i32 => {
                timeout = Duration::ZERO;
            }
            Ok(_) => {}
            // No supervisor: whatever is left of the container has nobody to reap it.
            Err(CallError::Gone) | Err(CallError::Refused(Code::NotFound, _)) => {
                return self.bury_container(record);
            }
            Err(e) => return Err(fail(e)),
        }
        let kill = |signal: i32, all: bool| {
            client
                .call(
                    request::Kind::Kill(Kill {
                        id: k.clone(),
                        signal,
                        all,
                    }),
                    CALL_TIMEOUT,
                )
                .map(drop)
        };
        let wait =
            |patience: Duration| client.call(request::Kind::Wait(Wait { id: k.clone() }), patience);
        if !timeout.is_zero() {
            kill(record.stop_signal, false).map_err(fail)?;
            match wait(timeout) {
                Ok(_) => return Ok(()),
                Err(CallError::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        kill(libc::SIGKILL, true).map_err(fail)?;
        wait(KILL_WAIT).map(drop).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::super::fake::Fixture;
    use super::super::super::layout::key;
    use crate::error::Error;
    use crate::types::{ContainerState, SandboxState};

    #[tokio::test]
    async fn a_stopped_container_is_exited_with_its_signal() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = f.container(&pod, "app");
        f.backend.start_container(&app).await.unwrap();

        f.backend
            .stop_container(&app, Duration::from_secs(10))
            .await
            .unwrap();
        let status = f.backend.container_status(&app).await.unwrap();
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(status.exit_code, 128 + libc::SIGTERM);
        assert_eq!(
            f.supervisors.calls_to(&key(&pod)),
            ["Start", "State", "Kill", "Wait", "State"]
        );
    }

    #[tokio::test]
    async fn a_supervisor_dying_mid_stop_fails_the_precondition_and_a_retry_buries() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = f.container(&pod, "app");
        f.backend.start_container(&app).await.unwrap();
        f.supervisors.die_on(&key(&pod), "Kill");

        let err = f
            .backend
            .stop_container(&app, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        assert!(
            err.to_string().contains("supervisor is not running"),
            "{err}"
        );
        // Consistent: the container is still there, its exit lost (it had nobody to
        // report it), its rootfs in place until it is removed; the pod not ready.
        let status = f.backend.container_status(&app).await.unwrap();
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!((status.exit_code, status.reason.as_str()), (255, "Unknown"));
        assert!(f.backend.layout.rootfs(&key(&app)).is_dir());
        let pod_status = f.backend.pod_status(&pod).await.unwrap();
        assert_eq!(pod_status.state, SandboxState::NotReady);
        // kubelet's retry succeeds, and removing leaves nothing.
        f.backend
            .stop_container(&app, Duration::from_secs(10))
            .await
            .unwrap();
        f.backend.remove_container(&app).await.unwrap();
        assert!(f.backend.container(&app).is_err());
        drop(f.backend.lock(&key(&app)).await); // the background teardown's end
        assert!(f.files().iter().all(|p| !p.contains(&key(&app))));
    }
}
