//! Which web pages may open a WebSocket. A browser sends `Origin` with every
//! WebSocket upgrade, and with it the user's login cookie: without this check
//! any site the user visits could subscribe to their orders as them. Clients
//! that are not browsers send no `Origin` and are not asked for one.

use hyper::Uri;

/// A web origin (RFC 6454): scheme, host and port, lower case, the scheme's
/// default port filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `scheme://host[:port]` with nothing after it, or None.
pub fn parse_origin(text: &str) -> Option<Origin> {
    let uri: Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    // An origin has no user, path or query: "https://a.example/x" is a URL.
    if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || text.ends_with('/') || uri.query().is_some() {
        return None;
    }
    let port = match authority.port_u16() {
        Some(port) => port,
        None => default_port(&scheme)?,
    };
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(Origin { scheme, host, port })
}

impl Origin {
    /// Whether this origin names the host a request was sent to (its `Host`
    /// header), the port taken from the origin's scheme when Host has none.
    fn is_host(&self, host_header: &str) -> bool {
        let Ok(authority) = host_header.parse::<hyper::http::uri::Authority>() else { return false };
        let port = authority.port_u16().or(default_port(&self.scheme));
        authority.host().eq_ignore_ascii_case(&self.host) && port == Some(self.port)
    }
}

/// Whether an upgrade with this `Origin` (None: not a browser) sent to this
/// `Host` may open a WebSocket: the gateway's own pages and the configured
/// origins may.
pub fn allowed(origin: Option<&str>, host: Option<&str>, configured: &[Origin]) -> bool {
    let Some(origin) = origin else { return true };
    let Some(origin) = parse_origin(origin) else { return false };
    configured.contains(&origin) || host.is_some_and(|host| origin.is_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origins(list: &[&str]) -> Vec<Origin> {
        list.iter().map(|o| parse_origin(o).unwrap()).collect()
    }

    #[test]
    fn origins_are_scheme_host_and_port_with_nothing_after() {
        assert_eq!(parse_origin("https://Console.Example.com"), parse_origin("https://console.example.com:443"));
        assert_ne!(parse_origin("http://console.example.com"), parse_origin("https://console.example.com"));
        assert_ne!(parse_origin("https://console.example.com:8443"), parse_origin("https://console.example.com"));
        for bad in [
            "null",
            "",
            "console.example.com",
            "https://",
            "https://a.example/",
            "https://a.example/x",
            "https://a.example?x",
            "https://u@a.example",
            "ftp://a.example",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_gateways_own_pages_and_configured_origins_may_and_no_other() {
        let configured = origins(&["https://console.bank.example"]);
        assert!(allowed(None, Some("api.bank.example"), &configured), "a client that is not a browser");
        assert!(allowed(Some("https://console.bank.example"), Some("api.bank.example"), &configured));
        assert!(allowed(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080"), &configured), "the gateway's own page");
        assert!(allowed(Some("https://api.bank.example"), Some("api.bank.example"), &configured), "443 by the scheme");
        assert!(!allowed(Some("https://evil.example"), Some("api.bank.example"), &configured));
        assert!(!allowed(Some("http://127.0.0.1:9999"), Some("127.0.0.1:8080"), &configured), "another port is another origin");
        assert!(!allowed(Some("https://api.bank.example.evil.example"), Some("api.bank.example"), &configured));
        assert!(!allowed(Some("null"), Some("api.bank.example"), &configured), "a sandboxed page or a file");
        assert!(!allowed(Some("https://console.bank.example"), None, &[]), "no Host: only what is configured");
    }

    proptest! {
        #[test]
        fn any_text_is_an_origin_or_refused_without_a_panic(origin in "\\PC{0,40}", host in "\\PC{0,40}") {
            let _ = allowed(Some(&origin), Some(&host), &[]);
        }

        #[test]
        fn a_written_origin_reads_back(scheme in "(http|https)", host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,6}){0,2}", port in proptest::option::of(1u16..)) {
            let text = match port { Some(port) => format!("{scheme}://{host}:{port}"), None => format!("{scheme}://{host}") };
            let origin = parse_origin(&text).expect("parses");
            let host_header = match port { Some(port) => format!("{host}:{port}"), None => host.clone() };
            prop_assert!(allowed(Some(&text.to_uppercase()), Some(&host_header), &[]), "{} on {}", text, host_header);
            prop_assert_eq!(origin.port, port.unwrap_or(if scheme == "https" { 443 } else { 80 }));
        }
    }
}
