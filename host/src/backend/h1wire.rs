//! HTTP/1.1 spoken directly on a pooled upstream connection, for the
//! requests that make up most proxied traffic: GETs and HEADs without a body.
//!
//! hyper's client drives each connection as a task of its own and hands
//! every request and answer through channels to it. A bodiless request is
//! one write and a few reads, so here the exchange runs in the request's own
//! task, and the answer's body is read off the socket as the downstream
//! side asks for it (1–3 µs less user time per proxied request; README →
//! Performance). Requests with a body, other methods and upgrades stay on
//! hyper's client ([`super::h1pool`] decides).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::h1pool::Io;
use super::http::{Body, BoxError};

/// Most header lines an answer may carry (as hyper's client).
const MAX_HEADERS: usize = 100;
/// Header lines an answer's head is first parsed for; one with more is
/// parsed again for up to [`MAX_HEADERS`].
const FEW_HEADERS: usize = 24;
/// Most bytes an answer's head or its trailer section may take.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// Most bytes a chunk-size line may take, extensions included.
const MAX_CHUNK_LINE: usize = 4 << 10;
const READ_SIZE: usize = 8 << 10;

/// Whether `req` is sent here rather than through hyper's client: a GET or
/// HEAD (safe to send again when a pooled connection turns out closed) with
/// no body. Its hop-by-hop headers are already gone (`forward_to` strips
/// them), so it carries no Transfer-Encoding or Upgrade to honour.
pub fn suits(req: &Request<Body>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && hyper::body::Body::is_end_stream(req.body())
        && req
            .headers()
            .get(CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// The request head as it goes on the wire (origin-form target, HTTP/1.1).
pub fn encode_head(req: &Request<Body>) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(64 + target.len() + 32 * req.headers().len());
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Why an exchange got no answer.
pub enum Failure {
    /// The connection turned out closed before any byte of an answer came:
    /// the request can go again on another one.
    Closed(BoxError),
    /// Anything else; the request is not sent again.
    Broken(BoxError),
}

/// An answer's head, how its body is framed, and whether the connection
/// can carry another request once that body is read.
pub struct Answer {
    pub head: http::response::Parts,
    pub framing: Framing,
    pub reusable: bool,
}

/// An upstream connection, with what was read past the last message.
pub struct Conn {
    io: TokioIo<Box<dyn Io>>,
    buf: BytesMut,
}

impl Conn {
    pub fn new(io: Box<dyn Io>) -> Self {
        Conn {
            io: TokioIo::new(io),
            buf: BytesMut::new(),
        }
    }

    /// Whether the upstream has neither closed the connection nor sent
    /// anything unasked while it sat idle. Looks without waiting.
    pub fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    /// Whether nothing was read past the last answer (else the upstream
    /// said more than it was asked, and the connection is not reused).
    pub fn is_clean(&self) -> bool {
        self.buf.is_empty()
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.reserve(READ_SIZE);
        }
        // `read_buf`'s future keeps no state between polls.
        pin!(self.io.read_buf(&mut self.buf)).poll(cx)
    }

    /// Send a request head and read the answer's head; `head_request` says
    /// the request was a HEAD (its answer has no body whatever it says).
    /// Only a clean connection (see [`Conn::is_clean`]) is asked again.
    pub async fn exchange(&mut self, head: &[u8], head_request: bool) -> Result<Answer, Failure> {
        if let Err(e) = self.io.write_all(head).await {
            return Err(Failure::Closed(e.into()));
        }
        let mut answered = false;
        loop {
            while !self.buf.is_empty() {
                answered = true;
                match self.parse_head(head_request).map_err(Failure::Broken)? {
                    Some(Parsed::Interim) => continue,
                    Some(Parsed::Final(answer)) => return Ok(answer),
                    None if self.buf.len() > MAX_HEAD_BYTES => {
                        return Err(Failure::Broken("the answer's head is over 64 KiB".into()));
                    }
                    None => break,
                }
            }
            let read = std::future::poll_fn(|cx| self.poll_fill(cx)).await;
            match read {
                Ok(0) if !answered => {
                    return Err(Failure::Closed(
                        "the upstream closed the connection without answering".into(),
                    ));
                }
                Ok(0) => {
                    return Err(Failure::Broken(
                        "the upstream closed the connection within the answer's head".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if !answered => return Err(Failure::Closed(e.into())),
                Err(e) => return Err(Failure::Broken(e.into())),
            }
        }
    }

    fn parse_head(&mut self, head_request: bool) -> Result<Option<Parsed>, BoxError> {
        // Most answers carry a handful of headers: filling a 100-slot array
        // for each would cost more than parsing them.
        match self.parse_head_within::<FEW_HEADERS>(head_request) {
            Err(e) if e.is::<MoreHeaders>() => self.parse_head_within::<MAX_HEADERS>(head_request),
            parsed => parsed,
        }
    }

    fn parse_head_within<const N: usize>(
        &mut self,
        head_request: bool,
    ) -> Result<Option<Parsed>, BoxError> {
        let mut headers = [httparse::EMPTY_HEADER; N];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) if N < MAX_HEADERS => {
                return Err(MoreHeaders.into());
            }
            Err(e) => return Err(format!("invalid answer head: {e}").into()),
        };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err("the upstream switched protocols unasked".into());
            }
            // 100 Continue, 103 Early Hints: the final answer follows.
            self.buf.advance(len);
            return Ok(Some(Parsed::Interim));
        }
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // Where each header sits in the head: the values become slices of
        // one shared copy of it rather than an allocation each.
        let mut spots = [(0, 0, 0, 0); N];
        let mut chunked = None;
        let mut length: Option<u64> = None;
        let (mut close, mut keep_alive) = (false, false);
        let base = self.buf.as_ptr() as usize;
        let at = |part: &[u8]| part.as_ptr() as usize - base;
        for (h, spot) in parsed.headers.iter().zip(spots.iter_mut()) {
            *spot = (
                at(h.name.as_bytes()),
                h.name.len(),
                at(h.value),
                h.value.len(),
            );
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                for part in h.value.split(|&b| b == b',') {
                    let n: u64 = std::str::from_utf8(part.trim_ascii())
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("invalid content-length in the answer")?;
                    if length.is_some_and(|l| l != n) {
                        return Err("conflicting content-lengths in the answer".into());
                    }
                    length = Some(n);
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        let count = parsed.headers.len();
        let head = self.buf.split_to(len).freeze();
        let mut map = HeaderMap::with_capacity(count);
        for &(name, name_len, value, value_len) in &spots[..count] {
            let name = HeaderName::from_bytes(&head[name..name + name_len])?;
            let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))?;
            map.append(name, value);
        }

        let no_body =
            head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let framing = match (no_body, chunked, length) {
            (true, _, _) => Framing::Done,
            (_, Some(true), _) => Framing::Chunked(Chunk::Size),
            // A transfer coding that does not end in chunked: the body runs
            // until the connection closes (RFC 9112, 6.3).
            (_, Some(false), _) => Framing::UntilClose,
            (_, None, Some(0)) => Framing::Done,
            (_, None, Some(n)) => Framing::Length(n),
            (_, None, None) => Framing::UntilClose,
        };
        let reusable = !close
            && (version == Version::HTTP_11 || keep_alive)
            // Both framings at once may be a smuggling attempt: close after.
            && !(chunked.is_some() && length.is_some())
            && !matches!(framing, Framing::UntilClose);
        let mut answer = Response::new(());
        *answer.status_mut() = status;
        *answer.version_mut() = version;
        *answer.headers_mut() = map;
        Ok(Some(Parsed::Final(Answer {
            head: answer.into_parts().0,
            framing,
            reusable,
        })))
    }

    /// The next frame of the answer's body, as `framing` says it is framed.
    pub fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                    if !self.buf.is_empty() {
                        let take = (*left).min(self.buf.len() as u64);
                        *left -= take;
                        if *left == 0 {
                            *framing = match framing {
                                Framing::Length(_) => Framing::Done,
                                _ => Framing::Chunked(Chunk::DataEnd),
                            };
                        }
                        let data = self.buf.split_to(take as usize).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let left = *left;
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(format!(
                            "the upstream closed the connection {left} bytes before the body's end"
                        )
                        .into())));
                    }
                }
                Framing::UntilClose => {
                    if !self.buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(self.buf.split().freeze()))));
                    }
                    if ready!(self.poll_fill(cx))? == 0 {
                        *framing = Framing::Done;
                    }
                }
                Framing::Chunked(Chunk::Size) => {
                    match self.buf.windows(2).position(|w| w == b"\r\n") {
                        Some(end) => {
                            let size = chunk_size(&self.buf[..end])?;
                            self.buf.advance(end + 2);
                            *framing = Framing::Chunked(match size {
                                0 => Chunk::Trailers,
                                n => Chunk::Data(n),
                            });
                        }
                        None if self.buf.len() > MAX_CHUNK_LINE => {
                            return Poll::Ready(Some(Err("a chunk-size line over 4 KiB".into())));
                        }
                        None => ready!(self.poll_fill_within_body(cx))?,
                    }
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if self.buf.len() >= 2 {
                        if &self.buf[..2] != b"\r\n" {
                            return Poll::Ready(Some(Err("a chunk not ended by CRLF".into())));
                        }
                        self.buf.advance(2);
                        *framing = Framing::Chunked(Chunk::Size);
                    } else {
                        ready!(self.poll_fill_within_body(cx))?;
                    }
                }
                Framing::Chunked(Chunk::Trailers) => {
                    if self.buf.starts_with(b"\r\n") {
                        self.buf.advance(2);
                        *framing = Framing::Done;
                        continue;
                    }
                    match self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(end) => {
                            let trailers = parse_trailers(&self.buf[..end + 4])?;
                            self.buf.advance(end + 4);
                            *framing = Framing::Done;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        None if self.buf.len() > MAX_HEAD_BYTES => {
                            return Poll::Ready(Some(Err("trailers over 64 KiB".into())));
                        }
                        None => ready!(self.poll_fill_within_body(cx))?,
                    }
                }
            }
        }
    }

    /// Read more of a body that is not over yet: the connection closing
    /// now cuts it short.
    fn poll_fill_within_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match ready!(self.poll_fill(cx))? {
            0 => Poll::Ready(Err(
                "the upstream closed the connection before the chunked body's end".into(),
            )),
            _ => Poll::Ready(Ok(())),
        }
    }
}

enum Parsed {
    Interim,
    Final(Answer),
}

/// A head with more header lines than it was parsed for.
#[derive(Debug)]
struct MoreHeaders;

impl std::fmt::Display for MoreHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("more header lines than parsed for")
    }
}

impl std::error::Error for MoreHeaders {}

/// How an answer's body is delimited, and how far it has been read.
#[derive(Debug, PartialEq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    UntilClose,
    /// Read to its end (or it had none).
    Done,
}

#[derive(Debug, PartialEq)]
pub enum Chunk {
    /// A chunk-size line comes next.
    Size,
    /// This many bytes of the current chunk are left.
    Data(u64),
    /// The CRLF after a chunk's data comes next.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// The size on a chunk-size line (hex digits, then optional extensions).
fn chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err("an invalid chunk-size line".into());
    }
    let text = std::str::from_utf8(digits).map_err(|_| "an invalid chunk-size line")?;
    u64::from_str_radix(text, 16).map_err(|_| "an invalid chunk-size line".into())
}

fn parse_trailers(section: &[u8]) -> Result<HeaderMap, BoxError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = match httparse::parse_headers(section, &mut headers) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        _ => return Err("invalid trailers".into()),
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes())?,
            HeaderValue::from_bytes(h.value)?,
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connection to an upstream that reads one request head, then sends
    /// `pieces` a moment apart and closes.
    async fn upstream(pieces: Vec<&'static [u8]>) -> Conn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = socket.read(&mut head).await;
            for piece in pieces {
                socket.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        Conn::new(Box::new(TokioIo::new(tcp)))
    }

    async fn ask(conn: &mut Conn, head_request: bool) -> Result<Answer, BoxError> {
        let head = if head_request { "HEAD" } else { "GET" };
        let head = format!("{head} / HTTP/1.1\r\nhost: x\r\n\r\n");
        conn.exchange(head.as_bytes(), head_request)
            .await
            .map_err(|f| match f {
                Failure::Closed(e) => format!("closed: {e}").into(),
                Failure::Broken(e) => e,
            })
    }

    /// The body's bytes and trailers, or the first error.
    async fn body(
        conn: &mut Conn,
        framing: &mut Framing,
    ) -> Result<(Vec<u8>, HeaderMap), BoxError> {
        let (mut data, mut trailers) = (Vec::new(), HeaderMap::new());
        while let Some(frame) = std::future::poll_fn(|cx| conn.poll_body(framing, cx)).await {
            match frame?.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().unwrap(),
            }
        }
        Ok((data, trailers))
    }

    #[tokio::test]
    async fn a_content_length_body_arrives_whole_across_reads() {
        let mut conn = upstream(vec![
            b"HTTP/1.1 200 OK\r\ncontent-le",
            b"ngth: 11\r\nx-a: 1\r\n\r\nhello",
            b" world",
        ])
        .await;
        let mut answer = ask(&mut conn, false).await.unwrap();
        assert_eq!(answer.head.status, StatusCode::OK);
        assert_eq!(answer.head.headers["x-a"], "1");
        assert_eq!(answer.framing, Framing::Length(11));
        assert!(answer.reusable);
        let (data, _) = body(&mut conn, &mut answer.framing).await.unwrap();
        assert_eq!(data, b"hello world");
        assert!(conn.is_clean());
    }

    #[tokio::test]
    async fn a_chunked_body_with_extensions_and_trailers() {
        let mut conn = upstream(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;name=v\r\nhel",
            b"lo\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n",
            b"\r\n",
        ])
        .await;
        let mut answer = ask(&mut conn, false).await.unwrap();
        assert!(answer.reusable);
        let (data, trailers) = body(&mut conn, &mut answer.framing).await.unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(trailers["x-checksum"], "abc");
        assert_eq!(answer.framing, Framing::Done);
        assert!(conn.is_clean());
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_ends_the_connection() {
        let mut conn = upstream(vec![b"HTTP/1.1 200 OK\r\n\r\nstream", b"ed"]).await;
        let mut answer = ask(&mut conn, false).await.unwrap();
        assert_eq!(answer.framing, Framing::UntilClose);
        assert!(!answer.reusable);
        let (data, _) = body(&mut conn, &mut answer.framing).await.unwrap();
        assert_eq!(data, b"streamed");
    }

    #[tokio::test]
    async fn answers_without_a_body() {
        // HEAD: the length describes the GET's body, none follows.
        let mut conn = upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]).await;
        let answer = ask(&mut conn, true).await.unwrap();
        assert_eq!(answer.head.headers[CONTENT_LENGTH], "5");
        assert_eq!((answer.framing, answer.reusable), (Framing::Done, true));
        assert!(conn.is_clean());
        // Interim answers are skipped; 204 has no body.
        let mut conn = upstream(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let answer = ask(&mut conn, false).await.unwrap();
        assert_eq!(answer.head.status, StatusCode::NO_CONTENT);
        assert_eq!(answer.framing, Framing::Done);
    }

    #[tokio::test]
    async fn connections_that_cannot_carry_another_request() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"[..],
            b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            let mut conn = upstream(vec![head]).await;
            let answer = ask(&mut conn, false).await.unwrap();
            assert!(!answer.reusable, "{}", String::from_utf8_lossy(head));
        }
        let mut conn = upstream(vec![
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        assert!(ask(&mut conn, false).await.unwrap().reusable);
    }

    /// A head with more header lines than the first parse makes room for
    /// is parsed again for more; past the most it may carry it is an error.
    #[tokio::test]
    async fn heads_with_many_header_lines() {
        let head = |lines: usize| -> &'static [u8] {
            let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
            for i in 1..lines {
                head += &format!("x-h{i}: v{i}\r\n");
            }
            head += "\r\nok";
            Box::leak(head.into_bytes().into_boxed_slice())
        };
        for lines in [FEW_HEADERS, FEW_HEADERS + 1, MAX_HEADERS] {
            let mut conn = upstream(vec![head(lines)]).await;
            let mut answer = ask(&mut conn, false).await.unwrap();
            let headers = &answer.head.headers;
            assert_eq!(headers.len(), lines);
            assert_eq!(headers[CONTENT_LENGTH], "2");
            let last = lines - 1;
            assert_eq!(headers[format!("x-h{last}")], format!("v{last}"));
            let (data, _) = body(&mut conn, &mut answer.framing).await.unwrap();
            assert_eq!(data, b"ok");
            assert!(answer.reusable && conn.is_clean());
        }
        let mut conn = upstream(vec![head(MAX_HEADERS + 1)]).await;
        let err = ask(&mut conn, false).await.err().expect("an error");
        let err = err.to_string();
        assert!(err.contains("too many headers"), "{err:?}");
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_say_what_broke() {
        let cases: [(&[&'static [u8]], &str); 5] = [
            (
                &[b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n"],
                "conflicting content-lengths",
            ),
            (
                &[b"HTTP/1.1 101 Switching Protocols\r\n\r\n"],
                "switched protocols",
            ),
            (&[b"HTTP/1.1 OK\r\n\r\n"], "invalid answer head"),
            (
                &[b"HTTP/1.1 200 OK\r\ncontent-le"],
                "within the answer's head",
            ),
            (
                &[],
                "closed: the upstream closed the connection without answering",
            ),
        ];
        for (pieces, expected) in cases {
            let mut conn = upstream(pieces.to_vec()).await;
            let Err(err) = ask(&mut conn, false).await else {
                panic!("{expected:?}: no error");
            };
            let err = err.to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
        let bodies: [(&'static [u8], &str); 3] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                "5 bytes before the body's end",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "invalid chunk-size line",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY",
                "not ended by CRLF",
            ),
        ];
        for (answer, expected) in bodies {
            let mut conn = upstream(vec![answer]).await;
            let mut answer = ask(&mut conn, false).await.unwrap();
            let err = body(&mut conn, &mut answer.framing)
                .await
                .expect_err("an error")
                .to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }

    #[tokio::test]
    async fn an_idle_connection_knows_when_the_upstream_closed_it() {
        let mut conn = upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
        ask(&mut conn, false).await.unwrap();
        // The upstream closes after its last piece (+2 ms).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.is_open());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let _held = listener.accept().await.unwrap();
        let mut conn = Conn::new(Box::new(TokioIo::new(tcp)));
        assert!(
            conn.is_open(),
            "an upstream that says nothing keeps it open"
        );
    }
}
