//! The attachment cache: per pod key, the network config, parameters and final result of
//! its ADD, kept under the run dir so DEL runs with the same inputs (the CNI spec asks
//! for that, and portmap's DEL needs the port mappings). It is written before the first
//! plugin runs, so an ADD cut short (agent killed, future dropped) is still undone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CniError;
use crate::error::{Error, IoContext, Result};

/// One pod's attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheRecord {
    /// The conflist the ADD ran with.
    pub network: Value,
    /// CNI_NETNS of the ADD.
    pub netns: PathBuf,
    /// CNI_IFNAME of the ADD.
    pub ifname: String,
    /// CNI_ARGS of the ADD.
    pub args: String,
    /// The capability arguments (`portMappings`) of the ADD.
    pub capability_args: Map<String, Value>,
    /// The final ADD result; `None` while the ADD runs (or if it was cut short).
    pub result: Option<Value>,
}

/// The cache directory.
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created when missing).
    pub(crate) fn open(dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
        Ok(Cache { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The record of `key`, if any.
    pub(crate) fn read(&self, key: &str) -> Result<Option<CacheRecord>> {
        let path = self.path(key);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map(Some).map_err(|source| {
            CniError::CacheUnreadable {
                path: path.display().to_string(),
                source,
            }
            .into()
        })
    }

    /// Replaces the record of `key` (written aside and renamed: never half a record).
    pub(crate) fn write(&self, key: &str, record: &CacheRecord) -> Result<()> {
        let path = self.path(key);
        let tmp = self.dir.join(format!(".{key}.json.tmp"));
        let text = serde_json::to_vec(record)
            .map_err(|e| Error::internal("cni", format!("encoding {}", path.display()), e))?;
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(format!("writing {}", path.display()), e)
            })
    }

    /// Drops the record of `key`; a missing one is fine.
    pub(crate) fn remove(&self, key: &str) -> Result<()> {
        remove_file_if_present(&self.path(key))
    }
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_and_remove_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path().join("cache")).unwrap();
        assert_eq!(cache.read("p1").unwrap(), None);
        let mut rec = CacheRecord {
            network: json!({"name": "n"}),
            netns: "/run/b/netns/p1".into(),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1".into(),
            capability_args: Map::new(),
            result: None,
        };
        cache.write("p1", &rec).unwrap();
        assert_eq!(cache.read("p1").unwrap().as_ref(), Some(&rec));
        rec.result = Some(json!({"ips": []}));
        cache.write("p1", &rec).unwrap();
        assert_eq!(cache.read("p1").unwrap(), Some(rec));
        assert_eq!(fs::read_dir(d.path().join("cache")).unwrap().count(), 1);
        cache.remove("p1").unwrap();
        cache.remove("p1").unwrap();
        assert_eq!(cache.read("p1").unwrap(), None);
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path().to_path_buf()).unwrap();
        fs::write(d.path().join("p.json"), "{").unwrap();
        let err = cache.read("p").unwrap_err().to_string();
        assert!(err.contains("p.json"), "{err}");
    }
}
