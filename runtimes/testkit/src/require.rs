//! What a test needs from the host, required loudly: a test that needs root, IPv6 on
//! loopback or a kernel feature calls one of these first and fails, naming what is
//! missing, when the host lacks it. None of berth's tests skips itself (see the crate
//! docs).

use std::net::{Ipv6Addr, TcpListener};

/// Fails the calling test unless it runs as root; `why` says what needs root.
pub fn root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root ({why}): run the tests as root, as CI does"
    );
}

/// Fails the calling test unless `[::1]` can be bound; a listener on a free port of it.
pub fn ipv6_loopback() -> TcpListener {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap_or_else(|e| {
        panic!("this test needs IPv6 on loopback ([::1] cannot be bound: {e}); CI has it")
    })
}
