//! CNI DEL of a pod.

use std::path::Path;

use super::cache::CacheRecord;
use super::chain;
use super::conflist::NetworkList;
use super::exec::Invocation;
use super::ns::is_ns_mount;
use super::pod::check_key;
use super::{CniError, Network, NsKind, PodNetwork, POD_INTERFACE};
use crate::error::{Error, Result};

impl Network {
    /// Detaches the pod `key`: CNI DEL through the list in reverse, with the config,
    /// parameters and result its ADD cached. Every plugin is tried even after one fails;
    /// the failures are returned together and the cache is kept so a later detach can
    /// finish. A pod never attached (no cache: the record is written before any plugin
    /// runs) succeeds without running anything. `netns` and `pod` are used only when the
    /// cache is unreadable, with the current network config.
    pub async fn detach(&self, key: &str, netns: Option<&Path>, pod: &PodNetwork) -> Result<()> {
        check_key(key)?;
        let _serial = self.locks.lock(key).await;
        self.detach_locked(key, netns, pod).await
    }

    /// [`Network::detach`] with the key's lock held.
    pub(super) async fn detach_locked(
        &self,
        key: &str,
        netns: Option<&Path>,
        pod: &PodNetwork,
    ) -> Result<()> {
        let cached = match self.cache.read(key) {
            Ok(None) => return Ok(()),
            Ok(Some(record)) => NetworkList::from_value(&record.network)
                .map(|list| (list, record))
                .map_err(|e| Error::from(CniError::CachedConfig(e))),
            Err(e) => Err(e),
        };
        let (list, record) = match cached {
            Ok(found) => found,
            Err(unreadable) => {
                self.current_record(key, netns, pod)
                    .map_err(|current| CniError::CannotDetach {
                        key: key.to_string(),
                        unreadable: chain::message(&unreadable),
                        current,
                    })?
            }
        };
        // The plugins treat a missing namespace as already cleaned up, but fail on a path
        // that is not a namespace (a pin whose mount is gone): pass "" for that.
        let netns = match is_ns_mount(&record.netns) {
            Ok(true) => record.netns.to_str().unwrap_or(""),
            _ => "",
        };
        let inv = Invocation {
            container_id: key,
            netns,
            ifname: &record.ifname,
            args: &record.args,
        };
        let errors = chain::del(
            &self.plugins,
            &list,
            &inv,
            &record.capability_args,
            record.result.as_ref(),
        )
        .await;
        if errors.is_empty() {
            return self.cache.remove(key);
        }
        Error::combine(format!("detaching pod {key}"), errors)
    }

    /// A DEL record from what is known now, for a pod whose cache is unreadable.
    fn current_record(
        &self,
        key: &str,
        netns: Option<&Path>,
        pod: &PodNetwork,
    ) -> std::result::Result<(NetworkList, CacheRecord), String> {
        let list = self.ready_list()?;
        let record = CacheRecord {
            network: list.to_value(),
            netns: netns.map_or_else(|| self.pin_path(NsKind::Net, key), Path::to_path_buf),
            ifname: POD_INTERFACE.to_string(),
            args: pod.cni_args(key).map_err(|e| e.to_string())?,
            capability_args: pod.capability_args().map_err(|e| e.to_string())?,
            result: None,
        };
        Ok((list, record))
    }
}
