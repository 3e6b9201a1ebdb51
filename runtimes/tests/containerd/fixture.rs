//! The `Containerd` fixture itself: a task (run by `ctr` on a plain rootfs directory)
//! outlives a kill -9 of containerd and is found again after the restart, and dropping
//! the fixture, with containerd up or killed, leaves no task, shim, mount, cgroup or
//! directory behind.

use std::path::{Path, PathBuf};

use berth_testkit::containerd::Containerd;
use berth_testkit::host::{cgroup_dirs, processes_mentioning, random};
use nix::mount::{mount, MsFlags};

/// A task running `sleep` in namespace `fixture`: its id and pid. No IO, runc's state
/// below containerd's directory and a cgroup that is the task's own (ctr's default,
/// /<namespace>/<id>, would leave /<namespace>), so nothing lands outside that
/// directory.
fn sleeper(containerd: &Containerd) -> (String, i32) {
    let dir = containerd.dir();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (hack/install-deps)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let id = format!("berth-fixture-{}", random());
    let runc_root = dir.join("runc");
    containerd.ctr(&[
        "-n",
        "fixture",
        "run",
        "-d",
        "--null-io",
        "--cgroup",
        "",
        "--runc-root",
        runc_root.to_str().unwrap(),
        "--rootfs",
        rootfs.to_str().unwrap(),
        &id,
        "/bin/busybox",
        "sleep",
        "1000",
    ]);
    let (pid, status) = task(containerd, &id).expect("the task");
    assert_eq!(status, "RUNNING");
    (id, pid)
}

/// The pid and status of task `id` in namespace `fixture`, from `ctr tasks ls`.
fn task(containerd: &Containerd, id: &str) -> Option<(i32, String)> {
    let out = containerd.ctr(&["-n", "fixture", "tasks", "ls"]);
    out.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.first() == Some(&id)).then(|| (fields[1].parse().unwrap(), fields[2].to_string()))
    })
}

/// Whether `pid` runs (not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|target| target.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Drops `containerd` and checks that nothing of it or of task `id` (pid `pid`) is left.
fn drop_leaves_nothing(containerd: Containerd, id: &str, pid: i32) {
    let dir = containerd.dir().to_path_buf();
    let socket = containerd.socket().display().to_string();
    drop(containerd);
    assert!(!alive(pid), "the task survived the fixture");
    assert_eq!(processes_mentioning(&socket), Vec::<String>::new());
    assert_eq!(mounts_below(&dir), Vec::<String>::new());
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(cgroup_dirs(id), Vec::<PathBuf>::new());
}

#[test]
fn a_task_outlives_kill9_and_drop_removes_everything() {
    let mut containerd = Containerd::start();
    let (id, pid) = sleeper(&containerd);
    // Its shim: the one of containerd's own version, serving this containerd.
    let socket = containerd.socket().display().to_string();
    let shims = processes_mentioning(&format!("-address {socket}"));
    assert_eq!(shims.len(), 1, "{shims:?}");
    assert!(
        shims[0].contains("containerd-v2.4.2/bin/containerd-shim-runc-v2"),
        "{shims:?}"
    );

    containerd.kill9();
    assert!(alive(pid), "the task died with containerd");
    containerd.restart();
    assert_eq!(
        task(&containerd, &id),
        Some((pid, "RUNNING".to_string())),
        "containerd lost the task over its restart"
    );

    // What a shim that died leaves: a mount below containerd's directory.
    let left = containerd.dir().join("state/left-mount");
    std::fs::create_dir_all(&left).unwrap();
    mount(
        Some("tmpfs"),
        &left,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    drop_leaves_nothing(containerd, &id, pid);
}

#[test]
fn drop_after_kill9_ends_the_orphaned_task() {
    let mut containerd = Containerd::start();
    let (id, pid) = sleeper(&containerd);
    containerd.kill9();
    // Only containerd can end the task cleanly: the purge starts it again for that.
    drop_leaves_nothing(containerd, &id, pid);
}
