//! Namespace pins: idempotent, distinct per key and kind, usable through
//! `in_namespace`, and gone from mountinfo after unpin.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use runtimes::network::{in_namespace, Network, NsKind};

use crate::Env;

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn pins_are_idempotent_separate_and_leave_no_mount() {
    let env = Env::default_network();
    let (a, b) = (env.key("a"), env.key("b"));
    for kind in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
        let pa = env.net.pin(kind, &a).unwrap();
        assert_eq!(
            env.net.pin(kind, &a).unwrap(),
            pa,
            "pinning again returns the pin"
        );
        assert_eq!(env.net.pin_path(kind, &a), pa);
        let pb = env.net.pin(kind, &b).unwrap();
        let own = match kind {
            NsKind::Net => "/proc/self/ns/net",
            NsKind::Ipc => "/proc/self/ns/ipc",
            NsKind::Uts => "/proc/self/ns/uts",
            NsKind::User => unreachable!("pinned only with what it owns (userns.rs)"),
        };
        // A pinned namespace file has the namespace's inode: new, and one per key.
        assert_ne!(
            inode(&pa),
            inode(Path::new(own)),
            "{kind:?} is a new namespace"
        );
        assert_ne!(inode(&pa), inode(&pb), "{kind:?} pins of two keys differ");
    }
    assert_eq!(env.pin_mounts().len(), 6, "{:#?}", env.pin_mounts());

    // The UTS pin is a namespace of its own: a hostname set inside stays inside.
    let uts = env.net.pin_path(NsKind::Uts, &a);
    let host = nix::unistd::gethostname().unwrap();
    let inside = in_namespace(NsKind::Uts, &uts, || {
        nix::unistd::sethostname("pod-a").unwrap();
        nix::unistd::gethostname().unwrap()
    })
    .unwrap();
    assert_eq!(inside, "pod-a");
    assert_eq!(nix::unistd::gethostname().unwrap(), host);
    let again = in_namespace(NsKind::Uts, &uts, || nix::unistd::gethostname().unwrap()).unwrap();
    assert_eq!(again, "pod-a", "the pin keeps the namespace alive");

    for kind in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
        for key in [&a, &b] {
            env.net.unpin(kind, key).unwrap();
            env.net.unpin(kind, key).unwrap();
            assert!(!env.net.pin_path(kind, key).exists());
        }
    }
    assert!(env.pin_mounts().is_empty(), "{:#?}", env.pin_mounts());
    assert!(env.net.pin(NsKind::Net, "../escape").is_err());

    // A restarted agent (a new Network on the same run dir) reuses the pin dir's mount
    // instead of stacking another one.
    let again = Network::new(env.config.clone(), &env.run_dir()).unwrap();
    let c = env.key("c");
    again.pin(NsKind::Net, &c).unwrap();
    let netns_dir = env.run_dir().join("netns");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir_mounts = mounts
        .lines()
        .filter(|l| l.split(' ').nth(4) == netns_dir.to_str())
        .count();
    assert_eq!(dir_mounts, 1, "{mounts}");
    again.unpin(NsKind::Net, &c).unwrap();
}
