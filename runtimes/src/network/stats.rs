//! Interface counters of a pod, read inside its network namespace.

use std::path::Path;

use super::ns::{in_namespace, NsKind};
use crate::error::{Error, IoContext, Result};
use crate::types::NetworkStats;

/// The counters of `ifname` in the network namespace at `netns`. They come from
/// `/proc/thread-self/net/dev` read by a thread inside the namespace: sysfs would show the
/// namespace of whoever mounted it, not the reader's.
pub(crate) fn interface_stats(netns: &Path, ifname: &str) -> Result<NetworkStats> {
    let text = in_namespace(NsKind::Net, netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })?
    .io_context(|| format!("reading the interface counters of {}", netns.display()))?;
    parse_net_dev(&text, ifname).ok_or_else(|| {
        Error::not_found(
            "network interface",
            format!("{ifname} in {}", netns.display()),
        )
    })
}

/// The line for `ifname` of a `/proc/net/dev` table: after `name:`, 8 receive columns
/// (bytes packets errs drop fifo frame compressed multicast) then 8 transmit columns.
pub(crate) fn parse_net_dev(text: &str, ifname: &str) -> Option<NetworkStats> {
    text.lines().skip(2).find_map(|line| {
        let (name, counters) = line.split_once(':')?;
        if name.trim() != ifname {
            return None;
        }
        let n: Vec<u64> = counters
            .split_whitespace()
            .map(|c| c.parse().ok())
            .collect::<Option<_>>()?;
        (n.len() >= 16).then(|| NetworkStats {
            interface: ifname.to_string(),
            rx_bytes: n[0],
            rx_errors: n[2],
            tx_bytes: n[8],
            tx_errors: n[10],
            rx_packets: n[1],
            rx_dropped: n[3],
            tx_packets: n[9],
            tx_dropped: n[11],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0: 1234567    9012    3    4    0     0          0         1    76543     210    5    0    0     0       0          0
";

    #[test]
    fn counters_of_the_named_interface() {
        assert_eq!(
            parse_net_dev(DEV, "eth0"),
            Some(NetworkStats {
                interface: "eth0".into(),
                rx_bytes: 1234567,
                rx_errors: 3,
                tx_bytes: 76543,
                tx_errors: 5,
                rx_packets: 9012,
                rx_dropped: 4,
                tx_packets: 210,
                tx_dropped: 0,
            })
        );
        assert_eq!(parse_net_dev(DEV, "lo").unwrap().tx_bytes, 140);
        assert_eq!(parse_net_dev(DEV, "eth1"), None);
        assert_eq!(parse_net_dev(DEV, "eth"), None);
        assert_eq!(parse_net_dev("x\ny\n  eth0: 1 2 3\n", "eth0"), None);
    }
}
