//! `crictl exec -it` on a real terminal: typing, output, resize, exit code.

use std::time::Duration;

use crate::pty::PtyClient;
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

        client.resize(50, 132);
        // SIGWINCH reaches crictl asynchronously: ask until the new size shows.
        let mut seen = false;
        for _ in 0..50 {
            let mark = client.mark();
            client.type_text("stty size; echo asked-$((1+1))\r").await;
            client.expect(mark, "asked-2", WAIT).await;
            if client.output()[mark..].contains("50 132") {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            seen,
            "{transport}: the resize never arrived: {:?}",
            client.output()
        );

        let mark = client.mark();
        client.type_text("exit 7\r").await;
        let status = client.wait(WAIT).await;
        assert_eq!(status.code(), Some(1), "{transport}: {:?}", client.output());
        client.expect(mark, "exit code 7", WAIT).await;
    }
}
