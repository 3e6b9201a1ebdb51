//! Non-interactive exec: output, exit codes, stdin, errors.

use crate::{Harness, CTR, TRANSPORTS};

#[tokio::test]
async fn exec_carries_stdout_stderr_and_the_exit_code() {
    let h = Harness::start().await;
    for transport in TRANSPORTS {
        let script = "echo out; echo err >&2; exit 3";
        let run = h
            .crictl
            .run(
                &["exec", "--transport", transport, CTR, "sh", "-c", script],
                None,
            )
            .await;
        assert_eq!(run.stdout, "out\n", "{transport}: {}", run.stderr);
        assert!(run.stderr.contains("err\n"), "{transport}: {}", run.stderr);
        assert!(
            run.stderr.contains("command terminated with exit code 3"),
            "{transport}: {}",
            run.stderr
        );
        assert_eq!(run.code, Some(1), "{transport}: crictl fails");

        let ok = h
            .crictl
            .run(
                &["exec", "-r", transport, CTR, "sh", "-c", "echo fine"],
                None,
            )
            .await;
        assert_eq!(
            (ok.stdout.as_str(), ok.code),
            ("fine\n", Some(0)),
            "{transport}: {}",
            ok.stderr
        );
    }
}

#[tokio::test]
async fn exec_feeds_stdin_until_the_client_closes_it() {
    let h = Harness::start().await;
    // Large enough for many frames each way, with every byte value.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for transport in TRANSPORTS {
        let run = h
            .crictl
            .run(&["exec", "-i", "-r", transport, CTR, "cat"], Some(&input))
            .await;
        assert_eq!(run.code, Some(0), "{transport}: {}", run.stderr);
        assert!(
            run.raw_stdout == input,
            "{transport}: cat gave {} bytes back",
            run.raw_stdout.len()
        );
        let counted = h
            .crictl
            .run(
                &["exec", "-i", "-r", transport, CTR, "wc", "-c"],
                Some(&input),
            )
            .await;
        assert_eq!(
            counted.stdout.trim(),
            "300000",
            "{transport}: {}",
            counted.stderr
        );
    }
}

#[tokio::test]
async fn failures_reach_the_client_as_errors() {
    let h = Harness::start().await;
    for transport in TRANSPORTS {
        let missing = h
            .crictl
            .run(&["exec", "-r", transport, CTR, "/no/such/binary"], None)
            .await;
        assert_eq!(missing.code, Some(1), "{transport}");
        assert!(
            missing
                .stderr
                .contains("error executing command in container")
                && missing.stderr.contains("/no/such/binary"),
            "{transport}: {}",
            missing.stderr
        );
        let unknown = h
            .crictl
            .run(&["exec", "-r", transport, "nope", "true"], None)
            .await;
        assert_eq!(unknown.code, Some(1), "{transport}");
        assert!(
            unknown.stderr.contains("NotFound"),
            "{transport}: {}",
            unknown.stderr
        );
    }
}
