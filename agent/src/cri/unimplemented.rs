//! The answer of every pod and container verb in this version.

use tonic::Status;

/// `Unimplemented` for a pod or container verb, saying why and when it comes.
pub(super) fn pods_and_containers(method: &'static str) -> Status {
    Status::unimplemented(format!(
        "{method} is not implemented in berth {}: pod and container support comes with the youki backend and is not in this version",
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_method_and_the_reason() {
        let status = pods_and_containers("RunPodSandbox");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status
            .message()
            .starts_with("RunPodSandbox is not implemented"));
        assert!(status.message().contains("youki backend"));
    }
}
