//! The `Containerd` fixture itself: a task (run by `ctr` on a plain rootfs directory)
//! outlives a kill -9 of containerd and is found again after the restart, and dropping
//! the fixture leaves no task, shim, mount or directory behind.

use std::path::Path;

use berth_testkit::containerd::Containerd;
use berth_testkit::host::processes_mentioning;
use nix::mount::{mount, MsFlags};

/// The pid and status of task `id` in namespace `ns`, from `ctr tasks ls`.
fn task(containerd: &Containerd, ns: &str, id: &str) -> Option<(i32, String)> {
    let out = containerd.ctr(&["-n", ns, "tasks", "ls"]);
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

#[test]
fn a_task_outlives_kill9_and_drop_removes_everything() {
    let mut containerd = Containerd::start();
    let dir = containerd.dir().to_path_buf();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (hack/install-deps)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    containerd.ctr(&[
        "-n",
        "fixture",
        "run",
        "-d",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sleeper",
        "/bin/busybox",
        "sleep",
        "1000",
    ]);
    let (pid, status) = task(&containerd, "fixture", "sleeper").expect("task sleeper");
    assert_eq!(status, "RUNNING");
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
        task(&containerd, "fixture", "sleeper"),
        Some((pid, "RUNNING".to_string())),
        "containerd lost the task over its restart"
    );

    // What a shim that died leaves: a mount below containerd's directory.
    let left = dir.join("state/left-mount");
    std::fs::create_dir_all(&left).unwrap();
    mount(
        Some("tmpfs"),
        &left,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();

    drop(containerd);
    assert!(!alive(pid), "the task survived the fixture");
    assert_eq!(processes_mentioning(&socket), Vec::<String>::new());
    assert_eq!(mounts_below(&dir), Vec::<String>::new());
    assert!(!dir.exists(), "{} is still there", dir.display());
}
