//! `crictl exec -it` on a real terminal: typing, output, resize, exit code.

use std::time::Duration;

use berth_testkit::pty::PtyClient;

use crate::{Harness, CTR, TRANSPORTS};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn interactive_exec_with_a_terminal() {
    let h = Harness::start().await;
    for transport in TRANSPORTS {
        let command = h
            .crictl
            .command(&["exec", "-it", "-r", transport, CTR, "sh"]);
        let mut client = PtyClient::spawn(command, 40, 100);
        // The client sends its terminal's size first; the remote shell sees it.
        client.type_text("stty size; echo typed-$((6*7))\r").await;
        let at = client.expect(0, "40 100", WAIT).await;
        client.expect(at, "typed-42", WAIT).await;

        client.resize_until_seen(50, 132, WAIT).await;
        client.exit_reported_by_crictl(7, WAIT).await;
    }
}
