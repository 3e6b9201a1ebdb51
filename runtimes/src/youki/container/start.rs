//! StartContainer.

use std::sync::Arc;

use berth_proto::supervisor::{reply, request, Start};

use crate::error::{Error, Result};
use crate::id::ContainerId;

use super::super::backend::{blocking, Backend};
use super::super::client::{unexpected, CALL_TIMEOUT};
use super::super::clock::from_nanos;
use super::super::layout::key;
use super::super::records::ContainerPhase;

impl Backend {
    /// Lets the created container `id` run its process.
    pub async fn start_container(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let k = key(id);
        let _guard = self.lock(&k).await;
        let mut record = self.container(id)?;
        if record.phase != ContainerPhase::Created {
            return Err(Error::FailedPrecondition(format!(
                "StartContainer {id}: the container is still being created"
            )));
        }
        let me = self.clone();
        blocking(move || {
            let started = match me
                .supervisor(&record.pod)
                .call(request::Kind::Start(Start { id: k }), CALL_TIMEOUT)
            {
                Ok(reply::Kind::Started(s)) => s,
                Ok(other) => {
                    return Err(unexpected(other).into_error("container", &record.id.to_string()))
                }
                Err(e) => return Err(e.into_error("container", &record.id.to_string())),
            };
            record.started_at = from_nanos(started.started_at);
            me.save_container(&record)
        })
        .await
    }
}
