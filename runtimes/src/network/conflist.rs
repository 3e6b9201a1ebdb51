//! Finding and reading the CNI network config, like libcni: files ending in
//! `.conflist`, `.conf` or `.json` in the config dir, in lexical order, the first valid
//! one wins; a single-plugin `.conf`/`.json` is wrapped as a list of one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{IoContext, Result};

/// A network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkList {
    /// The network's name (plugins key IPAM state and iptables comments on it).
    pub name: String,
    /// The CNI spec version the plugins are spoken to in.
    pub cni_version: String,
    /// The plugin objects, in ADD order.
    pub plugins: Vec<Map<String, Value>>,
}

impl NetworkList {
    /// Validates a conflist object.
    pub(crate) fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let obj = v.as_object().ok_or("not a JSON object")?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or("no \"name\"")?;
        check_network_name(name)?;
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or("no \"cniVersion\"")?;
        let list = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or("no \"plugins\" list")?;
        if list.is_empty() {
            return Err("the \"plugins\" list is empty".into());
        }
        let mut plugins = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let p = p
                .as_object()
                .ok_or_else(|| format!("plugin {i} is not an object"))?;
            let ty = p
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("plugin {i} has no \"type\""))?;
            check_plugin_type(ty).map_err(|e| format!("plugin {i}: {e}"))?;
            plugins.push(p.clone());
        }
        Ok(NetworkList {
            name: name.to_string(),
            cni_version: cni_version.to_string(),
            plugins,
        })
    }

    /// Wraps a single-plugin config (`.conf`) as a list, as libcni's ConfListFromConf.
    fn from_single(v: &Value) -> std::result::Result<Self, String> {
        let obj = v.as_object().ok_or("not a JSON object")?;
        if !obj.contains_key("type") {
            return Err(
                "no plugin \"type\" (a list of plugins belongs in a .conflist file)".into(),
            );
        }
        NetworkList::from_value(&json!({
            "name": obj.get("name").cloned().unwrap_or(Value::Null),
            "cniVersion": obj.get("cniVersion").cloned().unwrap_or(Value::Null),
            "plugins": [v],
        }))
    }

    /// The list as a conflist object (what the result cache keeps for DEL).
    pub(crate) fn to_value(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": self.plugins,
        })
    }

    /// Every plugin binary the list needs, in order, without repeats: each plugin's
    /// `type` and the `ipam.type` it delegates to.
    pub(crate) fn binaries(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.plugins {
            let ipam = p.get("ipam").and_then(|i| i.get("type"));
            for ty in [p.get("type"), ipam].into_iter().flatten() {
                if let Some(ty) = ty.as_str() {
                    if !out.contains(&ty) {
                        out.push(ty);
                    }
                }
            }
        }
        out
    }
}

/// Network names end up in file paths (host-local's `<dataDir>/<name>`) and iptables
/// comments; the plugins accept the same set.
fn check_network_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} must start with a letter or digit and hold only letters, \
             digits, '_', '.' and '-'"
        ))
    }
}

/// A plugin type names a file inside a plugin dir, never a path.
pub(crate) fn check_plugin_type(ty: &str) -> std::result::Result<(), String> {
    if ty.is_empty() || ty == "." || ty == ".." || ty.contains('/') || ty.contains('\0') {
        Err(format!("plugin type {ty:?} is not a plain file name"))
    } else {
        Ok(())
    }
}

/// Config files in `dir` in the order libcni tries them.
pub(crate) fn config_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "conflist" | "conf" | "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one config file.
pub(crate) fn load_file(path: &Path) -> std::result::Result<NetworkList, String> {
    let text = fs::read(path).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    if path.extension().is_some_and(|e| e == "conflist") {
        NetworkList::from_value(&v)
    } else {
        NetworkList::from_single(&v)
    }
}

/// The first valid network config in `dir`, with the file it came from; otherwise a
/// message saying what is missing or wrong with each file tried.
pub(crate) fn load(dir: &Path) -> std::result::Result<(NetworkList, PathBuf), String> {
    let files = config_files(dir)
        .map_err(|e| format!("cannot read the CNI config dir {}: {e}", dir.display()))?;
    let mut problems = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(list) => return Ok((list, f)),
            Err(e) => problems.push(format!("{}: {e}", f.display())),
        }
    }
    if problems.is_empty() {
        Err(format!("no CNI network config in {}", dir.display()))
    } else {
        Err(format!(
            "no valid CNI network config in {} ({})",
            dir.display(),
            problems.join("; ")
        ))
    }
}

/// Writes `conflist` as `dir/file` when `dir` holds no config file at all (a directory
/// with only broken configs is the operator's to fix, not ours to shadow). Returns
/// whether it wrote.
pub(crate) fn write_if_none(dir: &Path, file: &str, conflist: &Value) -> Result<bool> {
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    if !config_files(dir)
        .io_context(|| format!("reading {}", dir.display()))?
        .is_empty()
    {
        return Ok(false);
    }
    let mut text = serde_json::to_vec_pretty(conflist).unwrap_or_default();
    text.push(b'\n');
    write_atomically(dir, file, &text)?;
    Ok(true)
}

/// Writes `text` as `dir/file` aside and renames it, so a reader never sees half a
/// file; the temporary name's extension is not one the loader picks up.
pub(crate) fn write_atomically(dir: &Path, file: &str, text: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let target = dir.join(file);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    };
    write().io_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("writing {}", target.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"net-a","plugins":[
        {"type":"bridge","ipam":{"type":"host-local"}},{"type":"portmap"},{"type":"bridge"}]}"#;

    #[test]
    fn first_valid_file_in_lexical_order_wins() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "30-z.conflist", LIST);
        write(d.path(), "20-b.conflist", &LIST.replace("net-a", "net-b"));
        write(d.path(), "10-broken.conflist", "{ not json");
        write(
            d.path(),
            "05-ignored.txt",
            &LIST.replace("net-a", "net-txt"),
        );
        let (list, file) = load(d.path()).unwrap();
        assert_eq!(list.name, "net-b");
        assert_eq!(file, d.path().join("20-b.conflist"));
    }

    #[test]
    fn single_plugin_conf_is_wrapped_as_a_list() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "10-one.conf",
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"b1"}"#,
        );
        let (list, _) = load(d.path()).unwrap();
        assert_eq!(list.name, "one");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["bridge"], "b1");
        assert_eq!(
            list.to_value(),
            json!({"cniVersion":"0.4.0","name":"one","plugins":[
                {"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"b1"}]})
        );
    }

    #[test]
    fn a_conflist_in_a_conf_file_is_invalid_like_libcni() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "10-list.conf", LIST);
        write(
            d.path(),
            "20-good.json",
            r#"{"cniVersion":"1.0.0","name":"j","type":"ptp"}"#,
        );
        let (list, _) = load(d.path()).unwrap();
        assert_eq!(list.name, "j");
    }

    #[test]
    fn no_config_says_so_and_invalid_ones_say_why() {
        let d = tempfile::tempdir().unwrap();
        let err = load(d.path()).unwrap_err();
        assert!(err.starts_with("no CNI network config in"), "{err}");
        write(
            d.path(),
            "a.conflist",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
        );
        write(
            d.path(),
            "b.conflist",
            r#"{"cniVersion":"1.0.0","name":"../up","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            d.path(),
            "c.conflist",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../bin/sh"}]}"#,
        );
        write(
            d.path(),
            "d.conflist",
            r#"{"name":"x","plugins":[{"type":"bridge"}]}"#,
        );
        write(d.path(), "e.conf", r#"{"cniVersion":"1.0.0","name":"x"}"#);
        let err = load(d.path()).unwrap_err();
        assert!(err.starts_with("no valid CNI network config"), "{err}");
        for part in [
            "a.conflist: the \"plugins\" list is empty",
            "b.conflist: network name \"../up\"",
            "c.conflist: plugin 0: plugin type \"../bin/sh\"",
            "d.conflist: no \"cniVersion\"",
            "e.conf: no plugin \"type\"",
        ] {
            assert!(err.contains(part), "{part} missing in {err}");
        }
        let err = load(&d.path().join("missing")).unwrap_err();
        assert!(err.starts_with("cannot read the CNI config dir"), "{err}");
    }

    #[test]
    fn binaries_include_ipam_once_each() {
        let list = NetworkList::from_value(&serde_json::from_str(LIST).unwrap()).unwrap();
        assert_eq!(list.binaries(), vec!["bridge", "host-local", "portmap"]);
    }

    #[test]
    fn default_is_written_only_into_a_dir_without_configs() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("net.d");
        let v = json!({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]});
        assert!(write_if_none(&dir, "10-n.conflist", &v).unwrap());
        let (list, file) = load(&dir).unwrap();
        assert_eq!((list.name.as_str(), file), ("n", dir.join("10-n.conflist")));
        assert!(!write_if_none(&dir, "10-other.conflist", &v).unwrap());
        assert_eq!(config_files(&dir).unwrap().len(), 1);

        let d2 = tempfile::tempdir().unwrap();
        write(d2.path(), "00-broken.conf", "{");
        assert!(!write_if_none(d2.path(), "10-n.conflist", &v).unwrap());
        assert_eq!(
            fs::read_dir(d2.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
