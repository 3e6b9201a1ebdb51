//! The features the composite reports: per runtime handler, and node-wide.

use std::sync::Arc;

use super::*;
use crate::mock::MockRuntime;

fn composite(primary: MockRuntime) -> CompositeRuntime {
    CompositeRuntime::new(Arc::new(primary))
}

fn only_rro() -> Features {
    Features {
        recursive_read_only_mounts: true,
        ..Features::default()
    }
}

#[test]
fn each_handler_reports_its_own_backends_features() {
    let youki = MockRuntime::new("youki", &["linux"]).with_features(Features::all());
    let kata = MockRuntime::new("kata", &["linux"]).with_features(only_rro());
    let rt = composite(youki).with_handler("kata", Arc::new(kata));
    assert_eq!(rt.handler_features(""), Some(Features::all()));
    assert_eq!(rt.handler_features("kata"), Some(only_rro()));
    assert_eq!(rt.handler_features("gvisor"), None);
}

#[test]
fn node_wide_features_are_those_every_backend_offers() {
    let youki = MockRuntime::new("youki", &["linux"]).with_features(Features::all());
    assert_eq!(composite(youki.clone()).features(), Features::all());
    let delegate = MockRuntime::new("wsl", &["windows"]).with_features(only_rro());
    let rt = composite(youki).with_delegate(Arc::new(delegate));
    assert_eq!(rt.features(), only_rro());
    let bare = composite(MockRuntime::new("bare", &["linux"]));
    assert_eq!(bare.features(), Features::default());
}
