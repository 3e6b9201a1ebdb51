//! Integration tests of the containerd backend against a real containerd of the test's
//! own (`berth_testkit::containerd`: 2.4 built by `hack/containerd build`, or Debian's
//! 1.6), as root. Each test starts its own containerd in a temp dir, on its own socket,
//! so tests run in parallel; dropping the fixture removes what containerd held.

mod connect;
mod fixture;
mod task;
