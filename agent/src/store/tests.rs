use std::os::unix::fs::PermissionsExt;

use runtimes::{ContainerId, DispatchLog};

use super::*;

fn id(service: &str, role: &str, replica: u32) -> ContainerId {
    ContainerId::new(service, role, replica, "node-a").unwrap()
}

#[test]
fn dispatch_records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let web = id("web.default", "sandbox", 0);
    let db = id("db.default", "postgres", 1);
    {
        let store = Store::open(&state).unwrap();
        assert!(store.load().unwrap().is_empty());
        store.record(&web, "youki").unwrap();
        store.record(&db, "containerd").unwrap();
        // Re-recording replaces the backend.
        store.record(&db, "youki").unwrap();
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let store = Store::open(&state).unwrap();
    assert_eq!(store.path(), state.join(STORE_FILE));
    let mut records = store.load().unwrap();
    records.sort();
    assert_eq!(
        records,
        [
            (db.clone(), "youki".to_string()),
            (web.clone(), "youki".to_string())
        ]
    );
    store.forget(&web).unwrap();
    store.forget(&web).unwrap(); // absent: still fine
    assert_eq!(store.load().unwrap(), [(db, "youki".to_string())]);
}

#[test]
fn a_second_open_is_refused_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::StoreInUse { .. }), "{err:?}");
    assert!(err.to_string().contains(STORE_FILE), "{err}");
}

#[test]
fn a_store_from_a_newer_berth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|txn| {
                txn.open_table(tables::META)?
                    .insert(tables::SCHEMA_VERSION_KEY, tables::SCHEMA_VERSION + 1)?;
                Ok(())
            })
            .unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    match err {
        Error::StoreSchema {
            found, supported, ..
        } => assert_eq!((found, supported), (2, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreadable_record_is_data_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .write(|txn| {
            txn.open_table(tables::DISPATCH)?
                .insert("0123abcd", "youki")?;
            Ok(())
        })
        .unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, runtimes::Error::DataLoss { .. }), "{err:?}");
    assert!(err.to_string().contains("0123abcd"), "{err}");
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let result: Result<()> = store.write(|txn| {
        txn.open_table(tables::DISPATCH)?
            .insert(id("a", "sandbox", 0).to_string().as_str(), "youki")?;
        Err(redb::Error::Corrupted("injected".into()))
    });
    assert!(result.is_err());
    assert!(store.dispatch_records().unwrap().is_empty());
}
