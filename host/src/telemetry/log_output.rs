//! Where log lines go: stderr, off the request path.
//!
//! Writing each access log line with its own `write(2)` on the worker cost
//! ~15 % of the proxy's throughput with stderr a file and over a quarter with
//! stderr a pipe (its reader woke for every line), and a slow reader of
//! stderr (a log shipper, a paused terminal) stalled request handling itself.
//! Instead a worker hands its formatted line to `tracing-appender`'s
//! background thread, which writes what has gathered in batches: after each
//! batch it waits [`GATHER`] before taking the next, so under load lines
//! leave in one write per interval and the workers rarely have to wake it.
//! When stderr cannot keep up and [`BACKLOG_LINES`] are waiting, further
//! lines are dropped and counted (`wardgate_log_lines_dropped_total`) rather
//! than slowing the traffic down.

use std::io::{self, BufWriter, Write};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// How long the writer thread lets lines gather after writing a batch; about
/// the longest a line waits before it reaches stderr.
const GATHER: Duration = Duration::from_millis(10);

/// Lines that may wait for stderr before new ones are dropped: ~4 MB of
/// text, a third of a second of access log at this machine's full load. The
/// queue's slots are allocated up front, so a longer backlog costs idle
/// memory (64k lines measured 1.9 MB more RSS).
const BACKLOG_LINES: usize = 16 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The writer for the tracing subscriber, and the guard that writes out what
/// is still waiting when it is dropped (keep it until the process ends).
pub fn stderr() -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BACKLOG_LINES)
        .thread_name("wardgate-log")
        .finish(Batches::new(io::stderr()));
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// Lines dropped since start because stderr did not keep up.
fn dropped_lines() -> usize {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines)
}

pub fn render_metrics(out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP wardgate_log_lines_dropped_total Log lines dropped because stderr did not keep up.\n\
         # TYPE wardgate_log_lines_dropped_total counter\n\
         wardgate_log_lines_dropped_total {}",
        dropped_lines()
    );
}

/// Buffers the lines of one batch; `flush`, which the writer thread calls
/// when it has emptied its queue, writes them out and then waits [`GATHER`]
/// so the next batch can gather.
struct Batches<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> Batches<W> {
    fn new(out: W) -> Self {
        Batches {
            out: BufWriter::with_capacity(64 * 1024, out),
        }
    }
}

impl<W: Write> Write for Batches<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        std::thread::sleep(GATHER);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records each `write` it receives, as the syscalls stderr would see.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arriving_one_by_one_leave_together_and_all_arrive() {
        let writes = Writes::default();
        let (mut writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .finish(Batches::new(writes.clone()));
        // A worker under load: a line every 200 µs. Without the gather pause
        // the writer thread wakes for nearly every one of them.
        let lines = 200;
        for i in 0..lines {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(guard);
        let writes = writes.0.lock().unwrap();
        let expected: String = (0..lines).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            String::from_utf8_lossy(&writes.concat()),
            expected,
            "every line, in order"
        );
        assert!(
            writes.len() <= lines / 4,
            "{lines} lines took {} writes",
            writes.len()
        );
    }

    #[test]
    fn a_lone_line_is_written_without_waiting_for_more() {
        let writes = Writes::default();
        let (mut writer, _guard) =
            NonBlockingBuilder::default().finish(Batches::new(writes.clone()));
        writer.write_all(b"ready\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while writes.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(writes.0.lock().unwrap().concat(), b"ready\n");
    }
}
