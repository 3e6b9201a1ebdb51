//! `ExecSync`: a command run in a container, waited for on the delegate.

use berth_proto::delegate::ExecSyncRequest;

use super::wire::id;
use super::DelegateRuntime;
use crate::error::Result;
use crate::id::ContainerId;
use crate::types::{ExecOutput, ExecRequest};

impl DelegateRuntime {
    pub(super) async fn exec_and_wait(
        &self,
        container: &ContainerId,
        request: &ExecRequest,
    ) -> Result<ExecOutput> {
        let message = ExecSyncRequest {
            id: Some(id(container)),
            cmd: request.cmd.clone(),
            timeout_ms: request
                .timeout
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        let answer = self.client()?.exec_sync(message).await;
        let output = answer.map_err(|s| self.error(s))?.into_inner();
        Ok(ExecOutput {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        })
    }
}
