//! The tonic service impls: `RuntimeService` and `ImageService` route each verb to
//! its own file; `unimplemented` answers the verbs this version lacks.

mod image;
mod runtime;
mod unimplemented;
