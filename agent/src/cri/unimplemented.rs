//! The answers of the verbs this version does not implement.

use tonic::Status;

/// `Unimplemented` for a streaming verb (Exec, Attach, PortForward): berth has no
/// streaming server yet.
pub(super) fn streaming(method: &'static str) -> Status {
    Status::unimplemented(format!(
        "{method} is not implemented in berth {}: it needs the streaming server, which comes in a later version (ExecSync works)",
        env!("CARGO_PKG_VERSION")
    ))
}

/// `Unimplemented` for any other verb this version lacks.
pub(super) fn not_in_this_version(method: &'static str) -> Status {
    Status::unimplemented(format!(
        "{method} is not implemented in berth {}",
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_method_and_the_reason() {
        let status = streaming("Exec");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().starts_with("Exec is not implemented"));
        assert!(status.message().contains("streaming server"));
        let status = not_in_this_version("CheckpointContainer");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status
            .message()
            .starts_with("CheckpointContainer is not implemented"));
    }
}
