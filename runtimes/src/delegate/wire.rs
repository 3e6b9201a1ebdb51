//! The JSON payloads of the delegate protocol (`Json` messages): serde encodings of
//! this crate's values.

use berth_proto::delegate::{Id, Json};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::ContainerId;

/// `value` as a `Json` message.
pub fn json<T: Serialize>(value: &T) -> Result<Json> {
    serde_json::to_vec(value)
        .map(|json| Json { json })
        .map_err(|e| Error::internal("delegate", "encoding a request", e))
}

/// The value a `Json` message carries; `what` names it in the error.
pub fn from_json<T: DeserializeOwned>(what: &str, message: Option<Json>) -> Result<T> {
    let bytes = message.map(|m| m.json).unwrap_or_default();
    from_bytes(what, &bytes)
}

/// The value of JSON `bytes`; `what` names it in the error.
pub fn from_bytes<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidSpec(format!("delegate protocol: {what} is not valid: {e}")))
}

/// `id` on the wire.
pub fn id(id: &ContainerId) -> Id {
    Id { id: id.to_string() }
}

/// The ContainerId an `Id` message names.
pub fn parse_id(id: Option<Id>) -> Result<ContainerId> {
    let text = id.map(|i| i.id).unwrap_or_default();
    ContainerId::parse_display(&text).ok_or_else(|| {
        Error::InvalidSpec(format!(
            "delegate protocol: id `{text}` is not a ContainerId"
        ))
    })
}
