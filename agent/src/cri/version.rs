//! `Version`: who answers the CRI.

use berth_proto::cri::v1::{VersionRequest, VersionResponse};

/// The kubelet runtime API version this server speaks (containerd answers the same).
const KUBELET_API_VERSION: &str = "0.1.0";

/// The answer to `Version`.
pub(super) fn version(_request: VersionRequest) -> VersionResponse {
    VersionResponse {
        version: KUBELET_API_VERSION.to_string(),
        runtime_name: "berth".to_string(),
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        runtime_api_version: "v1".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_berth_and_cri_v1() {
        let answer = version(VersionRequest::default());
        assert_eq!(answer.version, "0.1.0");
        assert_eq!(answer.runtime_name, "berth");
        assert_eq!(answer.runtime_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(answer.runtime_api_version, "v1");
    }
}
