//! The tables of the state store and the schema version they make up.
//!
//! A table is added here (a `TableDefinition`, its key and value types documented),
//! created in `Store::open` (`prepare`), and given typed
//! accessors in its own file next to `objects.rs`. Objects of the CRI are keyed by
//! their CRI id; structured values are stored as JSON bytes behind a typed accessor.
//! Adding a table is backwards compatible; changing the meaning of an existing key or
//! value bumps [`SCHEMA_VERSION`] and adds a migration in `Store::open`.

use redb::TableDefinition;

/// The schema this build writes. A store with a higher version is refused.
///
/// 2: a sandbox record names its backend; [`DISPATCH`] is read once, to migrate.
pub(super) const SCHEMA_VERSION: u64 = 2;

/// Store-wide facts: `schema_version` → the [`SCHEMA_VERSION`] the store was written with.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The key of the schema version in [`META`].
pub(super) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Schema 1's dispatch records: a ContainerId's display form → the name of the
/// backend that holds the object. Read once, when a schema 1 store is opened, to name
/// the backend in each sandbox record; not written since.
pub(super) const DISPATCH: TableDefinition<&str, &str> = TableDefinition::new("dispatch");

/// Pod sandboxes: CRI id → a [`SandboxRecord`](super::SandboxRecord) as JSON.
pub(super) const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");

/// Containers: CRI id → a [`ContainerRecord`](super::ContainerRecord) as JSON.
pub(super) const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

/// The ContainerIds in use: display form → the CRI id of the sandbox or container
/// that holds it. A ContainerId is unique among these.
pub(super) const CONTAINER_IDS: TableDefinition<&str, &str> = TableDefinition::new("container_ids");
