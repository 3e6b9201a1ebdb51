//! CNI ADD of a pod.

use std::path::Path;

use super::cache::CacheRecord;
use super::chain::{self, with_cleanup, AddFailure};
use super::exec::Invocation;
use super::ns::{in_namespace, loopback_up, NsKind};
use super::pod::{attachment_from_result, check_key};
use super::{Attachment, Network, PodNetwork, POD_INTERFACE};
use crate::error::{Error, IoContext, Result};

impl Network {
    /// Attaches the pod `key` to the network: brings `lo` up in `netns`, then runs CNI
    /// ADD through the network list. On failure everything that ran is DELeted again
    /// (and if that fails too, the cache keeps the attachment for [`Network::detach`]).
    /// Attaching a pod already attached to the same `netns` returns the cached result;
    /// an unfinished or different earlier attachment of `key` is detached first.
    pub async fn attach(&self, key: &str, netns: &Path, pod: &PodNetwork) -> Result<Attachment> {
        check_key(key)?;
        let args = pod.cni_args(key)?;
        let capability_args = pod.capability_args()?;
        let netns_str = netns.to_str().ok_or_else(|| {
            Error::InvalidSpec(format!("network namespace path {netns:?} is not UTF-8"))
        })?;
        let _serial = self.locks.lock(key).await;

        match self.cache.read(key) {
            Ok(None) => {}
            Ok(Some(old)) if old.netns == netns && old.result.is_some() => {
                let result = old.result.unwrap_or_default();
                return attachment_from_result(&result, &old.ifname);
            }
            // Unfinished, for another namespace, or unreadable: undo it first.
            _ => self.detach_locked(key, Some(netns), pod).await?,
        }
        let list = self
            .ready_list()
            .map_err(|m| Error::FailedPrecondition(format!("the pod network is not ready: {m}")))?;
        in_namespace(NsKind::Net, netns, loopback_up)?
            .io_context(|| format!("bringing lo up in {}", netns.display()))?;

        // Recorded before the first plugin runs, so an ADD cut short is still undone.
        let mut record = CacheRecord {
            network: list.to_value(),
            netns: netns.to_path_buf(),
            ifname: POD_INTERFACE.to_string(),
            args,
            capability_args,
            result: None,
        };
        self.cache.write(key, &record)?;
        let inv = Invocation {
            container_id: key,
            netns: netns_str,
            ifname: POD_INTERFACE,
            args: &record.args,
        };
        let caps = &record.capability_args;
        let result = match chain::add(&self.plugins, &list, &inv, caps).await {
            Ok(result) => result,
            Err(AddFailure { error, mut cleanup }) => {
                if cleanup.is_empty() {
                    cleanup.extend(self.cache.remove(key).err());
                }
                return Err(with_cleanup(error, cleanup));
            }
        };
        let attachment = attachment_from_result(&result, POD_INTERFACE);
        record.result = Some(result);
        let saved = attachment.and_then(|a| self.cache.write(key, &record).map(|()| a));
        match saved {
            Ok(attachment) => Ok(attachment),
            Err(error) => {
                let mut cleanup =
                    chain::del(&self.plugins, &list, &inv, caps, record.result.as_ref()).await;
                if cleanup.is_empty() {
                    cleanup.extend(self.cache.remove(key).err());
                }
                Err(with_cleanup(error, cleanup))
            }
        }
    }
}
