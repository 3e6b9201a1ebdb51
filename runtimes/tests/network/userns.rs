//! A pod user namespace: pinned with the network, IPC and UTS namespaces made inside
//! it (so owned by it), mapped as asked, attachable by CNI, and gone after unpin. A
//! failure leaves no pin.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use runtimes::network::NsKind;
use runtimes::types::IdMapping;

use crate::{fetch, free_ports, pod, run, serve_in, Env};

const INNER: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];

/// The inode of the user namespace owning the namespace at `path` (`NS_GET_USERNS`).
fn owner(path: &Path) -> u64 {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let ns = File::open(path).unwrap();
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor we own.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "{}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor returned by the kernel.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    File::from(owned).metadata().unwrap().ino()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[tokio::test]
async fn a_pod_user_namespace_owns_its_pinned_namespaces() {
    let env = Env::default_network();
    let before = env.snapshot();
    let key = env.key("userns");
    let maps = [IdMapping::new(0, 1000, 65536)];
    let user = env.net.pin_with_userns(&key, &maps, &maps, &INNER).unwrap();
    assert_eq!(user, env.net.pin_path(NsKind::User, &key));
    assert_ne!(inode(&user), inode(Path::new("/proc/self/ns/user")));
    for kind in INNER {
        let pin = env.net.pin_path(kind, &key);
        assert_eq!(owner(&pin), inode(&user), "{kind:?} is owned by the pod's");
    }
    let pin = format!("--user={}", user.display());
    let uid_map = run("nsenter", &[&pin, "cat", "/proc/self/uid_map"]);
    let gid_map = run("nsenter", &[&pin, "cat", "/proc/self/gid_map"]);
    for map in [uid_map, gid_map] {
        assert_eq!(
            map.split_whitespace().collect::<Vec<_>>(),
            ["0", "1000", "65536"]
        );
    }
    let again = env.net.pin_with_userns(&key, &maps, &maps, &INNER).unwrap();
    assert_eq!(
        inode(&again),
        inode(&user),
        "pinning again keeps the namespaces"
    );

    // CNI attaches the namespace like any other; the pod answers on its IP.
    let netns = env.net.pin_path(NsKind::Net, &key);
    let net = pod("userns", free_ports(1)[0], 8080);
    let att = env.net.attach(&key, &netns, &net).await.unwrap();
    let server = serve_in(&netns, 8080, "from a user namespace", 1);
    let ip: IpAddr = att.ips[0].parse().unwrap();
    assert_eq!(
        fetch(SocketAddr::new(ip, 8080)).unwrap(),
        "from a user namespace"
    );
    server.join().unwrap();
    env.net.detach(&key, Some(&netns), &net).await.unwrap();

    for kind in INNER.into_iter().chain([NsKind::User]) {
        env.net.unpin(kind, &key).unwrap();
        assert!(!env.net.pin_path(kind, &key).exists());
    }
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_refused_mapping_leaves_no_pin() {
    let env = Env::default_network();
    let key = env.key("badmap");
    // Two ranges overlapping inside: the kernel refuses the uid_map write.
    let bad = [IdMapping::new(0, 1000, 10), IdMapping::new(5, 5000, 10)];
    let err = env
        .net
        .pin_with_userns(&key, &bad, &bad, &INNER)
        .unwrap_err()
        .to_string();
    assert!(err.contains("uid_map"), "{err}");
    for kind in INNER.into_iter().chain([NsKind::User]) {
        assert!(!env.net.pin_path(kind, &key).exists(), "{kind:?} pin left");
    }
    assert!(env.pin_mounts().is_empty(), "{:#?}", env.pin_mounts());
    assert!(
        env.net.pin(NsKind::User, &key).is_err(),
        "never pinned alone"
    );
}
