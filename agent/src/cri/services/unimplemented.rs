//! The answers of the verbs this version does not implement.

use tonic::Status;

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
    fn names_the_method() {
        let status = not_in_this_version("CheckpointContainer");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status
            .message()
            .starts_with("CheckpointContainer is not implemented"));
    }
}
