//! Test harness: the real `wardgate` binary as a child process on loopback,
//! and a real HTTP upstream that reports what it received.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[path = "wardgate_bin.rs"]
mod wardgate_bin;
use wardgate_bin::wardgate_bin;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Run the binary to completion.
pub fn wardgate(args: &[&str]) -> Output {
    wardgate_env(args, &[])
}

/// Run the binary to completion with extra environment variables. The
/// cache folder is this test process's own unless `envs` sets one.
pub fn wardgate_env(args: &[&str], envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(wardgate_bin());
    cmd.args(args).env("WARDGATE_CACHE_DIR", test_cache_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run wardgate")
}

/// The cache folder gateways started by this test process share.
pub fn test_cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("wardgate-test-cache-{}", std::process::id()))
}

/// Poll `check` until it holds (10 s at most).
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Gateway {
    child: Child,
    pub ports: Vec<u16>,
    pub admin: SocketAddr,
    config: Option<PathBuf>,
    log: PathBuf,
}

impl Gateway {
    /// Start with `yaml`; the admin listener is moved to an ephemeral port.
    pub async fn start(yaml: &str) -> Gateway {
        Self::start_env(yaml, &[]).await
    }

    /// Start with `yaml` and extra environment variables.
    pub async fn start_env(yaml: &str, envs: &[(&str, String)]) -> Gateway {
        let (path, n) = Self::write_config(yaml);
        Self::spawn(Some(path), n, envs, None)
    }

    /// Start with no config file: the embedded default.
    pub async fn start_default() -> Gateway {
        Self::spawn(None, NEXT.fetch_add(1, Ordering::Relaxed), &[], None)
    }

    /// Start with `yaml`, its stderr a pipe that the caller reads, or not.
    pub async fn start_piping_stderr(yaml: &str) -> (Gateway, ChildStderr) {
        let (path, n) = Self::write_config(yaml);
        let mut gw = Self::spawn(Some(path), n, &[], Some(Stdio::piped()));
        let stderr = gw.child.stderr.take().unwrap();
        (gw, stderr)
    }

    fn write_config(yaml: &str) -> (PathBuf, usize) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wardgate-test-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, with_ephemeral_admin(yaml)).unwrap();
        (path, n)
    }

    fn spawn(
        config: Option<PathBuf>,
        n: usize,
        envs: &[(&str, String)],
        stderr: Option<Stdio>,
    ) -> Gateway {
        let log =
            std::env::temp_dir().join(format!("wardgate-test-{}-{n}.log", std::process::id()));
        let stderr = stderr.unwrap_or_else(|| std::fs::File::create(&log).unwrap().into());
        let mut cmd = Command::new(wardgate_bin());
        cmd.arg("run");
        if let Some(c) = &config {
            cmd.arg("-c").arg(c);
        }
        cmd.env("WARDGATE_CACHE_DIR", test_cache_dir());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn wardgate");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ports = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let listening = line
                    .strip_prefix("wardgate listening on http://")
                    .or_else(|| line.strip_prefix("wardgate listening on https://"));
                if let Some(rest) = listening {
                    let addr: SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
                    ports.push(addr.port());
                } else if let Some(rest) = line.strip_prefix("admin on http://") {
                    let _ = tx.send((ports.clone(), rest.parse::<SocketAddr>().unwrap()));
                }
            }
        });
        let (ports, admin) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Gateway {
            child,
            ports,
            admin,
            config,
            log,
        }
    }

    /// The gateway's process id (its stdio MCP targets are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[0])
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(self.config.as_ref().unwrap(), with_ephemeral_admin(yaml)).unwrap();
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it has stopped growing: lines reach the file within
    /// tens of milliseconds (the gateway writes them in batches), so a check
    /// that something is *absent* reads this rather than `log()`.
    pub async fn settled_log(&self) -> String {
        let mut last = self.log();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.log();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// The access log is written after the response: wait for it.
    pub async fn log_contains(&self, needle: &str) -> bool {
        self.wait_for_log(needle).await
    }

    pub async fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(c) = &self.config {
            let _ = std::fs::remove_file(c);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn with_ephemeral_admin(yaml: &str) -> String {
    if yaml.contains("adminAddr") {
        yaml.to_string()
    } else if let Some(rest) = yaml.trim_start().strip_prefix("config:\n") {
        format!("config:\n  adminAddr: 127.0.0.1:0\n{rest}")
    } else {
        format!("config:\n  adminAddr: 127.0.0.1:0\n{yaml}")
    }
}

/// An HTTP/1.1 upstream answering with JSON `{method, path, headers, body}`.
/// A path containing `sleep` waits one second first; one containing
/// `flaky` answers 503 while the upstream has served fewer than 2 requests.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::serve(None).await
    }

    /// The same upstream behind TLS (ALPN h2 and http/1.1).
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Upstream {
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        echo(req, n)
                    });
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ =
                                    server.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream { addr, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn echo(req: Request<Incoming>, served: usize) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    if parts.uri.path().contains("flaky") && served < 2 {
        let mut resp = Response::new(Full::from("unavailable"));
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(resp);
    }
    if parts.uri.path().contains("sleep") {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let report = serde_json::json!({
        "version": format!("{:?}", parts.version),
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::new(Full::from(report.to_string())))
}

/// A real OCI registry (Debian's `docker-registry`) on a loopback port,
/// open or behind htpasswd basic auth. Its storage is a temporary folder.
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub root: PathBuf,
}

impl Registry {
    pub fn start(basic_auth: Option<(&str, &str)>) -> Registry {
        Self::start_with(|root| match basic_auth {
            None => String::new(),
            Some((user, pass)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("htpasswd (Debian package apache2-utils)");
                std::fs::write(root.join("htpasswd"), &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: wardgate-test\n    path: {}\n",
                    root.join("htpasswd").display()
                )
            }
        })
    }

    /// A registry that wants bearer tokens from `realm`, signed by the key
    /// of `cert_pem` (docker's token auth).
    pub fn start_token(realm: &str, service: &str, issuer: &str, cert_pem: &str) -> Registry {
        Self::start_with(|root| {
            std::fs::write(root.join("token-ca.pem"), cert_pem).unwrap();
            format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root.join("token-ca.pem").display()
            )
        })
    }

    fn start_with(auth: impl FnOnce(&std::path::Path) -> String) -> Registry {
        let bin = "/usr/bin/docker-registry";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: install the Debian package docker-registry (scripts/test does)"
        );
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("wardgate-registry-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let auth = auth(&root);
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            root.join("data").display()
        );
        std::fs::write(root.join("config.yml"), config).unwrap();
        let child = Self::spawn(&root, addr);
        Registry { child, addr, root }
    }

    fn spawn(root: &std::path::Path, addr: SocketAddr) -> Child {
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("registry.log")).unwrap())
            .spawn()
            .expect("spawn docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Start again on the same address and storage after [`Registry::stop`].
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.root, self.addr);
    }

    /// The blob file of `digest` in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
