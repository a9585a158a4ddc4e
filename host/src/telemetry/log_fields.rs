//! How the fields of a text log line are written when stderr is not a
//! terminal: as tracing-subscriber's default formatter writes them with
//! colours off (`name=value`, separated by spaces), only faster.
//!
//! The default formatter runs every field name and `=` through its styling
//! code even when there are no colours to show; on an access log line that
//! was about a third of the cost of formatting it. Here plain fields are
//! written directly, and everything the default treats specially (the
//! message, with its escaping of terminal control sequences; `log.` fields
//! from the `log` bridge; `r#` names; errors with their sources) is still
//! handed to the default visitor, so the output is the same byte for byte.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The field formatter: `fmt().fmt_fields(PlainFields)`.
pub struct PlainFields;

impl<'w> MakeVisitor<Writer<'w>> for PlainFields {
    type Visitor = PlainVisitor<'w>;

    fn make_visitor(&self, writer: Writer<'w>) -> PlainVisitor<'w> {
        PlainVisitor {
            writer,
            empty: true,
            result: Ok(()),
        }
    }
}

pub struct PlainVisitor<'w> {
    writer: Writer<'w>,
    /// No field written yet (the next one needs no separating space).
    empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Fields the default formatter writes in a way of its own.
    fn special(field: &Field) -> bool {
        let name = field.name();
        name == "message" || name.starts_with("log.") || name.starts_with("r#")
    }

    /// Let the default visitor write this field, where this line stands.
    fn by_default(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.empty);
        record(&mut default);
        self.result = default.finish();
        // It skips `log.` fields (already shown as the line's target)
        // without writing anything.
        self.empty = self.empty && field.name().starts_with("log.");
    }

    fn name(&mut self, field: &Field) -> fmt::Result {
        if self.empty {
            self.empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }
}

/// Whether `{:?}` writes `s` as `"s"` (printable ASCII, nothing to escape).
fn quotes_as_is(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if Self::special(field) {
            return self.by_default(field, |v| v.record_str(field, value));
        }
        self.result = self.name(field).and_then(|()| {
            if quotes_as_is(value) {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.by_default(field, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if Self::special(field) {
            return self.by_default(field, |v| v.record_debug(field, value));
        }
        self.result = self
            .name(field)
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Outer(io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the upstream went away")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Lines of every shape the gateway logs, and some it might.
    fn emit() {
        let client: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        tracing::info!(
            target: "access",
            request_id = "abc",
            client = %client,
            method = "GET",
            path = "/a \"quoted\" \\ path",
            agent = "curl\u{1b}[31m/é/\u{85}",
            status = 200u16,
            duration_ms = format!("{:.3}", 1.25),
            upstream = "127.0.0.1:18080",
            plugins = "",
            error = "",
        );
        tracing::warn!(
            route = "r",
            "a message with \u{1b}[2J an escape and {}",
            "args"
        );
        tracing::warn!("only a message");
        tracing::info!(
            r#type = "keyword",
            flag = true,
            n = -3i64,
            ratio = 0.5,
            "typed"
        );
        let error = Outer(io::Error::other("connection reset"));
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::debug!(list = ?vec!["a", "b"], "debug value");
        // What the `log` bridge turns a `log` record into.
        tracing_log::LogTracer::builder().init().ok();
        log::warn!(target: "rustls::client", "a log record with {}", "args");
    }

    fn render(plain: bool) -> String {
        let lines = Lines::default();
        let writer = {
            let lines = lines.clone();
            move || lines.clone()
        };
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(writer);
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_are_those_of_the_default_formatter() {
        let default = render(false);
        let plain = render(true);
        assert_eq!(plain, default);
        // Every kind of field made it into the lines compared.
        for expected in [
            "client=127.0.0.1:5000",
            r#"path="/a \"quoted\" \\ path""#,
            r#"agent="curl\u{1b}[31m/é/\u{85}""#,
            "status=200",
            "\\x1b[2J",
            "type=\"keyword\" flag=true n=-3 ratio=0.5",
            "error.sources=[connection reset]",
            r#"list=["a", "b"]"#,
            "rustls::client: a log record with args",
        ] {
            assert!(plain.contains(expected), "{expected:?} not in:\n{plain}");
        }
    }
}
