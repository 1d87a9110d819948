//! The web console's files, served at `/`: read once at start from
//! `console.directory` into memory, so that a request can only ever name a
//! file that was there then (no path reaches the file system) and serving
//! one is a map lookup.
//!
//! Every answer carries a Content-Security-Policy that lets the page load
//! scripts, styles, images and fonts from the gateway alone and talk to it
//! alone (its API and WebSocket), with no inline script. Vite names the
//! files under `assets/` by their content's hash, so those are cached for a
//! year; the rest (`index.html`) is revalidated each time by its ETag.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::StatusCode;

/// What a console answer carries besides its body. Styles: the console's
/// stylesheet, and two fixed style elements React Aria inserts (the
/// press-handling one, and the iOS scroll lock's), allowed by their
/// hashes; a new release of it that changes them shows as CSP errors in
/// the browser tests.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'sha256-38RhXrc7EdReTKsOm23ZPOCUgniTUUcjky8QOOrQx6o=' 'sha256-gYiS/BvZvRcK27JIXTuwhZ3hs2+VJ1X+2gUlE+farlg='; \
     img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Bounds on what is read at start: a console is a few megabytes.
const FILES_MAX: usize = 2_000;
const BYTES_MAX: u64 = 64 << 20;

const HASHED_ASSETS: &str = "/assets/";
const CACHE_HASHED: &str = "public, max-age=31536000, immutable";
const CACHE_REVALIDATE: &str = "no-cache";

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("reading the console in {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the console in {0} has no index.html: install marionette-console, or set console.directory to a built console")]
    NoIndex(PathBuf),
    #[error("the console in {0} holds more than {FILES_MAX} files or {BYTES_MAX} bytes: is console.directory the built console?")]
    TooLarge(PathBuf),
}

#[derive(Clone)]
struct Asset {
    body: Bytes,
    content_type: HeaderValue,
    etag: HeaderValue,
    cache_control: &'static str,
}

/// The console's files by URL path (`/index.html`, `/assets/index-3f2a.js`).
#[derive(Clone, Default)]
pub struct Console {
    assets: HashMap<String, Asset>,
}

/// An answer to a console request.
pub struct Served {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Console {
    /// No console: every page answers 404 with what to install.
    pub fn none() -> Self {
        Console::default()
    }

    pub fn files(&self) -> usize {
        self.assets.len()
    }

    /// Reads every file under `directory`. Symbolic links are not followed.
    pub fn load(directory: &Path) -> Result<Self, ConsoleError> {
        let mut assets = HashMap::new();
        let mut pending = vec![directory.to_path_buf()];
        let mut bytes_total = 0u64;
        let read_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConsoleError::Read { path, source }
        };
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).map_err(read_error(&dir))? {
                let entry = entry.map_err(read_error(&dir))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(read_error(&path))?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let Some(url) = url_path(directory, &path) else { continue };
                let body = std::fs::read(&path).map_err(read_error(&path))?;
                bytes_total += body.len() as u64;
                if assets.len() >= FILES_MAX || bytes_total > BYTES_MAX {
                    return Err(ConsoleError::TooLarge(directory.to_path_buf()));
                }
                let hash = blake3::hash(&body);
                let etag = format!("\"{}\"", &hash.to_hex()[..32]);
                let content_type = mime_guess::from_path(&path).first_or_octet_stream();
                let content_type = match content_type.type_() {
                    mime_guess::mime::TEXT | mime_guess::mime::APPLICATION if content_type.get_param("charset").is_none() && is_text(&content_type) => {
                        format!("{content_type}; charset=utf-8")
                    }
                    _ => content_type.to_string(),
                };
                let asset = Asset {
                    body: Bytes::from(body),
                    content_type: HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
                    etag: HeaderValue::from_str(&etag).expect("a hex ETag is a valid header value"),
                    cache_control: if url.starts_with(HASHED_ASSETS) { CACHE_HASHED } else { CACHE_REVALIDATE },
                };
                assets.insert(url, asset);
            }
        }
        if !assets.contains_key("/index.html") {
            return Err(ConsoleError::NoIndex(directory.to_path_buf()));
        }
        Ok(Console { assets })
    }

    /// The answer to GET (or HEAD) `path`: the file, or for a page of the
    /// single-page app (a path with no file extension) its `index.html`.
    /// `None` when the path is neither, so that the caller's 404 applies.
    pub fn serve(&self, path: &str, request: &HeaderMap) -> Option<Served> {
        if self.assets.is_empty() {
            return page_path(path).then(|| Served {
                status: StatusCode::NOT_FOUND,
                headers: security_headers(HeaderValue::from_static("text/plain; charset=utf-8")),
                body: Bytes::from_static(b"no web console is installed here: install the marionette-console package (the API is POST /graphql)\n"),
            });
        }
        let asset = match self.assets.get(path) {
            Some(asset) => asset,
            None if page_path(path) => self.assets.get("/index.html")?,
            None => return None,
        };
        let mut headers = security_headers(asset.content_type.clone());
        headers.insert(ETAG, asset.etag.clone());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(asset.cache_control));
        let fresh = request.get_all(IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == asset.etag.to_str().unwrap_or_default()
        });
        Some(if fresh {
            Served { status: StatusCode::NOT_MODIFIED, headers, body: Bytes::new() }
        } else {
            Served { status: StatusCode::OK, headers, body: asset.body.clone() }
        })
    }
}

/// The headers every console answer carries.
fn security_headers(content_type: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers
}

/// A page of the app rather than a file: `/`, `/trade/BTC-USD`; not `/x.js`.
fn page_path(path: &str) -> bool {
    path.starts_with('/') && !path.rsplit('/').next().unwrap_or_default().contains('.')
}

fn is_text(mime: &mime_guess::Mime) -> bool {
    mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "manifest+json" | "xml")
        || mime.suffix().is_some_and(|suffix| suffix == mime_guess::mime::XML || suffix == mime_guess::mime::JSON)
}

/// `/dir/file` for a file under `root`, from its components; `None` for a
/// name that is not UTF-8 or that a URL could not name plainly.
fn url_path(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).ok()?;
    let mut url = String::new();
    for part in relative.components() {
        let std::path::Component::Normal(part) = part else { return None };
        let part = part.to_str()?;
        if part.starts_with('.') || !part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~@+".contains(c)) {
            return None;
        }
        url.push('/');
        url.push_str(part);
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console_in(dir: &Path, files: &[(&str, &str)]) -> Console {
        for (name, body) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        Console::load(dir).unwrap()
    }

    fn header<'a>(served: &'a Served, name: &str) -> &'a str {
        served.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[test]
    fn serves_files_pages_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let console = console_in(
            dir.path(),
            &[
                ("index.html", "<!doctype html><title>c</title>"),
                ("assets/index-ab12.js", "export {}"),
                ("assets/index-cd34.css", "body{}"),
                ("favicon.svg", "<svg/>"),
            ],
        );
        assert_eq!(console.files(), 4);
        let none = HeaderMap::new();

        let index = console.serve("/", &none).unwrap();
        assert_eq!(index.status, StatusCode::OK);
        assert_eq!(&index.body[..], b"<!doctype html><title>c</title>");
        assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&index, "cache-control"), "no-cache");
        assert_eq!(header(&index, "content-security-policy"), CONTENT_SECURITY_POLICY);
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"), "no inline scripts or styles, no eval");

        // A page of the app is its index; a file is itself, cached for a year when hashed.
        assert_eq!(console.serve("/trade/BTC-USD", &none).unwrap().body, index.body);
        let script = console.serve("/assets/index-ab12.js", &none).unwrap();
        assert_eq!(&script.body[..], b"export {}");
        assert_eq!(header(&script, "content-type"), "text/javascript; charset=utf-8");
        assert_eq!(header(&script, "cache-control"), CACHE_HASHED);
        assert_eq!(header(&console.serve("/favicon.svg", &none).unwrap(), "cache-control"), "no-cache");

        // A missing file is not the index (a stale page asking for old assets sees 404).
        assert!(console.serve("/assets/index-old.js", &none).is_none());
        // No path reaches the file system: this is a page, so the index.
        assert_eq!(console.serve("/../../etc/passwd", &none).unwrap().body, index.body);
        assert!(console.serve("/assets/../index.html", &none).is_none(), "only paths read at start are served");
    }

    #[test]
    fn revalidates_by_etag() {
        let dir = tempfile::tempdir().unwrap();
        let console = console_in(dir.path(), &[("index.html", "one")]);
        let first = console.serve("/", &HeaderMap::new()).unwrap();
        let etag = first.headers.get(ETAG).unwrap().clone();
        let mut asking = HeaderMap::new();
        asking.insert(IF_NONE_MATCH, etag.clone());
        let again = console.serve("/", &asking).unwrap();
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert!(again.body.is_empty());
        asking.insert(IF_NONE_MATCH, HeaderValue::from_static("\"something-else\""));
        assert_eq!(console.serve("/", &asking).unwrap().status, StatusCode::OK);
    }

    #[test]
    fn refuses_a_directory_without_index_and_skips_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.js"), "x").unwrap();
        assert!(matches!(Console::load(dir.path()), Err(ConsoleError::NoIndex(_))));
        assert!(matches!(Console::load(&dir.path().join("missing")), Err(ConsoleError::Read { .. })));
        std::fs::write(dir.path().join("index.html"), "i").unwrap();
        std::fs::write(dir.path().join(".env"), "secret").unwrap();
        std::fs::write(dir.path().join("with space.js"), "x").unwrap();
        let console = Console::load(dir.path()).unwrap();
        assert_eq!(console.files(), 2, "index.html and app.js; not the dotfile nor the odd name");
        assert!(console.serve("/.env", &HeaderMap::new()).is_none());
    }

    #[test]
    fn without_a_console_pages_say_what_to_install() {
        let served = Console::none().serve("/", &HeaderMap::new()).unwrap();
        assert_eq!(served.status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&served.body).contains("marionette-console"));
        assert!(Console::none().serve("/x.js", &HeaderMap::new()).is_none());
    }
}
