//! A replica's snapshot as one file, the form openraft sends to a replica
//! that is behind the log's start (a learner, a rejoined replica): the
//! files of a flat directory (a RocksDB checkpoint) in a ustar archive,
//! then `SHA256SUMS` naming each file's digest. Standard tools read it
//! (`tar -x` and `sha256sum -c`), so an operator can inspect one.
//!
//! Packing is deterministic (names in order, no owners, no times), so the
//! same directory gives the same bytes. Unpacking trusts nothing in the
//! archive: a member must be a regular file with a plain name, appear once,
//! and match its digest; nothing may be missing or extra. It writes into a
//! fresh directory beside the target, syncs it, and renames it into place,
//! so a crash leaves either nothing or the whole snapshot.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// The archive's last member: `sha256sum`'s format, one line per file.
pub const DIGESTS_NAME: &str = "SHA256SUMS";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} cannot be packed: {detail}. A snapshot directory holds plain files only")]
    NotPackable { path: PathBuf, detail: String },
    #[error("the snapshot archive {archive} is not one this replica wrote ({detail}); it was damaged on the way or on disk. Ask for the snapshot again")]
    Damaged { archive: PathBuf, detail: String },
    #[error("{path} exists; a snapshot is unpacked into a directory of its own")]
    TargetExists { path: PathBuf },
}

/// What a pack or an unpack handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub files: usize,
    /// The files' bytes, without the archive's headers and padding.
    pub bytes: u64,
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io { action, path: path.to_path_buf(), source }
}

/// Packs the regular files of `dir` into a new archive at `out`, synced.
pub fn pack(dir: &Path, out: &Path) -> Result<ArchiveSummary, ArchiveError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("cannot read", dir))? {
        let entry = entry.map_err(io_error("cannot read", dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error("cannot read", &path))?;
        let name = entry.file_name().into_string().map_err(|_| ArchiveError::NotPackable { path: path.clone(), detail: "not a UTF-8 name".into() })?;
        if !file_type.is_file() {
            return Err(ArchiveError::NotPackable { path, detail: "not a regular file".into() });
        }
        if name == DIGESTS_NAME || !plain_name(&name) {
            return Err(ArchiveError::NotPackable { path, detail: "a name the archive reserves or cannot hold".into() });
        }
        names.push(name);
    }
    names.sort();
    let file = File::create(out).map_err(io_error("cannot create", out))?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    let mut summary = ArchiveSummary::default();
    let mut digests = String::new();
    for name in &names {
        let path = dir.join(name);
        let file = File::open(&path).map_err(io_error("cannot open", &path))?;
        let length = file.metadata().map_err(io_error("cannot read", &path))?.len();
        let mut hashing = HashingReader { inner: BufReader::new(file).take(length), digest: Sha256::new(), read: 0 };
        builder.append_data(&mut header(length), name, &mut hashing).map_err(io_error("cannot write", out))?;
        if hashing.read != length {
            return Err(ArchiveError::NotPackable { path, detail: format!("it changed while it was packed ({length} bytes, then {})", hashing.read) });
        }
        digests.push_str(&format!("{}  {name}\n", hex::encode(hashing.digest.finalize())));
        summary.files += 1;
        summary.bytes += length;
    }
    builder.append_data(&mut header(digests.len() as u64), DIGESTS_NAME, digests.as_bytes()).map_err(io_error("cannot write", out))?;
    let file = builder.into_inner().and_then(|writer| writer.into_inner().map_err(io::IntoInnerError::into_error)).map_err(io_error("cannot write", out))?;
    file.sync_all().map_err(io_error("cannot sync", out))?;
    Ok(summary)
}

/// A ustar header for a regular file of `length` bytes, owned by no one, at time zero.
fn header(length: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(length);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// A name of one normal path component, short enough for a ustar header without extensions.
fn plain_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none() && name.len() <= 100 && !name.contains('\\')
}

struct HashingReader<R> {
    inner: R,
    digest: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.digest.update(&buffer[..count]);
        self.read += count as u64;
        Ok(count)
    }
}

/// Unpacks `archive` into the directory `into`, which must not exist:
/// written beside it first, synced, then renamed into place.
pub fn unpack(archive: &Path, into: &Path) -> Result<ArchiveSummary, ArchiveError> {
    if into.exists() {
        return Err(ArchiveError::TargetExists { path: into.to_path_buf() });
    }
    let partial = partial_path(into);
    if partial.exists() {
        // Left by a crash in an earlier unpack: nothing in it was ever used.
        std::fs::remove_dir_all(&partial).map_err(io_error("cannot remove", &partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_error("cannot create", &partial))?;
    let summary = match unpack_into(archive, &partial) {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error);
        }
    };
    sync_dir(&partial)?;
    std::fs::rename(&partial, into).map_err(io_error("cannot rename into place", into))?;
    if let Some(parent) = into.parent() {
        sync_dir(parent)?;
    }
    Ok(summary)
}

/// Where [`unpack`] writes before the rename.
pub fn partial_path(into: &Path) -> PathBuf {
    let mut name = into.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".partial");
    into.with_file_name(name)
}

fn unpack_into(archive: &Path, dir: &Path) -> Result<ArchiveSummary, ArchiveError> {
    let damaged = |detail: String| ArchiveError::Damaged { archive: archive.to_path_buf(), detail };
    let file = File::open(archive).map_err(io_error("cannot open", archive))?;
    let mut reader = tar::Archive::new(BufReader::new(file));
    let mut computed = BTreeMap::new();
    let mut listed = None;
    let mut summary = ArchiveSummary::default();
    for member in reader.entries().map_err(|e| damaged(e.to_string()))? {
        let mut member = member.map_err(|e| damaged(e.to_string()))?;
        if listed.is_some() {
            return Err(damaged(format!("a member after {DIGESTS_NAME}")));
        }
        if member.header().entry_type() != tar::EntryType::Regular {
            return Err(damaged(format!("a member of type {:?}", member.header().entry_type())));
        }
        let name = member.path().map_err(|e| damaged(e.to_string()))?.to_str().map(str::to_owned);
        let Some(name) = name.filter(|name| plain_name(name)) else {
            return Err(damaged("a member whose name is not a plain file name".into()));
        };
        if name == DIGESTS_NAME {
            let mut text = String::new();
            (&mut member).take(1 << 20).read_to_string(&mut text).map_err(|e| damaged(format!("{DIGESTS_NAME}: {e}")))?;
            listed = Some(parse_digests(&text).map_err(damaged)?);
            continue;
        }
        if computed.contains_key(&name) {
            return Err(damaged(format!("{name} twice")));
        }
        let path = dir.join(&name);
        let mut out = BufWriter::new(File::create_new(&path).map_err(io_error("cannot create", &path))?);
        let mut hashing = HashingReader { inner: &mut member, digest: Sha256::new(), read: 0 };
        io::copy(&mut hashing, &mut out).map_err(|e| damaged(format!("{name}: {e}")))?;
        let file = out.into_inner().map_err(|e| ArchiveError::Io { action: "cannot write", path: path.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_error("cannot sync", &path))?;
        summary.files += 1;
        summary.bytes += hashing.read;
        computed.insert(name, hex::encode(hashing.digest.finalize()));
    }
    let listed = listed.ok_or_else(|| damaged(format!("no {DIGESTS_NAME}")))?;
    if listed != computed {
        let differing = listed.keys().chain(computed.keys()).find(|name| listed.get(*name) != computed.get(*name)).cloned().unwrap_or_default();
        return Err(damaged(format!("{differing} does not match {DIGESTS_NAME}")));
    }
    Ok(summary)
}

/// `sha256sum`'s lines: 64 lowercase hex digits, two spaces, a plain name; each name once.
fn parse_digests(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut digests = BTreeMap::new();
    for line in text.lines() {
        let (digest, name) = line.split_once("  ").ok_or_else(|| format!("a {DIGESTS_NAME} line without a name: {line:?}"))?;
        let hex_digest = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_digest || !plain_name(name) || name == DIGESTS_NAME {
            return Err(format!("a {DIGESTS_NAME} line this replica did not write: {line:?}"));
        }
        if digests.insert(name.to_string(), digest.to_string()).is_some() {
            return Err(format!("{name} twice in {DIGESTS_NAME}"));
        }
    }
    Ok(digests)
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(io_error("cannot sync", dir))
}
