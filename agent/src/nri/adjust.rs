//! `CreateContainer`'s adjustments: what the plugins change in a container's OCI spec
//! before it is created. Merged in plugin order; two plugins setting the same
//! annotation, variable or mount is a conflict that fails the creation (as NRI's
//! adaptation does). A key (or mount destination) starting with `-` removes it.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::nri as api;
use oci_spec::runtime::{Mount, Spec};

use super::NriError;

/// The plugins' merged adjustments.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Adjustment {
    /// Annotation → value (`None`: removed).
    annotations: Vec<(String, Option<String>)>,
    /// Variable → value (`None`: removed).
    env: Vec<(String, Option<String>)>,
    /// Mounts added (replacing any at their destination).
    mounts: Vec<api::Mount>,
    /// Destinations whose mounts are removed.
    unmounts: Vec<String>,
    /// The process's new arguments.
    args: Option<Vec<String>>,
    /// Who set what, to find conflicts: `kind:key` → plugin.
    owners: HashMap<String, String>,
}

impl Adjustment {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty()
            && self.env.is_empty()
            && self.mounts.is_empty()
            && self.unmounts.is_empty()
            && self.args.is_none()
    }

    fn claim(&mut self, plugin: &str, kind: &str, key: &str) -> Result<(), NriError> {
        match self
            .owners
            .insert(format!("{kind}:{key}"), plugin.to_string())
        {
            Some(other) if other != plugin => Err(NriError::Adjustment {
                plugin: plugin.into(),
                why: format!("{kind} {key:?} is set by plugin {other} too"),
            }),
            _ => Ok(()),
        }
    }

    /// Adds `plugin`'s adjustment.
    pub fn merge(
        &mut self,
        plugin: &str,
        adjust: api::ContainerAdjustment,
    ) -> Result<(), NriError> {
        let invalid = |why: String| NriError::Adjustment {
            plugin: plugin.into(),
            why,
        };
        let mut annotations: Vec<_> = adjust.annotations.into_iter().collect();
        annotations.sort();
        for (key, value) in annotations {
            let (key, value) = removal(key, value);
            if key.is_empty() {
                return Err(invalid("an annotation has an empty key".into()));
            }
            self.claim(plugin, "annotation", &key)?;
            self.annotations.push((key, value));
        }
        for kv in adjust.env {
            let (key, value) = removal(kv.key, kv.value);
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(format!("environment variable name {key:?}")));
            }
            self.claim(plugin, "environment variable", &key)?;
            self.env.push((key, value));
        }
        for mount in adjust.mounts {
            if let Some(destination) = mount.destination.strip_prefix('-') {
                self.unmounts.push(destination.to_string());
                continue;
            }
            if !mount.destination.starts_with('/') {
                return Err(invalid(format!(
                    "mount destination {:?} is not absolute",
                    mount.destination
                )));
            }
            self.claim(plugin, "mount", &mount.destination)?;
            self.mounts.push(mount);
        }
        if !adjust.args.is_empty() {
            self.claim(plugin, "args", "")?;
            self.args = Some(adjust.args);
        }
        Ok(())
    }

    /// Applies it to the container's spec; annotations also go to `annotations`
    /// (what the container's status reports).
    pub fn apply(&self, spec: &mut Spec, annotations: &mut HashMap<String, String>) {
        let spec_annotations = spec.annotations_mut().get_or_insert_with(HashMap::new);
        for (key, value) in &self.annotations {
            match value {
                Some(value) => {
                    spec_annotations.insert(key.clone(), value.clone());
                    annotations.insert(key.clone(), value.clone());
                }
                None => {
                    spec_annotations.remove(key);
                    annotations.remove(key);
                }
            }
        }
        if let Some(process) = spec.process_mut() {
            let env = process.env_mut().get_or_insert_with(Vec::new);
            for (key, value) in &self.env {
                let prefix = format!("{key}=");
                env.retain(|e| !e.starts_with(&prefix));
                if let Some(value) = value {
                    env.push(format!("{key}={value}"));
                }
            }
            if let Some(args) = &self.args {
                process.set_args(Some(args.clone()));
            }
        }
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        for destination in &self.unmounts {
            mounts.retain(|m| m.destination() != &PathBuf::from(destination));
        }
        for added in &self.mounts {
            let destination = PathBuf::from(&added.destination);
            mounts.retain(|m| m.destination() != &destination);
            let mut mount = Mount::default();
            mount
                .set_destination(destination)
                .set_typ(Some(added.r#type.clone()).filter(|t| !t.is_empty()))
                .set_source(
                    Some(PathBuf::from(&added.source)).filter(|s| !s.as_os_str().is_empty()),
                )
                .set_options(Some(added.options.clone()).filter(|o| !o.is_empty()));
            mounts.push(mount);
        }
    }
}

/// NRI marks a removal with a `-` before the key.
fn removal(key: String, value: String) -> (String, Option<String>) {
    match key.strip_prefix('-') {
        Some(key) => (key.to_string(), None),
        None => (key, Some(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjustment(annotation: &str, env: &str) -> api::ContainerAdjustment {
        api::ContainerAdjustment {
            annotations: [(annotation.to_string(), "v".to_string())].into(),
            env: vec![api::KeyValue {
                key: env.into(),
                value: "1".into(),
            }],
            mounts: vec![api::Mount {
                destination: "/nri".into(),
                r#type: "bind".into(),
                source: "/tmp".into(),
                options: vec!["rbind".into(), "ro".into()],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn adjustments_change_the_spec_and_conflicts_fail() {
        let mut merged = Adjustment::default();
        merged.merge("10-a", adjustment("a", "A")).unwrap();
        let mut spec = Spec::default();
        let mut annotations = HashMap::from([("kept".to_string(), "x".to_string())]);
        merged.apply(&mut spec, &mut annotations);
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"A=1".to_string()), "{env:?}");
        assert_eq!(annotations.get("a").map(String::as_str), Some("v"));
        assert!(annotations.contains_key("kept"));
        let mount = spec.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(mount.destination(), &PathBuf::from("/nri"));
        // A second plugin setting the same annotation conflicts.
        let err = merged.merge("20-b", adjustment("a", "B")).unwrap_err();
        assert!(err.to_string().contains("10-a"), "{err}");
        // A removal drops what the spec had.
        let mut removal = Adjustment::default();
        removal
            .merge(
                "30-c",
                api::ContainerAdjustment {
                    env: vec![api::KeyValue {
                        key: "-A".into(),
                        value: String::new(),
                    }],
                    mounts: vec![api::Mount {
                        destination: "-/nri".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .unwrap();
        removal.apply(&mut spec, &mut annotations);
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(!env.iter().any(|e| e.starts_with("A=")), "{env:?}");
        assert!(!spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == &PathBuf::from("/nri")));
        let bad = Adjustment::default().merge(
            "40-d",
            api::ContainerAdjustment {
                mounts: vec![api::Mount {
                    destination: "relative".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert!(bad.is_err());
    }
}
