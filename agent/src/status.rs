//! The one place a CRI call's error ([`CallError`], or the `runtimes::Error` inside
//! it) becomes a gRPC status.
//!
//! Every variant has an explicit code; nothing falls through to `Unknown`, and adding
//! a variant to either enum fails to compile here until it is mapped. The message is
//! the error's own text, which names the object (ContainerId, CRI id, image). The
//! failure is logged once, by the trace layer, when it leaves the server.
//!
//! A free function rather than `impl From<runtimes::Error> for tonic::Status`: both
//! types are foreign to this crate, so the orphan rule forbids that impl here.

use std::collections::HashMap;

use runtimes::network::CniError;
use runtimes::Error;
use tonic::{Code, Response, Status};

use crate::error::CallError;
use tonic_types::{ErrorDetails, StatusExt};

/// `google.rpc.ErrorInfo.reason` of a [`Error::RouteToPeer`] status.
pub const ROUTE_TO_PEER: &str = "ROUTE_TO_PEER";

/// `google.rpc.ErrorInfo.domain` of berth's structured errors.
pub const ERROR_DOMAIN: &str = "berth.dev";

/// The longest message a status carries. It travels in an HTTP/2 header
/// (`grpc-message`, percent-encoded), which peers cap: a message quoting a huge request
/// field (a 1 MB image name in a `NotFound`) would cost the client the whole answer.
const MAX_MESSAGE: usize = 8 << 10;

/// The gRPC status for a CRI call's error.
pub fn from_call(err: CallError) -> Status {
    match err {
        CallError::Runtime(err) => from_runtime(err),
        // The names come from the request (the node's name is checked at start-up).
        err @ CallError::Identity { .. } => {
            Status::invalid_argument(bounded(runtimes::error::error_chain(&err)))
        }
        // A plugin's refusal or bad adjustment: the request may succeed once the
        // plugin changes its mind; nothing was left behind.
        CallError::Nri(err) => Status::failed_precondition(bounded(err.to_string())),
    }
}

/// The gRPC status for a runtime error. The message names every cause: an error
/// that keeps a library's error as its source says what that library said.
pub fn from_runtime(err: Error) -> Status {
    let message = bounded(runtimes::error::error_chain(&err));
    let code = code(&err);
    match err {
        Error::RouteToPeer {
            service,
            required_os,
            handler,
            container_id,
            ..
        } => {
            // `required_os` is the image's (or pod config's) OS; `image_os` says the
            // same under the name the delegate design uses.
            let mut metadata = HashMap::from([
                ("service".to_string(), service),
                ("image_os".to_string(), required_os.clone()),
                ("required_os".to_string(), required_os),
                ("handler".to_string(), handler.clone()),
                ("container_id".to_string(), container_id),
            ]);
            // The handler again under the name the message's tag gives it.
            if !handler.is_empty() {
                metadata.insert("runtime_handler".to_string(), handler);
            }
            Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_error_info(ROUTE_TO_PEER, ERROR_DOMAIN, metadata),
            )
        }
        _ => Status::new(code, message),
    }
}

/// The code of a runtime error. Several failures keep the code they all share (a
/// teardown whose every step found its object gone is `NotFound`); mixed ones are
/// internal.
pub fn code(err: &Error) -> Code {
    match err {
        Error::RouteToPeer { .. } => Code::FailedPrecondition,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::InvalidSpec(_) => Code::InvalidArgument,
        Error::Unsupported { .. } => Code::Unimplemented,
        Error::WrongPlatform { .. } => Code::FailedPrecondition,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Delegated { code, .. } => *code,
        Error::Unavailable { .. } => Code::Unavailable,
        Error::Unauthenticated { .. } => Code::Unauthenticated,
        Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        Error::DataLoss { .. } => Code::DataLoss,
        Error::Failures { failures, .. } => {
            let mut codes = failures.iter().map(code);
            let first = codes.next().unwrap_or(Code::Internal);
            if codes.all(|c| c == first) {
                first
            } else {
                Code::Internal
            }
        }
        Error::Internal { .. } => Code::Internal,
        Error::Backend { .. } => Code::Internal,
        Error::Io { .. } => Code::Internal,
        Error::Cni(e) => cni_code(e),
    }
}

/// The code of a CNI failure: a missing plugin or a network config the plugin calls
/// wrong is the node's to fix, a plugin's "try again later" is passing; an ADD whose
/// undo failed too keeps the code of the failure that made it undo.
fn cni_code(err: &CniError) -> Code {
    match err {
        CniError::PluginNotFound { .. } => Code::FailedPrecondition,
        CniError::PluginFailed { code: Some(c), .. } if *c == CniError::TRY_AGAIN_LATER => {
            Code::Unavailable
        }
        CniError::PluginFailed { code: Some(c), .. } if CniError::NODE_CONFIG_CODES.contains(c) => {
            Code::FailedPrecondition
        }
        CniError::CacheUnreadable { .. } => Code::DataLoss,
        CniError::AddUndone { error, .. } => code(error),
        CniError::PluginFailed { .. }
        | CniError::BadResult { .. }
        | CniError::NoResult { .. }
        | CniError::NoAddress { .. }
        | CniError::CachedConfig(_)
        | CniError::CannotDetach { .. } => Code::Internal,
    }
}

/// `message`, cut to [`MAX_MESSAGE`] bytes (at a character boundary) with a note of
/// its full length.
fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut from {} bytes)", &message[..end], message.len())
}

/// A handler's result as tonic wants it.
pub fn answer<T, E: Into<CallError>>(result: Result<T, E>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(|e| from_call(e.into()))
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use super::*;

    /// One value of every variant, with the code it must map to and a word of the
    /// object its message must name.
    fn every_variant() -> Vec<(Error, Code, &'static str)> {
        vec![
            (
                Error::RouteToPeer {
                    service: "web.default".into(),
                    required_os: "windows".into(),
                    handler: String::new(),
                    container_id: "web.default-sandbox-0-on-n1".into(),
                    reason: "no delegate".into(),
                },
                Code::FailedPrecondition,
                "web.default",
            ),
            (
                Error::not_found("image", "busybox:1"),
                Code::NotFound,
                "busybox:1",
            ),
            (
                Error::AlreadyExists {
                    kind: "container",
                    id: "c1".into(),
                },
                Code::AlreadyExists,
                "c1",
            ),
            (
                Error::InvalidSpec("PullImage: image.image is empty".into()),
                Code::InvalidArgument,
                "image.image",
            ),
            (
                Error::Unsupported {
                    backend: "youki".into(),
                    operation: "CheckpointContainer",
                },
                Code::Unimplemented,
                "CheckpointContainer",
            ),
            (
                Error::WrongPlatform {
                    image: "nanoserver:1".into(),
                    platform: "windows/amd64".into(),
                    backend: "youki".into(),
                    supported: "linux".into(),
                },
                Code::FailedPrecondition,
                "nanoserver:1",
            ),
            (
                Error::FailedPrecondition("container c1 is running".into()),
                Code::FailedPrecondition,
                "c1",
            ),
            (
                Error::Unavailable {
                    service: "registry 127.0.0.1:5000".into(),
                    message: "connection refused".into(),
                },
                Code::Unavailable,
                "127.0.0.1:5000",
            ),
            (
                Error::Delegated {
                    delegate: "delegate at unix:/run/d.sock".into(),
                    code: Code::NotFound,
                    message: "container c1 not found".into(),
                },
                Code::NotFound,
                "unix:/run/d.sock",
            ),
            (
                Error::Unauthenticated {
                    service: "registry r.example".into(),
                    message: "401".into(),
                },
                Code::Unauthenticated,
                "r.example",
            ),
            (
                Error::DeadlineExceeded {
                    operation: "pull of busybox".into(),
                    after: Duration::from_secs(5),
                },
                Code::DeadlineExceeded,
                "busybox",
            ),
            (
                Error::DataLoss {
                    what: "blob sha256:abc".into(),
                    message: "digest mismatch".into(),
                },
                Code::DataLoss,
                "sha256:abc",
            ),
            (
                Error::backend("youki", "supervisor for web exited"),
                Code::Internal,
                "youki",
            ),
            (
                Error::Failures {
                    what: "removing pod sandbox web".into(),
                    failures: vec![
                        Error::not_found("container", "c1"),
                        Error::not_found("container", "c2"),
                    ],
                },
                Code::NotFound,
                "web",
            ),
            (
                Error::internal("youki", "reading /proc/1/stat", io::Error::other("EIO")),
                Code::Internal,
                "/proc/1/stat",
            ),
            (
                Error::io("reading /var/lib/berth/x", io::Error::other("boom")),
                Code::Internal,
                "/var/lib/berth/x",
            ),
            (
                CniError::PluginNotFound {
                    plugin: "bridge".into(),
                    path: "/opt/cni/bin".into(),
                }
                .into(),
                Code::FailedPrecondition,
                "bridge",
            ),
        ]
    }

    fn plugin_failed(code: Option<u64>) -> Error {
        CniError::PluginFailed {
            what: "CNI ADD of plugin bridge (network n, pod web)".into(),
            code,
            message: "failed".into(),
        }
        .into()
    }

    #[test]
    fn every_variant_has_its_code_and_names_the_object() {
        let cases = every_variant();
        // One case per variant: a new variant must be added here too.
        assert_eq!(cases.len(), 17);
        for (err, code, object) in cases {
            let text = err.to_string();
            let status = from_runtime(err);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
            assert!(status.message().contains(object), "{text} lacks {object}");
        }
    }

    #[test]
    fn cni_failures_have_the_code_of_their_kind() {
        let cases: Vec<(Error, Code, &str)> = vec![
            (plugin_failed(Some(7)), Code::FailedPrecondition, "pod web"),
            (plugin_failed(Some(11)), Code::Unavailable, "pod web"),
            (plugin_failed(Some(999)), Code::Internal, "pod web"),
            (plugin_failed(None), Code::Internal, "pod web"),
            (
                CniError::AddUndone {
                    error: Box::new(plugin_failed(Some(11))),
                    cleanup: "CNI DEL of plugin bridge: busy".into(),
                }
                .into(),
                Code::Unavailable,
                "pod web",
            ),
            (
                CniError::CacheUnreadable {
                    path: "/run/berth/cni/web.json".into(),
                    source: serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
                }
                .into(),
                Code::DataLoss,
                "web.json",
            ),
            (
                CniError::NoAddress {
                    ifname: "eth0".into(),
                    result: "{}".into(),
                }
                .into(),
                Code::Internal,
                "eth0",
            ),
        ];
        for (err, code, object) in cases {
            let text = err.to_string();
            let status = from_runtime(err);
            assert_eq!(status.code(), code, "{text}");
            assert!(status.message().contains(object), "{text} lacks {object}");
        }
    }

    #[test]
    fn mixed_failures_are_internal_and_name_every_cause() {
        let err = Error::Failures {
            what: "stopping pod sandbox web".into(),
            failures: vec![
                Error::not_found("container", "c1"),
                Error::internal("cni", "CNI DEL", io::Error::other("plugin crashed")),
            ],
        };
        let status = from_runtime(err);
        assert_eq!(status.code(), Code::Internal);
        for part in ["web", "c1", "CNI DEL", "plugin crashed"] {
            assert!(status.message().contains(part), "{}", status.message());
        }
    }

    #[test]
    fn the_agents_own_refusals_have_their_codes() {
        let refused = runtimes::ContainerId::new("web.default", "Bad Role", 0, "n1").unwrap_err();
        let identity = from_call(CallError::Identity {
            method: "CreateContainer",
            source: refused,
        });
        assert_eq!(identity.code(), Code::InvalidArgument);
        assert!(
            identity.message().starts_with("CreateContainer: role"),
            "{}",
            identity.message()
        );
        let runtime = from_call(Error::not_found("image", "x").into());
        assert_eq!(runtime.code(), Code::NotFound);
    }

    #[test]
    fn only_route_to_peer_carries_error_info() {
        for (err, _, _) in every_variant() {
            let is_route = matches!(err, Error::RouteToPeer { .. });
            let status = from_runtime(err);
            assert_eq!(status.get_details_error_info().is_some(), is_route);
        }
    }

    #[test]
    fn route_to_peer_error_info_is_machine_readable() {
        let status = from_runtime(Error::RouteToPeer {
            service: "web.default".into(),
            required_os: "windows".into(),
            handler: "wsl2".into(),
            container_id: "web.default-sandbox-0-on-n1".into(),
            reason: "no windows delegate on this node".into(),
        });
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, ROUTE_TO_PEER);
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["service"], "web.default");
        assert_eq!(info.metadata["required_os"], "windows");
        assert_eq!(info.metadata["image_os"], "windows");
        assert_eq!(info.metadata["handler"], "wsl2");
        assert_eq!(info.metadata["container_id"], "web.default-sandbox-0-on-n1");
        assert_eq!(info.metadata["runtime_handler"], "wsl2");
        assert_eq!(info.metadata.len(), 6);
        assert!(
            status
                .message()
                .contains("[ROUTE_TO_PEER required_os=windows runtime_handler=wsl2]"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn huge_messages_are_cut_at_a_character_boundary() {
        let name = format!("a{}", "é".repeat(1 << 20));
        let status = from_runtime(Error::not_found("image", &name));
        assert_eq!(status.code(), Code::NotFound);
        let message = status.message();
        assert!(message.len() < MAX_MESSAGE + 64, "{}", message.len());
        assert!(message.starts_with("image aé"), "{}", &message[..20]);
        let note = format!("… (cut from {} bytes)", name.len() + 16);
        assert!(
            message.ends_with(&note),
            "{}",
            &message[message.len() - 60..]
        );
        let short = from_runtime(Error::not_found("image", "busybox"));
        assert_eq!(short.message(), "image busybox not found");
    }

    #[test]
    fn answer_wraps_success_and_maps_failure() {
        assert_eq!(answer::<_, Error>(Ok(7)).unwrap().into_inner(), 7);
        let status = answer::<(), _>(Err(Error::not_found("image", "x"))).unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
}
