use std::os::unix::fs::PermissionsExt;

use runtimes::ContainerId;

use super::*;
use crate::store::{ContainerRecord, SandboxPhase, SandboxRecord};

fn id(service: &str, role: &str, replica: u32) -> ContainerId {
    ContainerId::new(service, role, replica, "node-a").unwrap()
}

#[test]
fn the_state_dir_is_traversable_and_the_store_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(Store::open(&state).unwrap());
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o711, "others may traverse, not list");
    // A state dir an older berth created 0700 becomes traversable.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let store = Store::open(&state).unwrap();
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o711);
    assert_eq!(store.path(), state.join(STORE_FILE));
}

#[test]
fn routes_come_from_the_sandbox_records() {
    let dir = tempfile::tempdir().unwrap();
    let web = id("web.default", "sandbox", 0);
    let app = web.with_role("app").unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .insert::<_, runtimes::Error>(|_| {
                Ok(SandboxRecord {
                    backend: "youki".into(),
                    ..sandbox("aa", web.clone())
                })
            })
            .unwrap();
        store
            .insert::<_, runtimes::Error>(|_| Ok(sandbox("bb", id("db.default", "sandbox", 0))))
            .unwrap();
        store
            .insert::<_, runtimes::Error>(|_| Ok(container("cc", "aa", app.clone())))
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let mut routes = store.routes().unwrap();
    routes.sort();
    assert_eq!(
        routes,
        [(app, "youki".to_string()), (web, "youki".to_string())]
    );
}

#[test]
fn a_schema_1_store_takes_the_backends_from_its_dispatch_table() {
    let dir = tempfile::tempdir().unwrap();
    let web = id("web.default", "sandbox", 0);
    let app = web.with_role("app").unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .insert::<_, runtimes::Error>(|_| Ok(sandbox("aa", web.clone())))
            .unwrap();
        store
            .insert::<_, runtimes::Error>(|_| Ok(container("cc", "aa", app.clone())))
            .unwrap();
        // As schema 1 wrote it: no backend in the record, a row per object in DISPATCH.
        let mut old = serde_json::to_value(sandbox("aa", web.clone())).unwrap();
        old.as_object_mut().unwrap().remove("backend");
        let old = serde_json::to_vec(&old).unwrap();
        store
            .write(|txn| {
                txn.open_table(tables::META)?
                    .insert(tables::SCHEMA_VERSION_KEY, 1)?;
                txn.open_table(tables::SANDBOXES)?
                    .insert("aa", old.as_slice())?;
                let mut dispatch = txn.open_table(tables::DISPATCH)?;
                dispatch.insert(web.to_string().as_str(), "youki")?;
                dispatch.insert(app.to_string().as_str(), "youki")?;
                Ok(())
            })
            .unwrap();
        assert!(store.routes().unwrap().is_empty());
    }
    let store = Store::open(dir.path()).unwrap();
    let record = store.get::<SandboxRecord>("aa").unwrap().unwrap();
    assert_eq!(record.backend, "youki");
    let mut routes = store.routes().unwrap();
    routes.sort();
    assert_eq!(
        routes,
        [(app, "youki".to_string()), (web, "youki".to_string())]
    );
    let version = store
        .read(|txn| {
            Ok(txn
                .open_table(tables::META)?
                .get(tables::SCHEMA_VERSION_KEY)?
                .map(|v| v.value()))
        })
        .unwrap();
    assert_eq!(version, Some(tables::SCHEMA_VERSION));
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
        } => assert_eq!((found, supported), (3, 2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let result: Result<()> = store.write(|txn| {
        txn.open_table(tables::CONTAINER_IDS)?
            .insert(id("a", "sandbox", 0).to_string().as_str(), "aa")?;
        Err(redb::Error::Corrupted("injected".into()))
    });
    assert!(result.is_err());
    assert!(store.allocated_ids().unwrap().is_empty());
}

fn sandbox(id: &str, container_id: ContainerId) -> SandboxRecord {
    SandboxRecord {
        id: id.to_string(),
        container_id,
        phase: SandboxPhase::Creating,
        created_at: 1,
        runtime_handler: String::new(),
        config: Default::default(),
        ips: vec![],
        backend: String::new(),
    }
}

fn container(id: &str, sandbox_id: &str, container_id: ContainerId) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        sandbox_id: sandbox_id.to_string(),
        container_id,
        phase: crate::store::ContainerPhase::Created,
        created_at: 1,
        config: Default::default(),
        image_id: String::new(),
        image_tag: None,
        image_digest: None,
        log_path: None,
        resources: None,
    }
}

#[test]
fn records_and_their_ids_are_written_together_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let web = id("web.default", "sandbox", 0);
    {
        let store = Store::open(dir.path()).unwrap();
        let inserted = store
            .insert::<_, runtimes::Error>(|snapshot| {
                assert!(snapshot.allocated.is_empty() && snapshot.sandboxes.is_empty());
                Ok(sandbox("aa", web.clone()))
            })
            .unwrap();
        assert_eq!(inserted.phase, SandboxPhase::Creating);
        let updated = store
            .update::<SandboxRecord>("aa", |r| {
                r.phase = SandboxPhase::Ready;
                r.ips = vec!["10.0.0.2".into()];
            })
            .unwrap()
            .unwrap();
        assert_eq!(updated.phase, SandboxPhase::Ready);
        assert!(store
            .update::<SandboxRecord>("zz", |_| {})
            .unwrap()
            .is_none());
    }
    let store = Store::open(dir.path()).unwrap();
    let records = store.list::<SandboxRecord>().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].ips, ["10.0.0.2"]);
    assert_eq!(records[0].container_id, web);
    assert_eq!(store.allocated_ids().unwrap()[&web], "aa");
    // The next insert sees what is recorded.
    store
        .insert::<_, runtimes::Error>(|snapshot| {
            assert!(snapshot.allocated.contains(&web));
            assert_eq!(snapshot.sandboxes.len(), 1);
            Ok(sandbox("bb", web.with_replica(1)))
        })
        .unwrap();
    store.remove::<SandboxRecord>("aa").unwrap();
    store.remove::<SandboxRecord>("aa").unwrap();
    assert!(store.get::<SandboxRecord>("aa").unwrap().is_none());
    let ids: Vec<ContainerId> = store.allocated_ids().unwrap().into_keys().collect();
    assert_eq!(ids, [web.with_replica(1)]);
}

#[test]
fn a_refused_or_conflicting_insert_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let web = id("web.default", "sandbox", 0);
    let refused = store
        .insert::<SandboxRecord, runtimes::Error>(|_| {
            Err(runtimes::Error::InvalidSpec("no".into()))
        })
        .unwrap_err();
    assert!(matches!(refused, runtimes::Error::InvalidSpec(_)));
    store
        .insert::<_, runtimes::Error>(|_| Ok(sandbox("aa", web.clone())))
        .unwrap();
    // The same ContainerId twice, or the same CRI id twice, is refused.
    let taken = store
        .insert::<_, runtimes::Error>(|_| Ok(sandbox("bb", web.clone())))
        .unwrap_err();
    assert!(taken.to_string().contains("already allocated"), "{taken}");
    let twice = store
        .insert::<_, runtimes::Error>(|_| Ok(sandbox("aa", web.with_replica(5))))
        .unwrap_err();
    assert!(
        matches!(twice, runtimes::Error::AlreadyExists { .. }),
        "{twice:?}"
    );
    assert_eq!(store.list::<SandboxRecord>().unwrap().len(), 1);
    assert_eq!(store.allocated_ids().unwrap().len(), 1);
    // An update may not change the identity.
    let moved = store
        .update::<SandboxRecord>("aa", |r| r.container_id = web.with_replica(9))
        .unwrap_err();
    assert!(moved.to_string().contains("identity"), "{moved}");
    assert_eq!(
        store
            .get::<SandboxRecord>("aa")
            .unwrap()
            .unwrap()
            .container_id,
        web
    );
}

#[test]
fn an_undecodable_object_record_is_data_loss_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .write(|txn| {
            txn.open_table(tables::CONTAINERS)?
                .insert("c0ffee", b"{not json".as_slice())?;
            Ok(())
        })
        .unwrap();
    let err = store.list::<ContainerRecord>().unwrap_err();
    assert!(matches!(err, runtimes::Error::DataLoss { .. }), "{err:?}");
    assert!(err.to_string().contains("c0ffee"), "{err}");
    assert!(store.get::<ContainerRecord>("c0ffee").is_err());
}

#[test]
fn a_pod_and_its_containers_go_in_one_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let web = id("web.default", "sandbox", 0);
    let db = id("db.default", "sandbox", 0);
    let insert = |record: ContainerRecord| {
        store.insert::<_, runtimes::Error>(|_| Ok(record)).unwrap();
    };
    for (pod, cid) in [("aa", &web), ("bb", &db)] {
        store
            .insert::<_, runtimes::Error>(|_| Ok(sandbox(pod, cid.clone())))
            .unwrap();
    }
    insert(container("c1", "aa", web.with_role("app").unwrap()));
    insert(container("c2", "aa", web.with_role("log").unwrap()));
    insert(container("c3", "bb", db.with_role("app").unwrap()));

    let containers = ["c1".to_string(), "c2".to_string()];
    store.remove_pod("aa", &containers).unwrap();
    // Removing again (kubelet's retry) and unknown ids are fine.
    store.remove_pod("aa", &containers).unwrap();
    let left: Vec<String> = store
        .list::<ContainerRecord>()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["c3"]);
    assert!(store.get::<SandboxRecord>("aa").unwrap().is_none());
    let ids: std::collections::BTreeSet<ContainerId> =
        store.allocated_ids().unwrap().into_keys().collect();
    assert_eq!(ids, [db.clone(), db.with_role("app").unwrap()].into());
}
