//! Starting a `wardgate` process for the end-to-end benches (shared by
//! `llm.rs` and `mcp.rs` through `#[path]`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running gateway; killed, and its config file removed, on drop.
pub struct Gateway {
    child: Child,
    config: PathBuf,
}

impl Gateway {
    /// Run `bin` on `config` (written to a temp file named after `tag`) and
    /// wait until it listens on `port`.
    pub fn start(bin: &Path, config: &str, port: u16, tag: &str) -> Gateway {
        let path =
            std::env::temp_dir().join(format!("wardgate-bench-{tag}-{}.yaml", std::process::id()));
        std::fs::write(&path, config).unwrap();
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(port);
        Gateway {
            child,
            config: path,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
