//! nri-plugin: berth-testkit's NRI plugin ([`berth_testkit::nri_plugin`]) as a
//! program, printing a line per request it answered.
//!
//! ```text
//! nri-plugin --socket PATH --mode inject|reject|limit [--name NAME] [--idx NN]
//! ```
//!
//! Launched by the runtime (NRI's pre-installed plugins), it takes the connection
//! from the fd `NRI_PLUGIN_SOCKET` names and its name and index from
//! `NRI_PLUGIN_NAME` and `NRI_PLUGIN_IDX`, as NRI's Go stub does.

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use berth_testkit::nri_plugin::{run, run_on, Mode};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut socket, mut mode, mut name, mut idx) =
        (None, None, "berth-test".to_string(), "50".to_string());
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--socket" => socket = Some(value),
            "--mode" => mode = Some(value),
            "--name" => name = value,
            "--idx" => idx = value,
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let launched = std::env::var("NRI_PLUGIN_SOCKET").ok();
    if launched.is_some() {
        if let (Ok(n), Ok(i)) = (
            std::env::var("NRI_PLUGIN_NAME"),
            std::env::var("NRI_PLUGIN_IDX"),
        ) {
            (name, idx) = (n, i);
        }
    }
    let socket = match launched {
        Some(_) => String::new(),
        None => socket.unwrap_or_else(|| usage("--socket or NRI_PLUGIN_SOCKET is required")),
    };
    let mode = mode.unwrap_or_else(|| usage("--mode is required"));
    let mode = match mode.as_str() {
        "inject" => Mode::Inject,
        "reject" => Mode::Reject,
        "limit" => Mode::Limit,
        _ => usage("--mode is inject, reject or limit"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in rx {
            println!("{line}");
        }
    });
    let result = match std::env::var("NRI_PLUGIN_SOCKET") {
        Ok(fd) => {
            let fd: i32 = fd
                .parse()
                .unwrap_or_else(|_| usage("NRI_PLUGIN_SOCKET is not an fd number"));
            // SAFETY: the runtime that launched us passed this fd open, for us alone.
            let conn = unsafe { UnixStream::from_raw_fd(fd) };
            run_on(conn, mode, &name, &idx, tx)
        }
        Err(_) => run(&socket, mode, &name, &idx, tx),
    };
    if let Err(err) = result {
        eprintln!("nri-plugin: {err}");
        std::process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("nri-plugin: {why}\nusage: nri-plugin --socket PATH --mode inject|reject|limit [--name NAME] [--idx NN]");
    std::process::exit(2);
}
