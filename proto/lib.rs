//! berth's own protobuf messages, generated from `proto/*.proto` by the root `build.rs`.
//!
//! - [`cri`]: the Container Runtime Interface (CRI v1) berth serves, at the Kubernetes
//!   level `proto/cri.proto` names.
//! - [`supervisor`]: what the agent and a pod's supervisor (`berth shim`) say to each
//!   other over the supervisor's unix socket; see `proto/supervisor.proto` for the framing.
//! - [`delegate`]: the gRPC service a node agent uses to run pods on a delegate berth.

#![warn(missing_docs)]

/// The Container Runtime Interface berth serves; see `proto/cri.proto`.
pub mod cri {
    /// CRI v1 (`runtime.v1`): the services `RuntimeService` and `ImageService`.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/runtime.v1.rs"));
    }
}

/// Bytes in JSON as the string they spell when they are UTF-8 (how stored records
/// held them before the field became bytes), else as an array of numbers; both read
/// back.
mod text_or_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], out: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => out.serialize_str(text),
            Err(_) => bytes.serialize(out),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Vec<u8>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Either::deserialize(input)? {
            Either::Text(text) => text.into_bytes(),
            Either::Bytes(bytes) => bytes,
        })
    }

    #[cfg(test)]
    mod tests {
        use crate::cri::v1::KeyValue;

        #[test]
        fn text_stays_text_and_other_bytes_round_trip() {
            let old = r#"{"key":"A","value":"b=c"}"#;
            let kv: KeyValue = serde_json::from_str(old).unwrap();
            assert_eq!(kv.value, b"b=c");
            assert_eq!(serde_json::to_string(&kv).unwrap(), old);
            let raw = KeyValue {
                key: "B".into(),
                value: vec![0xff, 0x00],
            };
            let back: KeyValue =
                serde_json::from_str(&serde_json::to_string(&raw).unwrap()).unwrap();
            assert_eq!(back, raw);
        }
    }
}

/// The agent ↔ per-pod supervisor protocol (`berth.supervisor.v1`).
pub mod supervisor {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/berth.supervisor.v1.rs"));
}

/// The node agent ↔ delegate service (`berth.delegate.v1`): the `Runtime` trait over
/// gRPC; see `proto/delegate.proto`.
pub mod delegate {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/berth.delegate.v1.rs"));
}

/// NRI (Node Resource Interface, `nri.pkg.api.v1alpha1`): the messages of the plugin
/// protocol berth serves (agent/src/nri).
pub mod nri {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/nri.pkg.api.v1alpha1.rs"));
}

/// ttrpc's request and response envelopes, which carry NRI's messages.
pub mod ttrpc {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/ttrpc.rs"));
}
