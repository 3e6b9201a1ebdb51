//! What the verbs share; nothing here is a verb. Requests in: [`fields`] (the edge's
//! rules for names and paths) and [`sandbox_spec`]. Records and answers out:
//! [`objects`] (finding records, filters, ids, timestamps) and the
//! CRI views of a [`container`], [`sandbox`], [`image`] and their [`stats`] and [`metrics`];
//! [`batches`] for the `Stream*` listings, [`entries`] for the listings kubelet polls.

pub(super) mod batches;
pub(super) mod container;
pub(super) mod entries;
pub(super) mod events;
pub(super) mod fields;
pub(super) mod image;
pub(super) mod metrics;
pub(super) mod objects;
pub(super) mod sandbox;
pub(super) mod sandbox_spec;
pub(super) mod stats;

#[cfg(test)]
pub(crate) mod testing;
