//! The tonic service impls: `RuntimeService` and `ImageService` route each verb to
//! its own file; `streamed` answers the `Stream*` verbs from their `List*` twins;
//! `unimplemented` answers the verbs this version lacks.

pub(crate) mod encoded;
mod image;
mod runtime;
mod streamed;
mod unimplemented;
