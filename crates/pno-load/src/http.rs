//! A minimal HTTP/1.1 client over `tokio::net::TcpStream`, for loopback targets only.
//!
//! One prepared request is sent again and again; each in-flight request holds its own
//! connection, taken from a pool of idle keep-alive connections or freshly opened. Responses are
//! framed by `Content-Length`, `Transfer-Encoding: chunked`, or the end of the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{LoadError, Result};

/// Longest status or header line accepted, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one response.
const MAX_HEADERS: usize = 128;
/// Largest response body accepted, in bytes.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Most idle connections kept for reuse.
const MAX_IDLE: usize = 4096;

/// A parsed `http://` target on the loopback interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect (always a loopback address).
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port` as written in the URL).
    pub authority: String,
    /// The request target: path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/PATH]`, refusing any host other than `127.0.0.1`,
    /// `localhost` or `::1` (written `[::1]`) with [`LoadError::NotLoopback`].
    ///
    /// ```
    /// let t = pno_load::Target::parse("http://127.0.0.1:8000/v2/models/pno/infer").unwrap();
    /// assert_eq!(t.addr.port(), 8000);
    /// assert_eq!(t.path, "/v2/models/pno/infer");
    /// assert!(pno_load::Target::parse("http://example.com/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |expected| LoadError::Url {
            url: url.to_owned(),
            expected,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("an http:// URL (https is not supported on loopback)"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(bad("no user information in the authority"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| bad("a closing ']'"))?;
            (h, tail)
        } else {
            match authority.rfind(':') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            }
        };
        let port = match port {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| bad("a port number in 0..=65535 after ':'"))?,
        };
        let ip = match host.to_ascii_lowercase().as_str() {
            "127.0.0.1" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "::1" => IpAddr::V6(Ipv6Addr::LOCALHOST),
            "" => return Err(bad("a host")),
            _ => {
                return Err(LoadError::NotLoopback {
                    host: host.to_owned(),
                });
            }
        };
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            authority: authority.to_owned(),
            path,
        })
    }
}

/// Splits a `Name: value` header as given on the command line.
pub fn parse_header(header: &str) -> Result<(String, String)> {
    match header.split_once(':') {
        Some((name, value))
            if !name.trim().is_empty()
                && !name.contains(char::is_whitespace)
                && !header.contains(['\r', '\n']) =>
        {
            Ok((name.to_owned(), value.trim().to_owned()))
        }
        _ => Err(LoadError::Config {
            field: "header",
            expected: "'Name: value'",
            got: header.to_owned(),
        }),
    }
}

/// An HTTP answer: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (as sent) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client bound to one target and one prepared request, with a keep-alive connection pool.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    request: Arc<[u8]>,
    idle: Mutex<Vec<BufReader<TcpStream>>>,
}

impl Client {
    /// Prepares `POST target` with `body` (or `GET` without one) and extra `headers`.
    /// `Host`, `Content-Length` and `User-Agent` are set here; no `Content-Type` is added.
    pub fn new(target: &Target, headers: &[(String, String)], body: Option<&[u8]>) -> Self {
        let method = if body.is_some() { "POST" } else { "GET" };
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pno-load/{}\r\n",
            target.path,
            target.authority,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        Self {
            addr: target.addr,
            request: request.into(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends the prepared request once and reads the whole answer. A reused keep-alive
    /// connection that the server closed meanwhile is replaced by a fresh one, once.
    /// Not bounded in time: callers wrap it in a timeout (see [`crate::send_with_retry_after`]).
    pub async fn send(&self) -> Result<HttpResponse> {
        if let Some(conn) = self.take_idle() {
            match self.exchange(conn).await {
                Ok(resp) => return Ok(resp),
                Err(Exchange::Stale(_)) => {}
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|source| LoadError::Connect {
                addr: self.addr,
                source,
            })?;
        let _ = stream.set_nodelay(true);
        match self.exchange(BufReader::new(stream)).await {
            Ok(resp) => Ok(resp),
            Err(Exchange::Stale(source)) => Err(LoadError::Io {
                addr: self.addr,
                source,
            }),
            Err(Exchange::Failed(e)) => Err(e),
        }
    }

    fn take_idle(&self) -> Option<BufReader<TcpStream>> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    fn put_idle(&self, conn: BufReader<TcpStream>) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }

    async fn exchange(&self, mut conn: BufReader<TcpStream>) -> Result<HttpResponse, Exchange> {
        let io = |source| {
            Exchange::Failed(LoadError::Io {
                addr: self.addr,
                source,
            })
        };
        if let Err(e) = conn.get_mut().write_all(&self.request).await {
            return Err(Exchange::Stale(e));
        }
        let mut line = Vec::new();
        match read_line(&mut conn, &mut line).await {
            Ok(0) => {
                let eof = std::io::ErrorKind::UnexpectedEof;
                return Err(Exchange::Stale(eof.into()));
            }
            Err(e) => return Err(Exchange::Stale(e)),
            Ok(_) => {}
        }
        let status_line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
            return Err(Exchange::Failed(protocol("status line", &status_line)));
        };
        let mut headers = Vec::new();
        loop {
            line.clear();
            if read_line(&mut conn, &mut line).await.map_err(io)? == 0 {
                return Err(Exchange::Failed(protocol("headers", "connection closed")));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if text.is_empty() {
                break;
            }
            let (name, value) = text
                .split_once(':')
                .ok_or_else(|| Exchange::Failed(protocol("header", text)))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
            if headers.len() > MAX_HEADERS {
                return Err(Exchange::Failed(protocol(
                    "header count",
                    "too many headers",
                )));
            }
        }
        let mut resp = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let close = version == "HTTP/1.0"
            || resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let no_body = status < 200 || status == 204 || status == 304;
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = resp.header("content-length").map(|v| v.parse::<usize>());
        let reusable = if no_body {
            true
        } else if chunked {
            read_chunked(&mut conn, &mut resp.body)
                .await
                .map_err(Exchange::Failed)?;
            true
        } else if let Some(length) = length {
            let length =
                length.map_err(|_| Exchange::Failed(protocol("Content-Length", "not a number")))?;
            if length > MAX_BODY {
                return Err(Exchange::Failed(protocol(
                    "Content-Length",
                    &length.to_string(),
                )));
            }
            resp.body.resize(length, 0);
            conn.read_exact(&mut resp.body).await.map_err(io)?;
            true
        } else {
            (&mut conn)
                .take(MAX_BODY as u64)
                .read_to_end(&mut resp.body)
                .await
                .map_err(io)?;
            false
        };
        if reusable && !close {
            self.put_idle(conn);
        }
        Ok(resp)
    }
}

/// Why one exchange on a connection did not produce an answer.
enum Exchange {
    /// Nothing came back on a connection (the cause given); a reused one may have been closed
    /// by the server meanwhile.
    Stale(std::io::Error),
    /// A real failure.
    Failed(LoadError),
}

fn protocol(what: &'static str, got: &str) -> LoadError {
    LoadError::Protocol {
        what,
        got: got.chars().take(120).collect(),
    }
}

async fn read_line<R: AsyncRead + Unpin>(
    conn: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let n = conn.take(MAX_LINE).read_until(b'\n', line).await?;
    if n > 0 && !line.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long or truncated",
        ));
    }
    Ok(n)
}

async fn read_chunked<R: AsyncRead + Unpin>(
    conn: &mut BufReader<R>,
    body: &mut Vec<u8>,
) -> Result<()> {
    let bad = |what, got: &str| protocol(what, got);
    let mut line = Vec::new();
    loop {
        line.clear();
        read_line(conn, &mut line)
            .await
            .map_err(|e| bad("chunk size", &e.to_string()))?;
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size", size))?;
        if size == 0 {
            loop {
                line.clear();
                let n = read_line(conn, &mut line)
                    .await
                    .map_err(|e| bad("trailer", &e.to_string()))?;
                if n == 0 || line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("chunked body", "larger than the body limit"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])
            .await
            .map_err(|e| bad("chunk", &e.to_string()))?;
        line.clear();
        read_line(conn, &mut line)
            .await
            .map_err(|e| bad("chunk end", &e.to_string()))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let t = Target::parse("http://localhost:8080/v2/models/pno/infer?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "localhost:8080");
        assert_eq!(t.path, "/v2/models/pno/infer?x=1");
        let t = Target::parse("http://[::1]:9").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.path, "/");
        assert_eq!(Target::parse("http://127.0.0.1").unwrap().addr.port(), 80);
    }

    #[test]
    fn refuses_non_loopback_and_malformed_urls() {
        for url in [
            "http://10.0.0.1:80/",
            "http://example.com/",
            "http://127.0.0.2/",
            "http://0.0.0.0:1/",
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(matches!(err, LoadError::NotLoopback { .. }), "{url}: {err}");
            assert!(err.to_string().contains("only sends to loopback"), "{err}");
        }
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http://127.0.0.1:x/",
            "http://u@127.0.0.1/",
            "http://[::1/",
        ] {
            assert!(
                matches!(Target::parse(url), Err(LoadError::Url { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn parses_headers() {
        assert_eq!(
            parse_header("Authorization: Bearer K").unwrap(),
            ("Authorization".to_owned(), "Bearer K".to_owned())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: v").is_err());
        assert!(parse_header("X: a\r\nInjected: b").is_err());
    }
}
