//! `berth-youki-shim shim …`: the youki backend's supervisor, as a binary of its own
//! for this crate's integration tests (berth runs its own binary as `berth shim`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(cmd) if cmd == "shim" => runtimes::supervisor::main(args),
        _ => {
            eprintln!("usage: berth-youki-shim shim --pod-dir DIR --libcontainer-root DIR [--pid-namespace]");
            ExitCode::from(2)
        }
    }
}
