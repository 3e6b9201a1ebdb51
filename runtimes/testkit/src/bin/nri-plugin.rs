//! nri-plugin: berth-testkit's NRI plugin ([`berth_testkit::nri_plugin`]) as a
//! program, printing a line per request it answered.
//!
//! ```text
//! nri-plugin --socket PATH --mode inject|reject|limit [--name NAME] [--idx NN]
//! ```

use berth_testkit::nri_plugin::{run, Mode};

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
    let socket = socket.unwrap_or_else(|| usage("--socket is required"));
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
    if let Err(err) = run(&socket, mode, &name, &idx, tx) {
        eprintln!("nri-plugin: {err}");
        std::process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("nri-plugin: {why}\nusage: nri-plugin --socket PATH --mode inject|reject|limit [--name NAME] [--idx NN]");
    std::process::exit(2);
}
