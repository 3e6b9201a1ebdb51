//! What the server writes on the error stream when a session ends: kubelet's
//! `metav1.Status` JSON (protocols v4 and v5), or only a failure's message (older
//! protocols). client-go turns a `NonZeroExitCode` status into an exit-code error,
//! which is how `crictl exec` learns the command's exit code.

use bytes::Bytes;
use serde_json::json;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited 0, or an attach ended.
    Success,
    /// The command exited with this non-zero code.
    ExitCode(i32),
    /// The session could not run or broke; the message says why.
    Error(String),
}

/// How the negotiated protocol writes a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// v4 and v5: a JSON `metav1.Status`, success included.
    Json,
    /// v1 to v3: a failure's message as text; nothing on success.
    Text,
}

impl Outcome {
    fn message(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::ExitCode(code) => Some(format!(
                "command terminated with non-zero exit code: exit status {code}"
            )),
            Outcome::Error(message) => Some(format!("Internal error occurred: {message}")),
        }
    }

    /// The bytes to write on the error stream, if any.
    pub fn encode(&self, format: StatusFormat) -> Option<Bytes> {
        let status = match (format, self) {
            (StatusFormat::Text, _) => return self.message().map(Bytes::from),
            (StatusFormat::Json, Outcome::Success) => {
                json!({"metadata": {}, "status": "Success"})
            }
            (StatusFormat::Json, Outcome::ExitCode(code)) => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.message(),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            (StatusFormat::Json, Outcome::Error(cause)) => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.message(),
                "reason": "InternalError",
                "details": {"causes": [{"message": cause}]},
                "code": 500,
            }),
        };
        Some(Bytes::from(status.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Option<Bytes>) -> serde_json::Value {
        serde_json::from_slice(&bytes.unwrap()).unwrap()
    }

    #[test]
    fn json_statuses_are_what_client_go_decodes() {
        let ok = parse(Outcome::Success.encode(StatusFormat::Json));
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));

        let exit = parse(Outcome::ExitCode(3).encode(StatusFormat::Json));
        assert_eq!(exit["status"], "Failure");
        assert_eq!(exit["reason"], "NonZeroExitCode");
        assert_eq!(
            exit["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );

        let broken = parse(Outcome::Error("no such container".into()).encode(StatusFormat::Json));
        assert_eq!(broken["reason"], "InternalError");
        assert_eq!(broken["code"], 500);
        assert_eq!(
            broken["message"],
            "Internal error occurred: no such container"
        );
    }

    #[test]
    fn text_statuses_carry_only_failures() {
        assert_eq!(Outcome::Success.encode(StatusFormat::Text), None);
        let text = Outcome::ExitCode(7).encode(StatusFormat::Text).unwrap();
        assert_eq!(
            &text[..],
            b"command terminated with non-zero exit code: exit status 7"
        );
    }
}
