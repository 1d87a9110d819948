//! `GET /metrics` and `GET /healthz` over plain HTTP/1.1, one request at a
//! time: scrapes are rare and small, and one thread bounds what a
//! misbehaving client can take.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Serves forever; `render` produces the OpenMetrics text for each scrape.
pub fn serve(listener: TcpListener, render: impl Fn() -> String) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let mut request = [0u8; 4096];
        let mut filled = 0;
        while filled < request.len() {
            match stream.read(&mut request[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
            if request[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&request[..filled]);
        let (status, content_type, body) = if head.starts_with("GET /metrics ") {
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", render())
        } else if head.starts_with("GET /healthz ") {
            ("200 OK", "text/plain", "ok\n".to_string())
        } else {
            ("404 Not Found", "text/plain", "try GET /metrics\n".to_string())
        };
        let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
}
