//! The TCP listener `serve` accepts on, whose connections turn the answers
//! hyper gives by itself into problems.
//!
//! hyper refuses a request it cannot parse before any of our code runs: a
//! request line over its URI limit (65,534 bytes) is answered `414` with an
//! empty body, a malformed request line or header `400`, a head over its
//! buffer `431`. Every refusal of the API is RFC 9457 problem+json, so the
//! connection watches what hyper writes: a head with one of those statuses and
//! `content-length: 0` (which the router never sends for them: its refusals
//! have bodies) is replaced, whole, by the same status with a problem body.
//! hyper closes the connection after such an answer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A [`TcpListener`] whose connections answer hyper's own refusals as problems.
pub struct ProblemListener(pub TcpListener);

impl axum::serve::Listener for ProblemListener {
    type Io = ProblemIo<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (ProblemIo::new(stream), addr);
                }
                // Per-connection errors (reset before accept): the next one.
                Err(e) if is_connection_error(&e) => continue,
                // Out of file descriptors and such: wait, then try again.
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A connection that rewrites hyper's bodiless refusals (see the module docs).
pub struct ProblemIo<T> {
    inner: T,
    /// A replacement still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// The problem answer that replaces `head`, when `head` is one of hyper's own
/// refusals.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    const PREFIX: &[u8] = b"HTTP/1.1 4";
    if !head.starts_with(PREFIX) || head.len() > 1024 {
        return None;
    }
    let (status, title, code, detail) = match &head[9..12] {
        b"414" => (
            "414 URI Too Long",
            "URI Too Long",
            "uri_too_long",
            "the request's URI is longer than the server reads (65,534 bytes); send long values in a request body, or a shorter cursor or id",
        ),
        b"400" => (
            "400 Bad Request",
            "Bad Request",
            "malformed_request",
            "the request line or a header is not valid HTTP/1.1",
        ),
        b"431" => (
            "431 Request Header Fields Too Large",
            "Request Header Fields Too Large",
            "headers_too_large",
            "the request's headers are larger than the server reads; send fewer or shorter headers",
        ),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let head_end = text.find("\r\n\r\n")?;
    let bodiless = text[..head_end]
        .lines()
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    if !bodiless || head_end + 4 != head.len() {
        return None;
    }
    let body = serde_json::json!({
        "type": format!("urn:waymark:problem:{code}"),
        "title": title,
        "status": status[..3].parse::<u16>().ok()?,
        "code": code,
        "detail": detail,
    })
    .to_string();
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what is left of a replacement; ready once it is all out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(problem) = replacement(buf) {
            this.pending = Some((problem, 0));
            std::task::ready!(this.poll_pending(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_refusals_become_problems() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(head).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.contains("content-type: application/problem+json"));
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["status"], 414);
        assert_eq!(body["code"], "uri_too_long");
    }

    #[test]
    fn answers_with_bodies_pass_through() {
        // The router's own problems have bodies; other statuses are not touched.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 57\r\n\r\n";
        assert!(replacement(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(ok).is_none());
        let with_body = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\nextra";
        assert!(replacement(with_body).is_none());
    }
}

/// The address a connection came from, for the per-address limits of
/// signing in (`ConnectInfo<Peer>` in a request's extensions).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ProblemListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, ProblemListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}
