//! The network parts of the tests: Debian's real `docker-registry`, a counting and
//! throttling HTTP proxy in front of it, and a small hand-written registry that can
//! lie (corrupt blobs), trickle, or demand bearer tokens.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::images::{image, layer, push, sha256, Image, Layer, DOCKER_MANIFEST};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `docker-registry serve` on 127.0.0.1 with storage in a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Its config, storage and log.
    pub dir: tempfile::TempDir,
    /// Files the config points at (the htpasswd file), kept while the registry runs.
    _extra: Option<tempfile::TempDir>,
}

impl Registry {
    /// An open registry.
    pub async fn start() -> Registry {
        Registry::spawn("").await
    }

    /// A registry behind htpasswd basic auth for `user` with bcrypt `hash`.
    pub async fn start_with_htpasswd(user: &str, hash: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            htpasswd.display()
        );
        let mut registry = Registry::spawn(&auth).await;
        registry._extra = Some(dir);
        registry
    }

    /// Starts a registry on a free port. A port picked free can be taken by someone
    /// else before the registry binds it; the registry then exits, and another port
    /// is tried.
    async fn spawn(extra: &str) -> Registry {
        for _ in 0..5 {
            if let Some(registry) = Registry::try_spawn(extra).await {
                return registry;
            }
        }
        panic!("docker-registry exited on start five times in a row");
    }

    async fn try_spawn(extra: &str) -> Option<Registry> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start /usr/bin/docker-registry (apt package docker-registry, hack/install-deps --test)");
        let mut registry = Registry {
            child,
            addr,
            dir,
            _extra: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = registry.child.try_wait().unwrap() {
                eprintln!("docker-registry exited with {status}: {}", registry.log());
                return None;
            }
            // It logs this once it has bound the port: whatever answers there is ours.
            let bound = registry
                .log()
                .contains(&format!("listening on {}", registry.addr));
            if bound {
                if let Ok(r) = reqwest::get(format!("http://{}/v2/", registry.addr)).await {
                    if r.status().as_u16() == 200 || r.status().as_u16() == 401 {
                        return Some(registry);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up: {}",
                registry.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads an HTTP request head (through the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

/// An HTTP proxy (one request per connection) recording request lines, counting the
/// blob bytes it passed on, and optionally slowing blob downloads.
pub struct Proxy {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    requests: Arc<Mutex<Vec<String>>>,
    /// Milliseconds of pause per 8 KiB of blob body.
    pub delay_ms: Arc<AtomicU64>,
    blob_bytes: Arc<AtomicU64>,
    blob_streams: Arc<Streams>,
}

/// Blob downloads under way, and the most there were at once.
#[derive(Default)]
struct Streams {
    now: AtomicU64,
    peak: AtomicU64,
}

/// Counts one blob download for as long as it lives.
struct Streaming<'a>(&'a Streams);

impl<'a> Streaming<'a> {
    fn new(streams: &'a Streams) -> Self {
        let now = streams.now.fetch_add(1, Ordering::SeqCst) + 1;
        streams.peak.fetch_max(now, Ordering::SeqCst);
        Streaming(streams)
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every connection of a proxy shares.
#[derive(Clone)]
struct ProxyState {
    upstream: String,
    requests: Arc<Mutex<Vec<String>>>,
    delay_ms: Arc<AtomicU64>,
    blob_bytes: Arc<AtomicU64>,
    blob_streams: Arc<Streams>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = ProxyState {
            upstream: upstream.to_string(),
            requests: Arc::default(),
            delay_ms: Arc::default(),
            blob_bytes: Arc::default(),
            blob_streams: Arc::default(),
        };
        let proxy = Proxy {
            addr,
            requests: state.requests.clone(),
            delay_ms: state.delay_ms.clone(),
            blob_bytes: state.blob_bytes.clone(),
            blob_streams: state.blob_streams.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move { proxy_one(client, &state).await });
            }
        });
        proxy
    }

    /// Bytes of blob bodies (response heads not counted) written to clients so far.
    pub fn blob_bytes(&self) -> u64 {
        self.blob_bytes.load(Ordering::SeqCst)
    }

    /// Request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The most blob downloads that were under way at once so far.
    pub fn peak_blob_streams(&self) -> u64 {
        self.blob_streams.peak.load(Ordering::SeqCst)
    }

    /// How many times blob `digest` was fetched.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains(&format!("/blobs/{digest}")))
            .count()
    }
}

/// A real registry holding one image, and a proxy in front of it that counts and
/// can slow down what pulls through `reference` fetch.
pub struct Proxied {
    /// Kept running while the proxy forwards to it.
    pub registry: Registry,
    /// The way in.
    pub proxy: Proxy,
    /// `<proxy>/<repo>:<tag>`: the image by its name through the proxy.
    pub reference: String,
}

impl Proxied {
    /// Pushes `image` as `repo:tag` to a new registry and puts a proxy pausing
    /// `delay_ms` per 8 KiB of blob in front of it.
    pub async fn start(repo: &str, tag: &str, image: &Image, delay_ms: u64) -> Proxied {
        let registry = Registry::start().await;
        push(&registry.addr, repo, tag, image).await;
        let proxy = Proxy::start(&registry.addr).await;
        proxy.delay_ms.store(delay_ms, Ordering::Relaxed);
        let reference = format!("{}/{repo}:{tag}", proxy.addr);
        Proxied {
            registry,
            proxy,
            reference,
        }
    }
}

async fn proxy_one(mut client: TcpStream, state: &ProxyState) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default().to_string();
    state.requests.lock().unwrap().push(request_line.clone());
    let mut rewritten: Vec<String> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    rewritten.push("Connection: close".into());
    let Ok(mut server) = TcpStream::connect(&state.upstream).await else {
        return;
    };
    if server
        .write_all(format!("{}\r\n\r\n", rewritten.join("\r\n")).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let slow = request_line.contains("/blobs/");
    // Counted until the last byte of the body is passed on (the Content-Length the
    // response declares), not until the connection closes after it: by then the
    // client may be on its next download already.
    let mut streaming = slow.then(|| Streaming::new(&state.blob_streams));
    let mut body_left: Option<u64> = None;
    // The response head as far as it has come; `None` once the body started.
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match server.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let body = match head.as_mut() {
            None => n,
            Some(seen) => {
                seen.extend_from_slice(&buf[..n]);
                match seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => {
                        let body = seen.len() - end - 4;
                        body_left = content_length(&seen[..end]);
                        head = None;
                        body
                    }
                    None => 0,
                }
            }
        };
        if slow {
            state.blob_bytes.fetch_add(body as u64, Ordering::SeqCst);
        }
        if let Some(left) = body_left.as_mut() {
            *left = left.saturating_sub(body as u64);
            if *left == 0 {
                drop(streaming.take());
            }
        }
        let ms = state.delay_ms.load(Ordering::Relaxed);
        if slow && ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// The Content-Length of a response head, when it declares one.
fn content_length(head: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// What the hand-written registry serves.
#[derive(Default)]
pub struct FakeContent {
    /// Tag or digest → (media type, manifest bytes).
    pub manifests: HashMap<String, (String, Vec<u8>)>,
    /// Digest → bytes served (which may not match the digest).
    pub blobs: HashMap<String, Vec<u8>>,
    /// `(refresh token, access token)`: demand bearer auth, exchanging the first for the second.
    pub bearer: Option<(String, String)>,
}

/// A minimal registry over raw TCP, one request per connection.
pub struct FakeRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Milliseconds of pause per 4 KiB of blob body.
    pub delay_ms: Arc<AtomicU64>,
    /// Request lines seen so far.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FakeRegistry {
    /// Serves, as `<any repo>:1`, a two-layer image whose second layer arrives
    /// corrupted; returns the registry and that layer.
    pub async fn with_a_corrupt_layer() -> (FakeRegistry, Layer) {
        let good = layer(&[("ok", b"fine")]);
        let bad = layer(&[("bad", b"will be corrupted in transit")]);
        let img = image(
            vec![good, bad.clone()],
            crate::host_arch(),
            &["x"],
            DOCKER_MANIFEST,
        );
        let content = FakeContent::default()
            .with_image("1", &img)
            .corrupt_blob(&bad.digest);
        (FakeRegistry::start(content).await, bad)
    }

    /// Serves `content` on a free loopback port.
    pub async fn start(content: FakeContent) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let content = Arc::new(Mutex::new(content));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, d, r, a) = (
            content.clone(),
            delay_ms.clone(),
            requests.clone(),
            addr.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, d, r, a) = (c.clone(), d.clone(), r.clone(), a.clone());
                tokio::spawn(async move { serve_fake(stream, &a, &c, &d, &r).await });
            }
        });
        FakeRegistry {
            addr,
            delay_ms,
            requests,
        }
    }
}

async fn serve_fake(
    mut stream: TcpStream,
    addr: &str,
    content: &Mutex<FakeContent>,
    delay: &AtomicU64,
    requests: &Mutex<Vec<String>>,
) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let line = head.lines().next().unwrap_or_default().to_string();
    requests.lock().unwrap().push(line.clone());
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.trim().to_string())
    };
    let body_len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; body_len];
    if body_len > 0 && stream.read_exact(&mut body).await.is_err() {
        return;
    }
    let reply = reply_for(
        &content.lock().unwrap(),
        addr,
        method,
        path,
        header("authorization"),
        &body,
    );
    let mut response = format!(
        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() || method == "HEAD" {
        return;
    }
    for chunk in reply.body.chunks(4096) {
        if stream.write_all(chunk).await.is_err() {
            return;
        }
        let ms = delay.load(Ordering::Relaxed);
        if reply.slow && ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    slow: bool,
}

fn error_reply(status: &'static str, code: &str) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: format!(r#"{{"errors":[{{"code":"{code}","message":"{code}"}}]}}"#).into_bytes(),
        slow: false,
    }
}

fn reply_for(
    content: &FakeContent,
    addr: &str,
    method: &str,
    path: &str,
    authorization: Option<String>,
    body: &[u8],
) -> Reply {
    if let Some((refresh, access)) = &content.bearer {
        if method == "POST" && path == "/token" {
            let form = String::from_utf8_lossy(body);
            let fields: Vec<&str> = form.split('&').collect();
            if fields.contains(&"grant_type=refresh_token")
                && fields.contains(&format!("refresh_token={refresh}").as_str())
            {
                return Reply {
                    status: "200 OK",
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: format!(r#"{{"access_token":"{access}"}}"#).into_bytes(),
                    slow: false,
                };
            }
            return error_reply("401 Unauthorized", "UNAUTHORIZED");
        }
        if authorization.as_deref() != Some(format!("Bearer {access}").as_str()) {
            let mut reply = error_reply("401 Unauthorized", "UNAUTHORIZED");
            reply.headers.push((
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"http://{addr}/token\",service=\"fake\""),
            ));
            return reply;
        }
    }
    if path == "/v2/" {
        return Reply {
            status: "200 OK",
            headers: vec![],
            body: b"{}".to_vec(),
            slow: false,
        };
    }
    if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        return match content.manifests.get(reference) {
            Some((media_type, bytes)) => Reply {
                status: "200 OK",
                headers: vec![
                    ("Content-Type".into(), media_type.clone()),
                    ("Docker-Content-Digest".into(), sha256(bytes)),
                ],
                body: bytes.clone(),
                slow: false,
            },
            None => error_reply("404 Not Found", "MANIFEST_UNKNOWN"),
        };
    }
    if let Some((_, digest)) = path.rsplit_once("/blobs/") {
        return match content.blobs.get(digest) {
            Some(bytes) => Reply {
                status: "200 OK",
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body: bytes.clone(),
                slow: true,
            },
            None => error_reply("404 Not Found", "BLOB_UNKNOWN"),
        };
    }
    error_reply("404 Not Found", "NAME_UNKNOWN")
}

impl FakeContent {
    /// Serves blob `digest` with its last byte changed: same length, wrong content,
    /// so only a digest check can tell.
    pub fn corrupt_blob(mut self, digest: &str) -> FakeContent {
        let blob = self
            .blobs
            .get_mut(digest)
            .expect("corrupt a blob that is served");
        let last = blob.len() - 1;
        blob[last] ^= 0xff;
        self
    }

    /// Serves `blob` for `digest` instead of the blob of that digest.
    pub fn replace_blob(mut self, digest: &str, blob: Vec<u8>) -> FakeContent {
        let served = self
            .blobs
            .get_mut(digest)
            .expect("replace a blob that is served");
        *served = blob;
        self
    }

    /// Serves `image` as `repo:tag` (the repo is not checked) and by digest.
    pub fn with_image(mut self, tag: &str, image: &Image) -> FakeContent {
        let manifest = (image.media_type.to_string(), image.manifest.clone());
        self.manifests.insert(tag.into(), manifest.clone());
        self.manifests
            .insert(image.manifest_digest.clone(), manifest);
        self.blobs
            .insert(image.config_digest.clone(), image.config.clone());
        for layer in &image.layers {
            self.blobs.insert(layer.digest.clone(), layer.blob.clone());
        }
        self
    }
}
