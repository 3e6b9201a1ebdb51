//! `RuntimeConfig`: the cgroup driver kubelet must match.

use berth_proto::cri::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

/// The answer to `RuntimeConfig`: berth manages cgroups through the filesystem, not
/// through systemd.
pub(super) fn runtime_config(_request: RuntimeConfigRequest) -> RuntimeConfigResponse {
    RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: CgroupDriver::Cgroupfs.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_driver_is_cgroupfs() {
        let linux = runtime_config(RuntimeConfigRequest::default())
            .linux
            .unwrap();
        assert_eq!(linux.cgroup_driver(), CgroupDriver::Cgroupfs);
    }
}
