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

/// `PIN=1`: the gateway gets the first core to itself and everything else
/// (this bench, its upstream) the others, as when the gateway runs on its
/// own machine; without it all share every core and the upstream's work
/// between requests leaves the gateway's caches cold.
pub fn pinned() -> bool {
    std::env::var_os("PIN").is_some_and(|v| v != "0")
}

/// What the benches print after the core count.
pub fn pin_note() -> &'static str {
    if pinned() {
        " (PIN: the gateway on core 0, the rest on the others)"
    } else {
        ""
    }
}

/// With [`pinned`], move this process (every thread, and so the children it
/// spawns later) off the gateway's core. Returns the machine's core count.
pub fn pin_self_off_core_zero() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !pinned() || cores < 2 {
        return cores;
    }
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &format!("1-{}", cores - 1)])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .expect("taskset (util-linux)");
    assert!(status.success(), "taskset failed");
    cores
}

/// The share of the machine's CPU time the hypervisor gave to others
/// (`steal` in /proc/stat) since [`CpuSteal::start`]: on these shared VMs it
/// moves every latency, so the benches print it next to their numbers.
pub struct CpuSteal([u64; 2]);

impl CpuSteal {
    pub fn start() -> Self {
        CpuSteal(Self::read())
    }

    /// (total jiffies, steal jiffies) over all cores.
    fn read() -> [u64; 2] {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is in user)
        let total = fields.iter().take(8).sum();
        [total, fields.get(7).copied().unwrap_or(0)]
    }

    /// "steal 3.1 %" since start, for the benches' headers.
    pub fn note(&self) -> String {
        let now = Self::read();
        let total = now[0].saturating_sub(self.0[0]).max(1);
        let steal = now[1].saturating_sub(self.0[1]);
        format!("steal {:.1} %", 100.0 * steal as f64 / total as f64)
    }
}

/// The round trip of one byte between two threads on two cores over a
/// socket pair, each after 200 µs asleep, p50 in µs: what waking an idle
/// peer on the other core costs on this machine right now. Every proxied
/// request wakes its peers a few times, so this is the context for the
/// benches' end-to-end latencies (on these VMs it moves by the hour).
pub fn wake_round_trip_us() -> f64 {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    // New threads, so the caller's own affinity stays as it was.
    fn on_core(core: usize) {
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let tid = me.file_name().unwrap().to_owned();
        let _ = Command::new("taskset")
            .args(["-p", "-c", &core.to_string()])
            .arg(tid)
            .stdout(Stdio::null())
            .status();
    }
    let (mut near, mut far) = UnixStream::pair().unwrap();
    let rounds = 2000;
    let echo = std::thread::spawn(move || {
        on_core(1);
        let mut b = [0u8; 1];
        for _ in 0..rounds {
            far.read_exact(&mut b).unwrap();
            far.write_all(&b).unwrap();
        }
    });
    let probe = std::thread::spawn(move || {
        on_core(0);
        let mut times = Vec::with_capacity(rounds);
        let mut b = [0u8; 1];
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_micros(200));
            let start = Instant::now();
            near.write_all(&b).unwrap();
            near.read_exact(&mut b).unwrap();
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
        times
    });
    let mut times = probe.join().unwrap();
    echo.join().unwrap();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[rounds / 2]
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// The gateway binary the benches measure (scripts/build-pgo names its
// instrumented build, as training load).
#[path = "../support/wardgate_bin.rs"]
mod wardgate_bin;
pub use wardgate_bin::wardgate_bin;

/// A running gateway; stopped, and its config file removed, on drop.
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
        let mut command = if pinned() {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let child = command
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
    /// SIGTERM first, so the gateway exits through its own shutdown (an
    /// instrumented build writes its profile only then); killed if it
    /// has not exited within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
