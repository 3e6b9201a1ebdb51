//! Running a whole network list (CNI spec 1.0, section 3): ADD through the plugins in
//! order, each getting the previous result as `prevResult`; DEL in reverse order with
//! the final ADD result, every plugin tried even after one failed.

use serde_json::{Map, Value};

use super::conflist::NetworkList;
use super::exec::{CniCommand, Invocation, Plugins};
use super::CniError;
use crate::error::{Error, Result};

/// The config one plugin gets on stdin: its object from the list plus the list's
/// `cniVersion` and `name`, `prevResult` when there is one, and `runtimeConfig` holding
/// only the capabilities the plugin declares; `capabilities` itself is removed.
pub(crate) fn plugin_config(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    conf.insert("name".into(), Value::String(list.name.clone()));
    let runtime_config: Map<String, Value> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(cap, _)| Some((cap.clone(), capability_args.get(cap)?.clone())))
        .collect();
    conf.remove("capabilities");
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    Value::Object(conf)
}

/// A failed ADD: the plugin's error, and any failures of undoing the plugins before it.
pub(crate) struct AddFailure {
    pub error: Error,
    pub cleanup: Vec<Error>,
}

/// ADD through `list`. On a failure, the plugins that ran (the failing one included: it
/// may have done half its work) are DELeted in reverse; the ones after it never ran.
pub(crate) async fn add(
    plugins: &Plugins,
    list: &NetworkList,
    inv: &Invocation<'_>,
    capability_args: &Map<String, Value>,
) -> std::result::Result<Value, AddFailure> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let conf = plugin_config(list, plugin, prev.as_ref(), capability_args);
        let (outcome, started) = match find(plugins, plugin) {
            Ok(bin) => (plugins.run(CniCommand::Add, &bin, &conf, inv).await, i + 1),
            // Never started: only the plugins before it have anything to undo.
            Err(e) => (Err(e), i),
        };
        match outcome {
            Ok(Some(result)) => prev = Some(result),
            // A plugin that prints nothing passes the previous result on unchanged.
            Ok(None) => {}
            Err(error) => {
                let ran = NetworkList {
                    plugins: list.plugins[..started].to_vec(),
                    ..list.clone()
                };
                let cleanup = del(plugins, &ran, inv, capability_args, prev.as_ref()).await;
                return Err(AddFailure { error, cleanup });
            }
        }
    }
    prev.ok_or_else(|| AddFailure {
        error: CniError::NoResult {
            network: list.name.clone(),
        }
        .into(),
        cleanup: Vec::new(),
    })
}

/// DEL through `list` in reverse; returns every failure (empty: all done).
pub(crate) async fn del(
    plugins: &Plugins,
    list: &NetworkList,
    inv: &Invocation<'_>,
    capability_args: &Map<String, Value>,
    result: Option<&Value>,
) -> Vec<Error> {
    let mut errors = Vec::new();
    for plugin in list.plugins.iter().rev() {
        let conf = plugin_config(list, plugin, result, capability_args);
        let done = match find(plugins, plugin) {
            Ok(bin) => plugins
                .run(CniCommand::Del, &bin, &conf, inv)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            errors.push(e);
        }
    }
    errors
}

fn find(plugins: &Plugins, plugin: &Map<String, Value>) -> Result<std::path::PathBuf> {
    let ty = plugin.get("type").and_then(Value::as_str).unwrap_or("");
    plugins.find(ty).ok_or_else(|| {
        CniError::PluginNotFound {
            plugin: ty.to_string(),
            path: plugins.cni_path(),
        }
        .into()
    })
}

/// One error out of a failed operation and the failures of cleaning up after it.
pub(crate) fn with_cleanup(error: Error, cleanup: Vec<Error>) -> Error {
    if cleanup.is_empty() {
        return error;
    }
    let cleanup: Vec<String> = cleanup.iter().map(message).collect();
    CniError::AddUndone {
        error: Box::new(error),
        cleanup: cleanup.join("; "),
    }
    .into()
}

/// An error's text without the `cni: ` prefix our own backend errors carry.
pub(crate) fn message(e: &Error) -> String {
    match e {
        Error::Backend { backend, message } if backend == "cni" => message.clone(),
        Error::Cni(e) => e.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> NetworkList {
        NetworkList::from_value(&json!({
            "cniVersion": "1.0.0",
            "name": "net1",
            "plugins": [
                {"type": "bridge", "bridge": "b0", "ipam": {"type": "host-local"}},
                {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}, "snat": true},
                {"type": "tuning", "capabilities": {"ipRanges": true}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn stdin_config_golden() {
        let list = list();
        let caps = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                          "bandwidth": {"ingressRate": 1}});
        let caps = caps.as_object().unwrap();
        let prev =
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.85.0.2/16", "interface": 2}]});

        assert_eq!(
            plugin_config(&list, &list.plugins[0], None, caps),
            json!({"type": "bridge", "bridge": "b0", "ipam": {"type": "host-local"},
                   "cniVersion": "1.0.0", "name": "net1"})
        );
        // Only declared and enabled capabilities, `capabilities` removed, prevResult added.
        assert_eq!(
            plugin_config(&list, &list.plugins[1], Some(&prev), caps),
            json!({"type": "portmap", "snat": true, "cniVersion": "1.0.0", "name": "net1",
                   "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                   "prevResult": prev})
        );
        // A declared capability the runtime has no value for adds no runtimeConfig.
        assert_eq!(
            plugin_config(&list, &list.plugins[2], Some(&prev), caps),
            json!({"type": "tuning", "cniVersion": "1.0.0", "name": "net1", "prevResult": prev})
        );
    }

    #[test]
    fn list_name_and_version_override_the_plugins_own() {
        let list = NetworkList::from_value(&json!({
            "cniVersion": "0.4.0", "name": "outer",
            "plugins": [{"type": "ptp", "name": "inner", "cniVersion": "0.3.1"}]
        }))
        .unwrap();
        let conf = plugin_config(&list, &list.plugins[0], None, &Map::new());
        assert_eq!(conf["name"], "outer");
        assert_eq!(conf["cniVersion"], "0.4.0");
    }

    #[test]
    fn cleanup_failures_are_appended() {
        let e = with_cleanup(Error::backend("cni", "add failed"), vec![]);
        assert_eq!(e.to_string(), "cni: add failed");
        let e = with_cleanup(
            Error::backend("cni", "add failed"),
            vec![
                Error::backend("cni", "del a"),
                Error::backend("cni", "del b"),
            ],
        );
        assert_eq!(
            e.to_string(),
            "cni: add failed; undoing it failed too: del a; del b"
        );
    }
}
