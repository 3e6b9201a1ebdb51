//! gRPC clients not written in Go: they send the socket's path (or a percent-encoded
//! form of it) as the HTTP/2 `:authority`, which berth must answer all the same.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use berth_proto::cri::v1::VersionResponse;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::world::World;
use crate::Home;

/// The verbs the Python client must get through, in order.
const VERBS: [&str; 11] = [
    "Version",
    "PullImage",
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ExecSync",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "ListPodSandbox",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
}

/// The venv `hack/install-deps --test` makes, with grpcio and grpcio-tools.
fn python() -> Result<PathBuf> {
    let python = repo().join("target/pyenv/bin/python");
    ensure!(
        python.is_file(),
        "no Python venv with grpcio at {}: run hack/install-deps --test",
        python.display()
    );
    Ok(python)
}

/// The CRI proto berth's services are compiled from.
fn cri_proto() -> Result<PathBuf> {
    let proto = repo().join("proto/cri.proto");
    ensure!(proto.is_file(), "{} is missing", proto.display());
    Ok(proto)
}

#[tokio::test]
async fn grpcio_runs_a_pod_with_its_default_channel_options() -> Result<()> {
    let python = python()?;
    let proto = cri_proto()?;
    let world = World::new().await?;
    // No pull here: the Python client pulls the image itself.
    let berth = world.home.start().await?;
    let before = world.host();
    let socket = world.home.socket();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/python/cri_client.py");
    // grpcio's two spellings of a unix socket target; both give `:authority` the
    // percent-encoded path.
    let targets = [
        format!("unix://{}", socket.display()),
        format!("unix:{}", socket.display()),
    ];
    for (i, target) in targets.iter().enumerate() {
        let name = format!("grpcio{i}");
        let run = tokio::process::Command::new(&python)
            .arg(&script)
            .arg("--proto")
            .arg(&proto)
            .args(["--target", target, "--image", &world.image, "--name", &name])
            .arg("--log-dir")
            .arg(world.log_dir(&name))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(300), run)
            .await
            .with_context(|| format!("the grpcio client on {target} took over 5 minutes"))??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.success(),
            "the grpcio client failed on {target} ({}):\n{stdout}{stderr}\nberth's log:\n{}",
            output.status,
            berth.stderr()
        );
        let done: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ok "))
            .collect();
        assert_eq!(done, VERBS, "on {target}:\n{stdout}");
        assert!(stdout.contains("all calls succeeded"), "{stdout}");
    }
    assert_eq!(world.host(), before);
    Ok(())
}

/// HPACK (RFC 7541): a literal field with incremental indexing, the name given as a
/// static index (`1..=61`) or, with 0, spelled out; plain strings under 127 bytes.
fn field(out: &mut Vec<u8>, name_index: u8, name: &str, value: &str) {
    out.push(0x40 | name_index);
    if name_index == 0 {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `Version` by hand over one HTTP/2 connection, one stream per authority: each must
/// get a gRPC message back, not a reset.
#[tokio::test]
async fn raw_http2_calls_with_any_authority_are_answered() -> Result<()> {
    let home = Home::new("")?;
    let _berth = home.start().await?;
    let authorities = [
        "%2Frun%2Fberth.sock",
        "/run/berth.sock",
        "tmp%2Frun%2Fberth.sock",
        "localhost",
    ];
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend(frame(0x4, 0, 0, &[]));
    for (i, authority) in authorities.iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        field(&mut block, 4, ":path", "/runtime.v1.RuntimeService/Version");
        field(&mut block, 1, ":authority", authority);
        field(&mut block, 31, "content-type", "application/grpc");
        field(&mut block, 0, "te", "trailers");
        request.extend(frame(0x1, 0x4, stream, &block));
        // An empty VersionRequest, END_STREAM.
        request.extend(frame(0x0, 0x1, stream, &[0, 0, 0, 0, 0]));
    }
    let mut socket = tokio::net::UnixStream::connect(home.socket()).await?;
    socket.write_all(&request).await?;

    let mut answered = Vec::new();
    let mut input = Vec::new();
    let read = async {
        while answered.len() < authorities.len() {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await?;
            ensure!(n > 0, "berth closed the connection; answered {answered:?}");
            input.extend_from_slice(&chunk[..n]);
            while input.len() >= 9 {
                let len = usize::from(input[0]) << 16
                    | usize::from(input[1]) << 8
                    | usize::from(input[2]);
                if input.len() < 9 + len {
                    break;
                }
                let stream = u32::from_be_bytes([input[5], input[6], input[7], input[8]]);
                let authority = authorities[(stream.max(1) as usize - 1) / 2];
                match input[3] {
                    0x3 => bail!("berth reset the call with :authority {authority:?}"),
                    0x0 if len > 5 => {
                        let version = VersionResponse::decode(&input[9 + 5..9 + len])?;
                        assert_eq!(version.runtime_name, "berth", "{authority:?}");
                        answered.push(authority);
                    }
                    _ => {}
                }
                input.drain(..9 + len);
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("berth did not answer within 10 s")??;
    // The calls run concurrently: answers come in any order.
    answered.sort();
    let mut expected = authorities.to_vec();
    expected.sort();
    assert_eq!(answered, expected);
    Ok(())
}
