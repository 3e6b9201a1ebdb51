//! ExecSync, UpdateContainerResources and ReopenContainerLog.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::{reply, request, Exec, ReopenLog};

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{ExecOutput, ExecRequest};

use super::super::backend::{blocking, Backend};
use super::super::client::{unexpected, CALL_TIMEOUT};
use super::super::layout::key;

/// How much longer than the exec's own timeout the answer may take (the supervisor
/// kills the command at its deadline and then replies).
const EXEC_SLACK: Duration = Duration::from_secs(30);

/// The wait for an exec without a timeout (it ends when the command does).
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

impl Backend {
    /// Runs `request.cmd` in the running container `id`, as its user, in its working
    /// directory. When the timeout passes, only the command is killed (the container
    /// keeps running) and the answer is `DeadlineExceeded`.
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &ContainerId,
        request: &ExecRequest,
    ) -> Result<ExecOutput> {
        if request.cmd.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "ExecSync in {id}: the command is empty"
            )));
        }
        let record = self.container(id)?;
        let user = record.user.clone().unwrap_or_default();
        let timeout = request.timeout.unwrap_or(Duration::ZERO);
        let exec = Exec {
            id: key(id),
            args: request.cmd.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.supplemental_groups,
            cwd: record.cwd.clone(),
        };
        let patience = if timeout.is_zero() {
            NO_TIMEOUT
        } else {
            timeout + EXEC_SLACK
        };
        let client = self.supervisor(&record.pod);
        let name = id.to_string();
        let result = blocking(
            move || match client.call(request::Kind::Exec(exec), patience) {
                Ok(reply::Kind::Exec(r)) => Ok(r),
                Ok(other) => Err(unexpected(other).into_error("container", &name)),
                Err(e) => Err(e.into_error("container", &name)),
            },
        )
        .await?;
        if result.timed_out {
            return Err(Error::DeadlineExceeded {
                operation: format!("ExecSync {:?} in container {id}", request.cmd),
                after: timeout,
            });
        }
        Ok(ExecOutput {
            stdout: result.stdout,
            stderr: result.stderr,
            exit_code: result.exit_code,
        })
    }

    /// Applies `resources` to the container's cgroup (cgroup files written from here;
    /// nothing forks).
    pub async fn update_resources(
        self: &Arc<Self>,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let record = self.container(id)?;
        if record.cgroup.is_empty() || !self.hierarchy.exists(&record.cgroup) {
            return Err(Error::FailedPrecondition(format!(
                "UpdateContainerResources {id}: the container has no cgroup (not created, or exited)"
            )));
        }
        let (me, resources) = (self.clone(), resources.clone());
        blocking(move || me.hierarchy.update(&record.cgroup, &resources)).await
    }

    /// Has the supervisor reopen the container's log file.
    pub async fn reopen_log(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let record = self.container(id)?;
        let client = self.supervisor(&record.pod);
        let (k, name) = (key(id), id.to_string());
        blocking(move || {
            client
                .call(request::Kind::ReopenLog(ReopenLog { id: k }), CALL_TIMEOUT)
                .map(drop)
                .map_err(|e| e.into_error("container", &name))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fake::Fixture;
    use super::super::super::layout::key;
    use crate::error::Error;
    use crate::types::{ContainerState, ExecRequest};

    fn echo() -> ExecRequest {
        ExecRequest {
            cmd: vec!["echo".into(), "hi".into()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_supervisor_dying_mid_exec_sync_fails_the_precondition() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = f.container(&pod, "app");
        f.backend.start_container(&app).await.unwrap();
        let out = f.backend.exec_sync(&app, &echo()).await.unwrap();
        assert_eq!(out.stdout, b"echo hi");
        f.supervisors.die_on(&key(&pod), "Exec");

        let err = f.backend.exec_sync(&app, &echo()).await.unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        assert!(
            err.to_string().contains("supervisor is not running"),
            "{err}"
        );
        // The same answer again, and the container's exit is reported lost.
        let again = f.backend.exec_sync(&app, &echo()).await;
        assert!(matches!(again, Err(Error::FailedPrecondition(_))));
        let status = f.backend.container_status(&app).await.unwrap();
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(status.exit_code, 255);
        assert!(f.backend.container(&app).is_ok(), "kept until removed");
    }
}
