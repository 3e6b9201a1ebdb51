//! The delegate backend, black-box: a node berth runs the pods of runtime handler
//! `wsl2` on a second berth (`berth delegate`, its own state, run dir, bridge and
//! subnet) over the delegate protocol, on a unix socket or TCP with mutual TLS. The
//! delegate killed with SIGKILL leaves the node serving its own pods and naming the
//! delegate in its refusals; back, it reports its pods again. Pods this node cannot
//! run are refused with ROUTE_TO_PEER details.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_proto::cri::v1::*;
use berth_proto::delegate::delegate_client::DelegateClient;
use berth_proto::delegate::HandshakeRequest;
use berth_testkit::host;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use tonic_types::StatusExt;

use crate::world::{
    container_status, create_and_start, exec, pod_status, remove_all_pods, run_on, Client, World,
};

const STARTUP: Duration = Duration::from_secs(20);

/// A running `berth delegate` with a home of its own inside the world's directory
/// (swept with it), and its own bridge and subnet.
struct Delegate {
    child: Option<Child>,
    config: PathBuf,
    stderr: PathBuf,
    bridge: String,
    /// The network namespace (`/run/netns/<name>`) it runs in, if not the host's.
    netns: Option<String>,
}

impl Delegate {
    /// The delegate's home for `world`, serving as the `delegate:` lines say.
    fn home(world: &World, serve: &str) -> Result<Delegate> {
        Delegate::home_in(world, serve, None)
    }

    /// [`Delegate::home`] in the network namespace `netns`, pulling through `mirror`
    /// (`host:port` reachable from there) instead of the world's registry.
    fn home_in(world: &World, serve: &str, netns: Option<(&Netns, &str)>) -> Result<Delegate> {
        let dir = world.dir().join("delegate");
        fs::create_dir_all(&dir)?;
        let registry = world
            .image
            .split('/')
            .next()
            .context("image without host")?;
        let x = host::free_subnet_octet(100..150);
        let bridge = format!("bd{}", world.tag);
        let config = format!(
            "socket: {d}/cri.sock\nstate_dir: {d}/state\nrun_dir: {d}/run\nnode_id: delegate-{tag}\n\
             cgroup_parent: {cg}\nnetwork:\n  conf_dir: {d}/cni\n  default_bridge: {bridge}\n  \
             default_subnet: 10.{x}.0.0/16\nregistries:\n  insecure: [\"{registry}\"{mirror_host}]\n{mirrors}\
             log:\n  level: info,berth=debug\ndelegate:\n{serve}",
            d = dir.display(),
            tag = world.tag,
            cg = world.cgroup_parent,
            mirror_host = netns.map_or(String::new(), |(_, m)| format!(", \"{m}\"")),
            mirrors = netns.map_or(String::new(), |(_, m)| {
                format!("  mirrors:\n    \"{registry}\": [\"http://{m}\"]\n")
            }),
        );
        let path = dir.join("config.yaml");
        fs::write(&path, config)?;
        Ok(Delegate {
            child: None,
            config: path,
            stderr: dir.join("delegate.stderr"),
            bridge,
            netns: netns.map(|(n, _)| n.name.clone()),
        })
    }

    fn spawn(&mut self) -> Result<()> {
        let berth = env!("CARGO_BIN_EXE_berth");
        let mut command = match &self.netns {
            // Only the network namespace: the delegate shares the node's mounts (its
            // pods' log files are the node's) as a WSL2 VM shares the Windows drives.
            Some(name) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{name}")).arg(berth);
                c
            }
            None => Command::new(berth),
        };
        command
            .args(["delegate", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                File::options()
                    .create(true)
                    .append(true)
                    .open(&self.stderr)?,
            );
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(command.spawn()?);
        Ok(())
    }

    /// Starts it and waits until `connect` gets a handshake.
    async fn start<F, Fut>(&mut self, connect: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<DelegateClient<Channel>>>,
    {
        self.spawn()?;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().context("not started")?.try_wait()? {
                bail!("delegate exited with {status}: {}", self.log());
            }
            if let Ok(mut client) = connect().await {
                if client.handshake(handshake()).await.is_ok() {
                    return Ok(());
                }
            }
            ensure!(
                start.elapsed() < STARTUP,
                "delegate did not serve within {STARTUP:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Delegate {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
    }
}

/// A network namespace of its own for the delegate, joined to the host by a veth
/// pair: the host is `host_ip`, the delegate `delegate_ip` (a /30).
struct Netns {
    name: String,
    veth: String,
    host_ip: String,
    delegate_ip: String,
}

impl Netns {
    fn make(tag: &str) -> Result<Netns> {
        let x = host::free_subnet_octet(100..150);
        let netns = Netns {
            name: format!("berth-d-{tag}"),
            veth: format!("vh{tag}"),
            host_ip: format!("10.{x}.0.1"),
            delegate_ip: format!("10.{x}.0.2"),
        };
        let peer = format!("vd{tag}");
        let ip = |args: &[&str]| -> Result<()> {
            let out = Command::new("ip").args(args).output()?;
            ensure!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        let n = netns.name.as_str();
        ip(&["netns", "add", n])?;
        ip(&[
            "link",
            "add",
            &netns.veth,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", n])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_ip),
            "dev",
            &netns.veth,
        ])?;
        ip(&["link", "set", &netns.veth, "up"])?;
        let inside = format!("{}/30", netns.delegate_ip);
        ip(&["-n", n, "addr", "add", &inside, "dev", &peer])?;
        ip(&["-n", n, "link", "set", &peer, "up"])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Forwards `host_ip:<port>` to `upstream` on the host's loopback (the test
    /// registry), for the delegate to pull from; the port.
    async fn forward(&self, upstream: String) -> Result<u16> {
        let listener = tokio::net::TcpListener::bind(format!("{}:0", self.host_ip)).await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Ok(port)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
    }
}

fn handshake() -> HandshakeRequest {
    HandshakeRequest {
        protocol: 1,
        node: "test".into(),
    }
}

async fn unix_client(socket: &Path) -> Result<DelegateClient<Channel>> {
    let path = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::1]:1")?
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(DelegateClient::new(channel))
}

/// The `RuntimeHandlerReady/<handler>` condition.
async fn handler_condition(client: &mut Client, handler: &str) -> Result<RuntimeCondition> {
    let status = client
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner();
    let conditions = status.status.context("no status")?.conditions;
    let kind = format!("RuntimeHandlerReady/{handler}");
    conditions
        .into_iter()
        .find(|c| c.r#type == kind)
        .with_context(|| format!("no condition {kind}"))
}

async fn wait_for_log(path: &Path, needle: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "log {} holds {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod and container names the youki records of the berth at `state` hold.
fn youki_pods(state: &Path) -> Vec<String> {
    berth_testkit::names(&state.join("youki/pods"))
}

/// Pushes a one-layer image whose config says `os: windows` to the world's registry;
/// its reference.
async fn windows_image(world: &World) -> Result<String> {
    use berth_testkit::images::{busybox_layer, image_for_os, push, OCI_MANIFEST};
    let registry = world
        .image
        .split('/')
        .next()
        .context("image without host")?;
    let image = image_for_os("windows", vec![busybox_layer()], &["cmd"], OCI_MANIFEST);
    push(registry, "nanoserver", "ltsc2022", &image).await;
    Ok(format!("{registry}/nanoserver:ltsc2022"))
}

/// The ErrorInfo of a ROUTE_TO_PEER refusal (FailedPrecondition); an error for any
/// other answer.
fn route_to_peer(refused: &tonic::Status) -> Result<tonic_types::ErrorInfo> {
    ensure!(refused.code() == Code::FailedPrecondition, "{refused:?}");
    let info = refused.get_details_error_info().context("no ErrorInfo")?;
    ensure!(info.reason == "ROUTE_TO_PEER", "{info:?}");
    Ok(info)
}

/// `PullImage` of `image` is refused with ROUTE_TO_PEER naming windows.
async fn pull_is_routed_to_peer(berth: &crate::Berth, image: &str) -> Result<()> {
    let refused = crate::pull(&mut berth.images().await?, image)
        .await
        .unwrap_err();
    let info = route_to_peer(&refused)?;
    ensure!(info.metadata["image_os"] == "windows", "{info:?}");
    ensure!(
        refused.message().contains("kubernetes.io/os: windows"),
        "{}",
        refused.message()
    );
    Ok(())
}

fn delegate_backend(address: &str, tls: &str) -> String {
    format!(
        "backends:\n  delegate:\n    handler: wsl2\n    address: {address}\n    os: [linux]\n{tls}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsl2_pods_run_on_the_delegate_and_survive_its_loss() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("d.sock");
    let address = format!("unix://{}", socket.display());
    let world = World::with_config(&delegate_backend(&address, "")).await?;
    let mut delegate = Delegate::home(&world, &format!("  socket: {}\n", socket.display()))?;
    delegate.start(|| unix_client(&socket)).await?;
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;
    ensure!(handler_condition(&mut client, "wsl2").await?.status);

    let mut pods = Vec::new();
    for (name, handler) in [("on-delegate", "wsl2"), ("on-node", "")] {
        let pod_config = world.pod(name, &[]);
        let pod = run_on(&mut client, &pod_config, handler).await?;
        let script = format!("echo hello from {name}; while :; do sleep 1; done");
        let config = world.container("main", &["sh", "-c", &script]);
        let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
        pods.push((name, pod, id));
    }
    // The delegate's pod is the delegate's (its records), the node's the node's.
    let delegate_state = world.dir().join("delegate/state");
    ensure!(
        youki_pods(&delegate_state).len() == 1,
        "{:?}",
        youki_pods(&delegate_state)
    );
    ensure!(youki_pods(&world.dir().join("state")).len() == 1);

    // Logs at the node's log path, exec with exit codes, status: the same on both.
    for (name, _, id) in &pods {
        let log = world.log_dir(name).join("main.log");
        wait_for_log(&log, &format!(" stdout F hello from {name}\n")).await?;
        let out = exec(
            &mut client,
            id,
            &["sh", "-c", "hostname; echo e >&2; exit 3"],
        )
        .await?;
        ensure!(out.exit_code == 3, "{name}: exit {}", out.exit_code);
        ensure!(
            String::from_utf8_lossy(&out.stdout).trim() == *name,
            "{name}: {out:?}"
        );
        ensure!(out.stderr == b"e\n", "{name}: {out:?}");
        let (status, _) = container_status(&mut client, id).await?;
        ensure!(
            status.state == ContainerState::ContainerRunning as i32,
            "{name}: {status:?}"
        );
    }

    // In-place pod resize reaches the delegate's pod over the delegate protocol.
    for (name, pod, _) in &pods {
        let resized = client
            .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: pod.clone(),
                overhead: None,
                resources: Some(LinuxContainerResources {
                    cpu_shares: 300,
                    memory_limit_in_bytes: 200 << 20,
                    ..Default::default()
                }),
            })
            .await;
        ensure!(resized.is_ok(), "{name}: {resized:?}");
    }

    // Interactive exec through the node's streaming server, bridged to the delegate's
    // gRPC stream: stdin, its close, stdout, stderr, the exit code.
    let crictl = berth_testkit::crictl::Crictl::new(world.home.dir.path(), &world.home.socket());
    for (name, _, id) in &pods {
        let run = crictl
            .run(
                &["exec", "-i", id, "sh", "-c", "cat; echo err >&2; exit 5"],
                Some(b"piped\n"),
            )
            .await;
        // crictl reports the command's exit code in its message (and exits 1).
        ensure!(
            run.stderr.contains("exit code 5"),
            "{name}: exit {:?}: {}",
            run.code,
            run.stderr
        );
        ensure!(run.stdout == "piped\n", "{name}: stdout {:?}", run.stdout);
        ensure!(
            run.stderr.contains("err"),
            "{name}: stderr {:?}",
            run.stderr
        );
    }

    // A terminal: its size, resizes and the exit code cross the delegate too.
    let (_, _, on_delegate) = &pods[0];
    for transport in ["spdy", "websocket"] {
        let command = crictl.command(&["exec", "-it", "-r", transport, on_delegate, "sh"]);
        let mut pty = berth_testkit::pty::PtyClient::spawn(command, 40, 100);
        let wait = Duration::from_secs(20);
        pty.type_text("stty size; echo typed-$((6*7))\r").await;
        let at = pty.expect(0, "40 100", wait).await;
        pty.expect(at, "typed-42", wait).await;
        pty.resize_until_seen(50, 132, wait).await;
        pty.exit_reported_by_crictl(7, wait).await;
    }

    // Port-forward into the delegate's pod, over both transports of the streaming
    // server, bridged to the delegate's gRPC stream.
    let (_, on_delegate_pod, _) = &pods[0];
    let web = world.container("web", &["httpd", "-f", "-p", "8080", "-h", "/"]);
    let pod_config = world.pod("on-delegate", &[]);
    create_and_start(&mut client, on_delegate_pod, &pod_config, &web).await?;
    for transport in ["spdy", "websocket"] {
        let local = berth_testkit::servers::free_port();
        let mapping = format!("{local}:8080");
        let _forward = crictl
            .command(&["port-forward", "-r", transport, on_delegate_pod, &mapping])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut last = String::new();
        for _ in 0..100 {
            match crate::world::http_get(&format!("127.0.0.1:{local}")).await {
                Ok(answer) if answer.starts_with("HTTP/1.") => {
                    last.clear();
                    break;
                }
                Ok(answer) => last = answer,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            last.is_empty(),
            "{transport}: no answer through port-forward: {last}"
        );
    }

    // A Windows image: neither youki nor the (Linux) delegate runs it.
    let image = windows_image(&world).await?;
    pull_is_routed_to_peer(&berth, &image).await?;

    // The delegate dies: its handler is not ready, its pods' calls are Unavailable
    // naming it, a new pod for it is refused before anything is made, the node's own
    // pods are fine.
    delegate.kill9()?;
    let condition = handler_condition(&mut client, "wsl2").await?;
    ensure!(!condition.status, "{condition:?}");
    ensure!(condition.message.contains(&address), "{condition:?}");
    let (_, _, on_delegate) = &pods[0];
    let err = exec(&mut client, on_delegate, &["true"]).await.unwrap_err();
    ensure!(err.code() == Code::Unavailable, "{err:?}");
    ensure!(err.message().contains(&address), "{err:?}");
    let (_, on_delegate_pod, _) = &pods[0];
    let state = pod_status(&mut client, on_delegate_pod)
        .await?
        .status
        .context("no status")?
        .state;
    ensure!(
        state == PodSandboxState::SandboxNotready as i32,
        "state {state}"
    );
    let (_, _, on_node) = &pods[1];
    ensure!(exec(&mut client, on_node, &["true"]).await?.exit_code == 0);
    let refused = run_on(&mut client, &world.pod("late", &[]), "wsl2")
        .await
        .unwrap_err();
    let info = route_to_peer(&refused)?;
    ensure!(info.metadata["handler"] == "wsl2", "{info:?}");
    ensure!(youki_pods(&delegate_state).len() == 1);

    // The node restarts (a crash) while its delegate is down: it comes up, keeps
    // the delegate's pod (its state unknown, not gone) and serves its own.
    drop(client);
    drop(berth);
    berth = world.start_as("berth-2").await?;
    let mut client = berth.runtime().await?;
    ensure!(exec(&mut client, on_node, &["true"]).await?.exit_code == 0);
    let listed = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    ensure!(listed.len() == 2, "{listed:?}");

    // Back: the delegate recovered its pod, which runs and answers again.
    delegate.start(|| unix_client(&socket)).await?;
    ensure!(handler_condition(&mut client, "wsl2").await?.status);
    let (status, _) = container_status(&mut client, on_delegate).await?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    let out = exec(&mut client, on_delegate, &["hostname"]).await?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "on-delegate",
        "{out:?}"
    );
    let state = pod_status(&mut client, on_delegate_pod)
        .await?
        .status
        .context("no status")?
        .state;
    ensure!(
        state == PodSandboxState::SandboxReady as i32,
        "state {state}"
    );
    let listed = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    ensure!(listed.len() == 2, "{listed:?}");

    // ExecSync latency through the delegate and on the node, for the record.
    for (name, _, id) in &pods {
        let mut times = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            exec(&mut client, id, &["true"]).await?;
            times.push(start.elapsed());
        }
        times.sort();
        eprintln!("exec p50 {name}: {:?}", times[times.len() / 2]);
    }

    remove_all_pods(&mut client).await?;
    ensure!(
        youki_pods(&delegate_state).is_empty(),
        "{:?}",
        youki_pods(&delegate_state)
    );
    ensure!(youki_pods(&world.dir().join("state")).is_empty());
    Ok(())
}

/// Certificates made with the openssl CLI: a CA, the delegate's server certificate
/// (for 127.0.0.1), a node client certificate, and a client certificate of another CA.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Result<Certs> {
        fs::create_dir_all(dir)?;
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()?;
            ensure!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut args = vec!["req", "-x509", "-days", "2", "-subj"];
            let subject = format!("/CN={ca}");
            args.push(&subject);
            args.extend(key);
            let (k, c) = (format!("{ca}.key"), format!("{ca}.crt"));
            args.extend(["-keyout", &k, "-out", &c]);
            openssl(&args)?;
        }
        fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:delegate\n",
        )?;
        fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )?;
        for (name, ca, ext) in [
            ("server", "ca", "server.ext"),
            ("client", "ca", "client.ext"),
            ("stranger", "other-ca", "client.ext"),
        ] {
            let (k, csr, c) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let subject = format!("/CN={name}");
            let mut args = vec!["req", "-subj", &subject];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &csr]);
            openssl(&args)?;
            let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &c,
            ])?;
        }
        Ok(Certs {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        Ok(fs::read(self.path(name))?)
    }

    /// A client of the delegate at `addr` presenting `identity` (none: no certificate).
    async fn client(&self, addr: &str, identity: Option<&str>) -> Result<DelegateClient<Channel>> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.read("ca.crt")?))
            .domain_name("delegate");
        if let Some(name) = identity {
            tls = tls.identity(Identity::from_pem(
                self.read(&format!("{name}.crt"))?,
                self.read(&format!("{name}.key"))?,
            ));
        }
        let channel = Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(DelegateClient::new(channel))
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_a_client_certificate_of_the_nodes_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = Certs::make(&dir.path().join("pki"))?;
    // The delegate in a network namespace of its own, as a VM on the node: the node
    // reaches it over a veth pair, TCP with mutual TLS.
    let netns = Netns::make(&format!("{:08x}", host::random()))?;
    let addr = format!("{}:{}", netns.delegate_ip, free_port()?);
    let tls = format!(
        "    tls:\n      ca: {}\n      cert: {}\n      key: {}\n      server_name: delegate\n",
        certs.path("ca.crt").display(),
        certs.path("client.crt").display(),
        certs.path("client.key").display()
    );
    let world = World::with_config(&delegate_backend(&format!("https://{addr}"), &tls)).await?;
    let serve = format!(
        "  socket: null\n  tcp: \"{addr}\"\n  tls:\n    cert: {}\n    key: {}\n    client_ca: {}\n",
        certs.path("server.crt").display(),
        certs.path("server.key").display(),
        certs.path("ca.crt").display()
    );
    let registry = world
        .image
        .split('/')
        .next()
        .context("image without host")?;
    let mirror = format!(
        "{}:{}",
        netns.host_ip,
        netns.forward(registry.to_string()).await?
    );
    let mut delegate = Delegate::home_in(&world, &serve, Some((&netns, &mirror)))?;
    delegate
        .start(|| certs.client(&addr, Some("client")))
        .await?;

    // No certificate, or one of another CA: refused.
    for (identity, alert) in [
        (None, "CertificateRequired"),
        (Some("stranger"), "UnknownCA"),
    ] {
        let refused = match certs.client(&addr, identity).await {
            Err(e) => format!("{e:#}"),
            Ok(mut client) => match client.handshake(handshake()).await {
                Ok(answer) => bail!("{identity:?} was served: {answer:?}"),
                Err(status) => format!("{status:?}"),
            },
        };
        // Refused in the TLS handshake: the alert says why, though the client may see
        // the connection closed (or its write fail) before it reads the alert.
        let in_tls = [alert, "connection closed", "broken pipe"]
            .iter()
            .any(|why| refused.contains(why));
        ensure!(in_tls, "{identity:?}: {refused}");
    }

    // The node with its certificate: the handler is ready and a pod runs there.
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let condition = handler_condition(&mut client, "wsl2").await?;
    ensure!(condition.status, "{condition:?}");
    let pod_config = world.pod("over-tls", &[]);
    let pod = run_on(&mut client, &pod_config, "wsl2").await?;
    let config = world.container("main", &["sh", "-c", "while :; do sleep 1; done"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
    let out = exec(&mut client, &id, &["hostname"]).await?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "over-tls",
        "{out:?}"
    );
    let delegate_state = world.dir().join("delegate/state");
    ensure!(youki_pods(&delegate_state).len() == 1);
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        exec(&mut client, &id, &["true"]).await?;
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "exec p50 over TCP+mTLS to a delegate in its own netns: {:?}",
        times[10]
    );

    // Its pod is in the delegate's network namespace: the address is on its bridge.
    let ip = pod_status(&mut client, &pod)
        .await?
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    ensure!(!ip.is_empty(), "no pod address");
    remove_all_pods(&mut client).await?;
    drop(delegate);
    drop(netns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tcp_delegate_does_not_hold_status() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = Certs::make(&dir.path().join("pki"))?;
    // A TCP peer that takes connections and never answers (a VM gone silent): the
    // handshake times out (5 s) in a probe of its own, not in every Status.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = silent.local_addr()?;
    let tls = format!(
        "    tls:\n      ca: {}\n      cert: {}\n      key: {}\n      server_name: delegate\n",
        certs.path("ca.crt").display(),
        certs.path("client.crt").display(),
        certs.path("client.key").display()
    );
    let world = World::with_config(&delegate_backend(&format!("https://{addr}"), &tls)).await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    for _ in 0..4 {
        let start = Instant::now();
        let condition = handler_condition(&mut client, "wsl2").await?;
        let took = start.elapsed();
        ensure!(!condition.status, "{condition:?}");
        ensure!(
            condition.message.contains(&addr.to_string()),
            "{condition:?}"
        );
        ensure!(took < Duration::from_secs(2), "Status took {took:?}");
    }
    // A new pod for it is refused as quickly, and nothing is made.
    let start = Instant::now();
    let refused = run_on(&mut client, &world.pod("late", &[]), "wsl2")
        .await
        .unwrap_err();
    ensure!(refused.code() == Code::FailedPrecondition, "{refused:?}");
    ensure!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(silent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_this_node_cannot_run_get_route_to_peer_details() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;

    // An unknown handler.
    let pod_config = world.pod("refused", &[]);
    let refused = run_on(&mut client, &pod_config, "kata").await.unwrap_err();
    let info = route_to_peer(&refused)?;
    ensure!(info.domain == "berth.dev", "{info:?}");
    ensure!(info.metadata["handler"] == "kata", "{info:?}");
    ensure!(
        info.metadata["container_id"].contains("refused"),
        "{info:?}"
    );
    ensure!(
        refused.message().contains("RuntimeClass"),
        "{}",
        refused.message()
    );

    // A Windows pod on a node with no Windows-capable backend.
    let mut windows = world.pod("iis", &[]);
    windows.linux = None;
    windows.windows = Some(WindowsPodSandboxConfig::default());
    let refused = run_on(&mut client, &windows, "").await.unwrap_err();
    let info = route_to_peer(&refused)?;
    ensure!(info.metadata["image_os"] == "windows", "{info:?}");
    ensure!(
        refused.message().contains("windows node"),
        "{}",
        refused.message()
    );

    // A Windows image: no backend here pulls it; it belongs on a peer.
    let image = windows_image(&world).await?;
    pull_is_routed_to_peer(&berth, &image).await?;

    // A container of it in a Linux pod is refused the same way, naming the pod, and
    // leaves nothing in the pod.
    let linux = world.pod("mixed", &[]);
    let pod = run_on(&mut client, &linux, "").await?;
    let mut config = world.container("iis", &["cmd"]);
    config.image = Some(ImageSpec {
        image: image.clone(),
        ..Default::default()
    });
    let refused = crate::world::create(&mut client, &pod, &linux, &config)
        .await
        .unwrap_err();
    let info = route_to_peer(&refused)?;
    ensure!(info.domain == "berth.dev", "{info:?}");
    ensure!(info.metadata["image_os"] == "windows", "{info:?}");
    ensure!(info.metadata["container_id"].contains("mixed"), "{info:?}");
    ensure!(
        refused.message().contains("kubernetes.io/os: windows"),
        "{}",
        refused.message()
    );
    let containers = client
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    ensure!(containers.is_empty(), "{containers:?}");
    remove_all_pods(&mut client).await?;

    // Nothing was made.
    let pods = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    ensure!(pods.is_empty(), "{pods:?}");
    ensure!(youki_pods(&world.dir().join("state")).is_empty());
    Ok(())
}

/// One trace spans node agent and delegate: the node's call to the delegate carries
/// the trace context, and the delegate's server span is a child of the node's
/// delegate backend span, with the delegate's own work below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_call_for_a_delegate_pod_is_one_trace_across_node_and_delegate() -> Result<()> {
    use crate::traces::{run_traced, server_span, Receiver, TRACE_ID};
    let (receiver, endpoint) = Receiver::start().await?;
    let otlp = format!("telemetry:\n  otlp:\n    endpoint: {endpoint}\n");
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("d.sock");
    let address = format!("unix://{}", socket.display());
    let world = World::with_config(&format!("{}{otlp}", delegate_backend(&address, ""))).await?;
    // The delegate's config ends with its `delegate:` section: `telemetry` follows it.
    let serve = format!("  socket: {}\n{otlp}", socket.display());
    let mut delegate = Delegate::home(&world, &serve)?;
    delegate.start(|| unix_client(&socket)).await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    run_traced(&mut client, &world, "wsl2", "far").await?;

    let start = server_span(&receiver, "StartContainer").await?;
    let backend = receiver
        .wait_for("delegate StartContainer", |s| {
            s.name == "delegate StartContainer" && s.parent == start.span_id
        })
        .await?;
    let served = receiver
        .wait_for("the delegate's StartContainer", |s| {
            s.name == "/berth.delegate.v1.Delegate/StartContainer" && s.parent == backend.span_id
        })
        .await?;
    ensure!(served.trace_id == TRACE_ID, "{served:?}");
    ensure!(
        served.instance == format!("delegate-{}", world.tag),
        "{served:?}"
    );
    let supervisor = receiver
        .wait_for("the delegate's supervisor Start", |s| {
            s.name == "supervisor Start" && s.trace_id == TRACE_ID && s.instance == served.instance
        })
        .await?;
    eprintln!("trace {TRACE_ID}:\n{}", receiver.tree(TRACE_ID));
    let spans = receiver.spans();
    ensure!(
        crate::traces::below(&spans, &served)
            .iter()
            .any(|s| s.span_id == supervisor.span_id),
        "{supervisor:?} is not below {served:?}"
    );
    remove_all_pods(&mut client).await?;
    Ok(())
}
