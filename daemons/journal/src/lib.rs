//! Marionette's write-ahead journal.
//!
//! A directory of segment files `journal-<first sequence>.jnl`, each a
//! header naming the journal's format and what its records hold (whose
//! records, in which of their owner's format versions; see [`Content`]),
//! then a run of checksummed, consecutively sequenced records (see
//! [`scan`]). A segment whose header names another format is refused at
//! start with both versions in the message, never read as damage. Appends go
//! through io_uring as one write linked to one `fdatasync` per batch (group
//! commit); a batch counts as durable only when both completed in full. Any
//! write or sync failure is returned and the journal refuses further use: the
//! caller must stop, never retry, because after a failed fsync the kernel may
//! already have dropped the dirty pages.
//!
//! A thread writes zeros ahead of the last segment's end and syncs them (see
//! [`PREPARED_AHEAD_BYTES`]), so that a batch overwrites blocks the file
//! already has: its fdatasync then flushes the data alone, where a write
//! past the end changes the file's size and makes every sync commit the
//! filesystem's own journal as well. Start-up takes zeros after the last
//! record of the last segment for the prepared space they are, not damage.
//!
//! This is the only crate that knows io_uring.

pub mod scan;
pub mod state_file;

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use io_uring::{opcode, squeue, types, IoUring};
pub use scan::{encode_record, scan_segment, Damage, Record, Scan, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O failed: {operation} {path}: {source}")]
    Io { operation: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "journal segment {path} is corrupt at byte {offset} (expected sequence {expected_sequence}): {detail}. \
         Acknowledged data is damaged; restore this host's data directory from a replica or backup, or move the \
         segment aside only if you accept losing what it held"
    )]
    Corrupt { path: PathBuf, offset: u64, expected_sequence: u64, detail: &'static str },
    #[error(
        "journal segment {path} is in journal format {found} (an earlier release's); this release reads format \
         {JOURNAL_FORMAT}. Drain the data directory with the release that wrote it (stop it cleanly after a snapshot), \
         or move the directory aside to start empty"
    )]
    OldFormat { path: PathBuf, found: u16 },
    #[error(
        "journal segment {path} holds {found} records; this daemon reads {expected}. Run the release that wrote this \
         data directory and drain it (stop it cleanly), or move the directory aside to start empty; the daemons of one \
         release must all be upgraded together"
    )]
    ContentMismatch { path: PathBuf, found: Content, expected: Content },
    #[error("journal sequence gap: {detail}")]
    Gap { detail: String },
    #[error(
        "the journal in {dir} ends at sequence {last} but held sequence {durable_through} durably (it was synced and \
         acknowledged): records this replica promised to keep are gone. Do not start it on this directory: move it \
         aside and rejoin the replica to its cluster (marionettectl cluster rejoin), which copies the state from the others"
    )]
    Lost { dir: PathBuf, last: u64, durable_through: u64 },
    #[error("journal write failed ({source}); the disk may be full or failing. Nothing of this batch was acknowledged")]
    WriteFailed { source: std::io::Error },
    #[error("journal fdatasync failed ({source}); durability is unknown, so the daemon must stop and recover from the journal")]
    SyncFailed { source: std::io::Error },
    #[error("a journal record of {bytes} bytes is over the limit of {RECORD_PAYLOAD_BYTES_MAX}")]
    RecordTooLarge { bytes: usize },
    #[error("the journal failed earlier and refuses further writes")]
    Poisoned,
}

/// The journal's own format: 1 wrote `.log` segments, 2 records without a
/// segment header, 3 segments with a [`Content`] header, 4 records with
/// their Raft term.
pub const JOURNAL_FORMAT: u16 = 4;

/// `MRNTJN`, the journal format, the content's kind and version, two zero
/// bytes, and a crc32c of the sixteen before it.
pub const SEGMENT_HEADER_BYTES: usize = 20;
const SEGMENT_MAGIC: &[u8; 6] = b"MRNTJN";

/// What a journal's records hold: whose records (`b"LDGR"`, `b"MTCH"`) in
/// which version of their owner's format. The journal only compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    pub kind: [u8; 4],
    pub version: u16,
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} format {}", String::from_utf8_lossy(&self.kind), self.version)
    }
}

/// A segment's header for `content`.
pub fn segment_header(content: Content) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[..6].copy_from_slice(SEGMENT_MAGIC);
    header[6..8].copy_from_slice(&JOURNAL_FORMAT.to_le_bytes());
    header[8..12].copy_from_slice(&content.kind);
    header[12..14].copy_from_slice(&content.version.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..16]);
    header[16..].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// What a segment's first bytes say.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// Shorter than a header, and what there is of it matches.
    Unfinished,
    /// No header: a segment of journal format 2.
    Missing,
    Damaged,
    Found {
        format: u16,
        content: Content,
    },
}

fn read_header(bytes: &[u8]) -> Header {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return if SEGMENT_MAGIC.starts_with(&bytes[..bytes.len().min(6)]) { Header::Unfinished } else { Header::Missing };
    }
    if &bytes[..6] != SEGMENT_MAGIC {
        return Header::Missing;
    }
    if crc32c::crc32c(&bytes[..16]).to_le_bytes() != bytes[16..20] || bytes[14..16] != [0, 0] {
        return Header::Damaged;
    }
    let format = u16::from_le_bytes([bytes[6], bytes[7]]);
    let content = Content { kind: bytes[8..12].try_into().expect("4 bytes"), version: u16::from_le_bytes([bytes[12], bytes[13]]) };
    Header::Found { format, content }
}

/// Zeros kept written and synced beyond the last record. An fdatasync
/// after writing into such blocks measured about 30% faster than one after
/// an append on this project's ext4 machines (BENCHMARKS.md); PostgreSQL
/// zero-fills its WAL segments for the same reason. A new stretch is asked
/// for when less than half of this is left, and written while batches go on.
pub const PREPARED_AHEAD_BYTES: u64 = 2 << 20;

/// Writes zeros ahead of the journal's end on its own thread: a request is
/// (the segment, from, to), its answer the new end of the prepared space.
struct Preparer {
    requests: Option<mpsc::Sender<(File, u64, u64, std::time::Duration)>>,
    done: mpsc::Receiver<std::io::Result<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The end of the stretch being written, while one is.
    preparing: Option<u64>,
    /// See [`Journal::delay_zeros`].
    delay: std::time::Duration,
    /// Writing zeros failed (a full disk, say): batches append from then on.
    given_up: bool,
}

impl Preparer {
    fn start() -> std::io::Result<Preparer> {
        let (requests, inbox) = mpsc::channel::<(File, u64, u64, std::time::Duration)>();
        let (answers, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("journal-zeros".into()).spawn(move || {
            static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
            for (file, from, to, delay) in inbox {
                std::thread::sleep(delay);
                let mut at = from;
                let written = loop {
                    if at >= to {
                        break file.sync_data().map(|()| to);
                    }
                    let length = (to - at).min(ZEROS.len() as u64) as usize;
                    if let Err(error) = file.write_all_at(&ZEROS[..length], at) {
                        break Err(error);
                    }
                    at += length as u64;
                };
                if answers.send(written).is_err() {
                    return;
                }
            }
        })?;
        Ok(Preparer { requests: Some(requests), done, thread: Some(thread), preparing: None, delay: std::time::Duration::ZERO, given_up: false })
    }

    fn request(&mut self, file: &File, from: u64, to: u64) -> std::io::Result<()> {
        debug_assert!(self.preparing.is_none(), "one stretch at a time");
        let file = file.try_clone()?;
        self.requests
            .as_ref()
            .expect("set until drop")
            .send((file, from, to, self.delay))
            .map_err(|_| std::io::Error::other("the journal's zero-writing thread is gone"))?;
        self.preparing = Some(to);
        Ok(())
    }

    /// The end of a finished stretch: waiting for it if `wait`, else only if it is done.
    fn collect(&mut self, wait: bool) -> std::io::Result<Option<u64>> {
        if self.preparing.is_none() {
            return Ok(None);
        }
        let answer = if wait {
            self.done.recv().map_err(|_| std::io::Error::other("the journal's zero-writing thread is gone"))?
        } else {
            match self.done.try_recv() {
                Ok(answer) => answer,
                Err(mpsc::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => return Err(std::io::Error::other("the journal's zero-writing thread is gone")),
            }
        };
        self.preparing = None;
        answer.map(Some)
    }
}

impl Drop for Preparer {
    /// Waits for the stretch being written: nothing may write to a segment
    /// after its journal is gone (the next owner may cut or remove it).
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What start-up found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Records with sequence >= the requested replay start, in order.
    pub records: Vec<Record>,
    /// Set when a torn tail was cut off the last segment: (segment, offset, bytes dropped).
    pub truncated: Option<(PathBuf, u64, u64)>,
    pub segments: usize,
    /// The last segment's header was unfinished: it is written anew.
    pub rewrite_header: bool,
}

impl Recovery {
    /// The torn tail that was cut, for a log line: `<segment> at byte <offset>: <bytes> bytes`.
    pub fn truncated_text(&self) -> Option<String> {
        self.truncated.as_ref().map(|(path, offset, bytes)| format!("{} at byte {offset}: {bytes} bytes", path.display()))
    }
}

struct Segment {
    first_sequence: u64,
    path: PathBuf,
}

pub struct Journal {
    dir: PathBuf,
    content: Content,
    segments: Vec<Segment>,
    file: File,
    offset: u64,
    next_sequence: u64,
    ring: IoUring,
    buffer: Vec<u8>,
    in_flight: Option<Range<u64>>,
    /// The last segment's length: from `offset` to here it holds synced zeros.
    prepared_until: u64,
    preparer: Preparer,
    poisoned: bool,
    /// See [`Journal::inject_sync_failure`]: (batches still to sync normally, the errno after).
    sync_fault: Option<(u64, i32)>,
}

/// Test hook for the real daemons: with this set to `n` in a daemon's
/// environment, its journal behaves as [`Journal::inject_sync_failure`]`(n, EIO)`
/// says, and logs that it does. Never set in the shipped units.
pub const SYNC_FAULT_ENV: &str = "MARIONETTE_FAULT_SYNC_EIO_AFTER_BATCHES";

/// Segment files of the current record format (format 1 used `.log`).
const SEGMENT_EXTENSION: &str = "jnl";

fn io_error<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io { operation, path: path.to_path_buf(), source }
}

fn segment_path(dir: &Path, first_sequence: u64) -> PathBuf {
    dir.join(format!("journal-{first_sequence:020}.{SEGMENT_EXTENSION}"))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("fsync directory", dir))
}

/// Writes `content`'s header at the start of `file` (emptied first) and syncs it.
fn write_header(file: &File, path: &Path, content: Content) -> Result<(), JournalError> {
    file.set_len(0).map_err(io_error("truncate segment", path))?;
    file.write_all_at(&segment_header(content), 0).map_err(io_error("write the header of segment", path))?;
    file.sync_all().map_err(io_error("fsync segment", path))
}

/// A segment file's header and whole records: without the zeros written
/// ahead of its end (or a torn tail). For tests and tools that read segments.
pub fn segment_written_bytes(path: &Path) -> Result<Vec<u8>, JournalError> {
    let first_sequence = path
        .file_name()
        .and_then(|name| name.to_str()?.strip_prefix("journal-")?.strip_suffix(&format!(".{SEGMENT_EXTENSION}"))?.parse::<u64>().ok())
        .ok_or_else(|| io_error("name a segment", path)(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mut bytes = fs::read(path).map_err(io_error("read segment", path))?;
    let records = bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or_default();
    let end = SEGMENT_HEADER_BYTES + scan_segment(records, first_sequence).valid_bytes as usize;
    bytes.truncate(end);
    Ok(bytes)
}

/// Creates a new segment with its header, durably.
fn create_segment(dir: &Path, first_sequence: u64, content: Content) -> Result<(File, PathBuf), JournalError> {
    let path = segment_path(dir, first_sequence);
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io_error("create segment", &path))?;
    write_header(&file, &path, content)?;
    sync_dir(dir)?;
    Ok((file, path))
}

impl Journal {
    /// Opens (or creates) the journal of `content` in `dir`, verifies every
    /// segment, cuts a torn tail off the last one, and returns the records
    /// from `replay_from` on (0: from the oldest segment's first, whatever it is).
    pub fn open(dir: &Path, replay_from: u64, content: Content) -> Result<(Journal, Recovery), JournalError> {
        Journal::open_durable(dir, replay_from, content, 0)
    }

    /// [`Journal::open`], knowing that every record through
    /// `durable_through` was synced (a Raft replica's acknowledged entries,
    /// which it keeps track of in its own synced file): damage at or before
    /// it is never taken for a torn tail, and a journal ending before it is
    /// refused ([`JournalError::Lost`]). Without it, damage to the last
    /// batch cannot be told from a write the crash cut short.
    pub fn open_durable(dir: &Path, replay_from: u64, content: Content, durable_through: u64) -> Result<(Journal, Recovery), JournalError> {
        fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error("list directory", dir))? {
            let entry = entry.map_err(io_error("list directory", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(rest) = name.strip_prefix("journal-") else { continue };
            if rest.strip_suffix(".log").is_some_and(|first| first.parse::<u64>().is_ok()) {
                return Err(JournalError::OldFormat { path: entry.path(), found: 1 });
            }
            if let Some(first) = rest.strip_suffix(&format!(".{SEGMENT_EXTENSION}")) {
                if let Ok(first_sequence) = first.parse::<u64>() {
                    segments.push(Segment { first_sequence, path: entry.path() });
                }
            }
        }
        segments.sort_by_key(|s| s.first_sequence);
        // 0: from wherever the oldest segment starts (a Raft log after a reset).
        let replay_from = if replay_from == 0 { segments.first().map_or(1, |s| s.first_sequence) } else { replay_from };
        if segments.is_empty() {
            let (_, path) = create_segment(dir, replay_from, content)?;
            segments.push(Segment { first_sequence: replay_from, path });
        }
        if segments[0].first_sequence > replay_from {
            return Err(JournalError::Gap {
                detail: format!(
                    "replay must start at sequence {replay_from} but the oldest segment {} starts at {}",
                    segments[0].path.display(),
                    segments[0].first_sequence
                ),
            });
        }
        let mut recovery = Recovery { segments: segments.len(), ..Recovery::default() };
        let mut expected = segments[0].first_sequence;
        let mut valid_bytes = 0;
        let mut file_bytes = 0;
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            if segment.first_sequence != expected {
                return Err(JournalError::Gap {
                    detail: format!("segment {} starts at {} but {expected} was expected", segment.path.display(), segment.first_sequence),
                });
            }
            let mut bytes = Vec::new();
            File::open(&segment.path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_error("read segment", &segment.path))?;
            let header = read_header(&bytes);
            // The header is synced before any record is written, so a last
            // segment holding no more than a header's bytes, not a whole
            // valid one, was being created when the process stopped.
            let unfinished = i == last && bytes.len() <= SEGMENT_HEADER_BYTES && !matches!(header, Header::Found { .. });
            match header {
                _ if unfinished => {
                    tracing::warn!(segment = %segment.path.display(), bytes = bytes.len(), "journal segment created but its header unfinished by a crash; writing it");
                    bytes.clear();
                    recovery.rewrite_header = true;
                }
                Header::Found { format, content: found } if format == JOURNAL_FORMAT && found == content => {}
                Header::Found { format, .. } if format != JOURNAL_FORMAT => return Err(JournalError::OldFormat { path: segment.path.clone(), found: format }),
                Header::Found { content: found, .. } => return Err(JournalError::ContentMismatch { path: segment.path.clone(), found, expected: content }),
                // Format 2 had no header: its segments begin with a whole record of the file's first sequence.
                Header::Missing if !scan_segment(&bytes, segment.first_sequence).records.is_empty() => {
                    return Err(JournalError::OldFormat { path: segment.path.clone(), found: 2 });
                }
                Header::Missing => {
                    return Err(JournalError::Corrupt {
                        path: segment.path.clone(),
                        offset: 0,
                        expected_sequence: expected,
                        detail: "the segment's header is damaged",
                    });
                }
                Header::Unfinished | Header::Damaged => {
                    return Err(JournalError::Corrupt {
                        path: segment.path.clone(),
                        offset: 0,
                        expected_sequence: expected,
                        detail: "the segment's header is damaged",
                    });
                }
            }
            let records = &bytes[bytes.len().min(SEGMENT_HEADER_BYTES)..];
            let scan = scan_segment(records, segment.first_sequence);
            // Offsets in the file, not in its records.
            let in_file = |offset: u64| offset + SEGMENT_HEADER_BYTES as u64;
            let damaged_sequence = expected + scan.records.len() as u64;
            match scan.damage {
                None => {}
                Some(Damage::TornTail { offset }) if damaged_sequence <= durable_through => {
                    return Err(JournalError::Corrupt {
                        path: segment.path.clone(),
                        offset: in_file(offset),
                        expected_sequence: damaged_sequence,
                        detail: "damage at or before the durable index: a record that was synced and acknowledged, not a torn write",
                    });
                }
                // The zeros written ahead of the end, nothing written over them yet.
                Some(Damage::TornTail { offset }) if i == last && records[offset as usize..].iter().all(|&b| b == 0) => {}
                Some(Damage::TornTail { offset }) if i == last => {
                    let offset = in_file(offset);
                    let dropped = bytes.len() as u64 - offset;
                    tracing::warn!(segment = %segment.path.display(), offset, dropped, "journal tail torn by a crash; truncating it");
                    recovery.truncated = Some((segment.path.clone(), offset, dropped));
                }
                Some(Damage::TornTail { offset }) => {
                    return Err(JournalError::Corrupt {
                        path: segment.path.clone(),
                        offset: in_file(offset),
                        expected_sequence: expected + scan.records.len() as u64,
                        detail: "damaged tail of a segment that a later segment follows",
                    });
                }
                Some(Damage::Corrupt { offset, detail }) => {
                    return Err(JournalError::Corrupt {
                        path: segment.path.clone(),
                        offset: in_file(offset),
                        expected_sequence: expected + scan.records.len() as u64,
                        detail,
                    });
                }
            }
            expected += scan.records.len() as u64;
            valid_bytes = in_file(scan.valid_bytes);
            file_bytes = bytes.len().max(SEGMENT_HEADER_BYTES) as u64;
            recovery.records.extend(scan.records.into_iter().filter(|r| r.sequence >= replay_from));
        }
        if expected < replay_from {
            return Err(JournalError::Gap { detail: format!("replay must start at {replay_from} but the journal ends before {expected}") });
        }
        if expected <= durable_through {
            return Err(JournalError::Lost { dir: dir.to_path_buf(), last: expected - 1, durable_through });
        }
        let tail = &segments[last].path;
        let file = OpenOptions::new().read(true).write(true).open(tail).map_err(io_error("open segment", tail))?;
        let prepared_until = if recovery.rewrite_header {
            write_header(&file, tail, content)?;
            SEGMENT_HEADER_BYTES as u64
        } else if recovery.truncated.is_some() {
            file.set_len(valid_bytes).map_err(io_error("truncate segment", tail))?;
            file.sync_all().map_err(io_error("fsync segment", tail))?;
            valid_bytes
        } else {
            file_bytes
        };
        let preparer = Preparer::start().map_err(io_error("start the zero-writing thread for", dir))?;
        let ring = IoUring::new(8).map_err(io_error("set up io_uring for", dir))?;
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            content,
            segments,
            file,
            offset: valid_bytes,
            next_sequence: expected,
            ring,
            buffer: Vec::new(),
            in_flight: None,
            prepared_until,
            preparer,
            poisoned: false,
            sync_fault: None,
        };
        if let Some(batches) = std::env::var(SYNC_FAULT_ENV).ok().and_then(|v| v.parse().ok()) {
            tracing::warn!(env = SYNC_FAULT_ENV, batches, "FAULT INJECTION: every fdatasync after this many batches reports EIO");
            journal.inject_sync_failure(batches, libc::EIO);
        }
        Ok((journal, recovery))
    }

    /// Keeps io_uring's worker threads (which run the fdatasync) on these CPUs.
    /// They would otherwise inherit the submitting thread's affinity and, when
    /// that thread is pinned to an isolated CPU, compete with it there.
    ///
    /// Call it from the thread that will submit, before its first batch: the
    /// kernel applies the mask to workers it creates afterwards, and the
    /// thread's worker pool only exists once it has submitted something, so a
    /// NOP (which completes inline and starts no worker) is submitted first.
    pub fn set_worker_cpus(&mut self, cpus: &[usize]) -> Result<(), JournalError> {
        if cpus.is_empty() {
            return Ok(());
        }
        assert!(self.in_flight.is_none(), "set_worker_cpus before the first batch");
        let nop = opcode::Nop::new().build().user_data(0);
        // SAFETY: a NOP references no memory.
        unsafe { self.ring.submission().push(&nop).expect("the ring is empty") };
        self.ring.submit_and_wait(1).map_err(|source| JournalError::WriteFailed { source })?;
        self.ring.completion().for_each(drop);
        // SAFETY: cpu_set_t is plain data; CPU_SET only writes inside it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            // SAFETY: CPU_SET writes one bit of the set it is given, which lives on this stack.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        self.ring.submitter().register_iowq_aff(&set).map_err(|source| JournalError::Io {
            operation: "set the io_uring worker CPUs for",
            path: self.dir.clone(),
            source,
        })
    }

    /// The sequence the next appended record gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Writes one batch and waits until it is durable.
    pub fn append<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<Range<u64>, JournalError> {
        let sequences = self.begin(payloads)?;
        self.finish()?;
        Ok(sequences)
    }

    /// [`Journal::append`] of records each with its Raft term.
    pub fn append_entries<'a>(&mut self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<Range<u64>, JournalError> {
        let sequences = self.begin_entries(entries)?;
        self.finish()?;
        Ok(sequences)
    }

    /// Submits one batch (a write linked to an fdatasync) without waiting, so the
    /// caller can compute while the disk works. Nothing of it may be
    /// acknowledged before [`Journal::finish`] returns `Ok`. Its records
    /// carry term 0: a journal without consensus.
    pub fn begin<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<Range<u64>, JournalError> {
        self.begin_entries(payloads.into_iter().map(|payload| (0, payload)))
    }

    /// [`Journal::begin`] of records each with its Raft term.
    pub fn begin_entries<'a>(&mut self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<Range<u64>, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        assert!(self.in_flight.is_none(), "one batch in flight at a time");
        self.buffer.clear();
        let first = self.next_sequence;
        let mut sequence = first;
        for (term, payload) in entries {
            if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
                return Err(JournalError::RecordTooLarge { bytes: payload.len() });
            }
            let batch_index = u32::try_from(sequence - first).expect("a batch is far below 2^32 records");
            encode_record(sequence, batch_index, term, payload, &mut self.buffer);
            sequence += 1;
        }
        if sequence == first {
            self.in_flight = Some(first..first);
            return Ok(first..first);
        }
        self.prepare_for(self.offset + self.buffer.len() as u64);
        let fd = types::Fd(self.file.as_raw_fd());
        let write =
            opcode::Write::new(fd, self.buffer.as_ptr(), self.buffer.len() as u32).offset(self.offset).build().flags(squeue::Flags::IO_LINK).user_data(1);
        let sync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(2);
        // SAFETY: the buffer and the file outlive the operations: `finish` waits
        // for both completions before `buffer` or `file` can change or drop
        // (Drop also waits).
        unsafe {
            let mut queue = self.ring.submission();
            queue.push(&write).expect("ring has room for two entries");
            queue.push(&sync).expect("ring has room for two entries");
        }
        if let Err(source) = self.ring.submit() {
            self.poisoned = true;
            return Err(JournalError::WriteFailed { source });
        }
        self.in_flight = Some(first..sequence);
        Ok(first..sequence)
    }

    /// Before a batch that ends at `end` is written: takes in a finished
    /// stretch of zeros, waits for the one being written if the batch would
    /// reach it (the thread must never write over records), and asks for
    /// the next stretch once less than half of one is left.
    ///
    /// The zeros only make syncs cheaper: failing to write them stops
    /// nothing. Batches then append as they would without them, and a disk
    /// that is really full or failing says so through their own write or sync.
    fn prepare_for(&mut self, end: u64) {
        let wait = end > self.prepared_until && self.preparer.preparing.is_some();
        self.take_prepared(wait);
        if !self.preparer.given_up && self.preparer.preparing.is_none() && self.prepared_until.saturating_sub(end) < PREPARED_AHEAD_BYTES / 2 {
            let from = self.prepared_until.max(end);
            if let Err(error) = self.preparer.request(&self.file, from, from + PREPARED_AHEAD_BYTES) {
                self.give_up_zeros(&error);
            }
        }
    }

    /// Takes in the stretch of zeros being written if it is done, or once it is if `wait`.
    fn take_prepared(&mut self, wait: bool) {
        match self.preparer.collect(wait) {
            Ok(Some(until)) => self.prepared_until = until,
            Ok(None) => {}
            Err(error) => self.give_up_zeros(&error),
        }
    }

    fn give_up_zeros(&mut self, error: &std::io::Error) {
        tracing::warn!(%error, segment = %self.segments.last().map(|s| s.path.display().to_string()).unwrap_or_default(),
            "could not write zeros ahead of the journal's end; batches append to the file from here on, their syncs a little slower");
        self.preparer.given_up = true;
    }

    /// Waits for the batch from [`Journal::begin`] to be durable.
    pub fn finish(&mut self) -> Result<(), JournalError> {
        let Some(sequences) = self.in_flight.take() else { return Ok(()) };
        if sequences.is_empty() {
            return Ok(());
        }
        let mut write_result = None;
        let mut sync_result = None;
        while write_result.is_none() || sync_result.is_none() {
            if let Err(source) = self.ring.submit_and_wait(1) {
                if source.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                self.poisoned = true;
                return Err(JournalError::SyncFailed { source });
            }
            for completion in self.ring.completion() {
                match completion.user_data() {
                    1 => write_result = Some(completion.result()),
                    _ => sync_result = Some(completion.result()),
                }
            }
        }
        let (written, synced) = (write_result.expect("waited for it"), sync_result.expect("waited for it"));
        let expected = self.buffer.len() as i32;
        if written != expected {
            self.poisoned = true;
            let source = if written < 0 {
                std::io::Error::from_raw_os_error(-written)
            } else {
                // A short write hides its cause (a full disk, usually); writing
                // the rest once more returns it. The batch fails either way: the
                // linked fdatasync was cancelled with the short write.
                let rest = &self.buffer[written as usize..];
                match self.file.write_at(rest, self.offset + written as u64) {
                    Err(cause) => cause,
                    Ok(_) => std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {written} of {expected} bytes")),
                }
            };
            return Err(JournalError::WriteFailed { source });
        }
        let synced = match &mut self.sync_fault {
            Some((0, errno)) => -*errno,
            Some((left, _)) => {
                *left -= 1;
                synced
            }
            None => synced,
        };
        if synced < 0 {
            self.poisoned = true;
            return Err(JournalError::SyncFailed { source: std::io::Error::from_raw_os_error(-synced) });
        }
        self.offset += self.buffer.len() as u64;
        self.next_sequence = sequences.end;
        Ok(())
    }

    /// Fault injection for tests: after `batches` more batches sync normally,
    /// every fdatasync reports `errno` (EIO is 5) as a failing disk would. A
    /// failing fsync cannot be provoked on a healthy disk without the kernel's
    /// device-mapper, which containers often lack; the write still happens.
    #[doc(hidden)]
    pub fn inject_sync_failure(&mut self, batches: u64, errno: i32) {
        self.sync_fault = Some((batches, errno));
    }

    /// Test hook: the zero-writing thread waits this long before each
    /// stretch, as a slow disk would make it, so that batches catch up with it.
    #[doc(hidden)]
    pub fn delay_zeros(&mut self, delay: std::time::Duration) {
        self.preparer.delay = delay;
    }

    /// Starts a new segment at the next sequence, so that older segments can be
    /// removed once a snapshot covers them.
    pub fn rotate(&mut self) -> Result<(), JournalError> {
        self.finish()?;
        if self.offset == SEGMENT_HEADER_BYTES as u64 {
            return Ok(()); // the current segment is still empty
        }
        // Only the last segment may end in zeros: cut them before the next one exists.
        self.take_prepared(true);
        let path = &self.segments.last().expect("there is a segment").path;
        self.file.set_len(self.offset).map_err(io_error("truncate segment", path))?;
        self.file.sync_all().map_err(io_error("fsync segment", path))?;
        let (file, path) = create_segment(&self.dir, self.next_sequence, self.content)?;
        self.file = file;
        self.offset = SEGMENT_HEADER_BYTES as u64;
        self.prepared_until = self.offset;
        self.segments.push(Segment { first_sequence: self.next_sequence, path });
        Ok(())
    }

    /// Deletes the segments whose records all have sequences <= `sequence`.
    pub fn remove_segments_through(&mut self, sequence: u64) -> Result<usize, JournalError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].first_sequence <= sequence + 1 {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path).map_err(io_error("remove segment", &segment.path))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The sequence of the oldest record kept (or of the next one, for an empty journal).
    pub fn first_sequence(&self) -> u64 {
        self.segments[0].first_sequence
    }

    /// The durable records with sequences in `range`, in order: those of
    /// a batch still in flight are not given. Reads their segments' files,
    /// so a caller that reads the newest records often keeps its own copy.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Record>, JournalError> {
        let range = range.start.max(self.first_sequence())..range.end.min(self.next_sequence);
        let mut records = Vec::new();
        if range.is_empty() {
            return Ok(records);
        }
        for (i, segment) in self.segments.iter().enumerate() {
            let end = self.segments.get(i + 1).map_or(self.next_sequence, |next| next.first_sequence);
            if end <= range.start || segment.first_sequence >= range.end {
                continue;
            }
            let bytes = fs::read(&segment.path).map_err(io_error("read segment", &segment.path))?;
            let scan = scan_segment(bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or_default(), segment.first_sequence);
            let held = scan.records.len() as u64;
            let found = scan.records.into_iter().filter(|record| range.contains(&record.sequence));
            let before = records.len();
            records.extend(found);
            let wanted = end.min(range.end) - segment.first_sequence.max(range.start);
            if (records.len() - before) as u64 != wanted {
                return Err(JournalError::Corrupt {
                    path: segment.path.clone(),
                    offset: scan.valid_bytes + SEGMENT_HEADER_BYTES as u64,
                    expected_sequence: segment.first_sequence + held,
                    detail: "a record read back since start-up is damaged",
                });
            }
        }
        Ok(records)
    }

    /// Removes every record after `sequence`, durably, and appends go on
    /// from `sequence + 1`: a Raft follower's entries that conflict with its
    /// leader's, which were never committed. Later segments go first, then
    /// the one holding the cut is shortened, so that a crash in between
    /// leaves a journal that still opens (with the records not yet removed).
    pub fn truncate_after(&mut self, sequence: u64) -> Result<u64, JournalError> {
        self.finish()?;
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if sequence >= self.next_sequence.saturating_sub(1) {
            return Ok(0);
        }
        let keep_until = sequence + 1;
        if keep_until < self.first_sequence() {
            return Err(JournalError::Gap { detail: format!("cannot keep the records through {sequence}: the journal starts at {}", self.first_sequence()) });
        }
        let removed = self.next_sequence - keep_until;
        // The zeros thread must not write into a file that is cut or removed.
        self.take_prepared(true);
        let mut removed_segments = false;
        while self.segments.len() > 1 && self.segments.last().expect("more than one").first_sequence > keep_until {
            let segment = self.segments.pop().expect("more than one");
            fs::remove_file(&segment.path).map_err(io_error("remove segment", &segment.path))?;
            removed_segments = true;
        }
        if removed_segments {
            // Removed before the cut is made: a later segment must not outlive it.
            sync_dir(&self.dir)?;
        }
        let tail = self.segments.last().expect("there is a segment");
        let bytes = fs::read(&tail.path).map_err(io_error("read segment", &tail.path))?;
        let scan = scan_segment(bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or_default(), tail.first_sequence);
        let kept = scan.records.iter().take_while(|record| record.sequence < keep_until);
        let cut = SEGMENT_HEADER_BYTES as u64 + kept.map(|record| (RECORD_HEADER_BYTES + record.payload.len()) as u64).sum::<u64>();
        let file = OpenOptions::new().read(true).write(true).open(&tail.path).map_err(io_error("open segment", &tail.path))?;
        file.set_len(cut).map_err(io_error("truncate segment", &tail.path))?;
        file.sync_all().map_err(io_error("fsync segment", &tail.path))?;
        self.file = file;
        self.offset = cut;
        self.prepared_until = cut;
        self.next_sequence = keep_until;
        Ok(removed)
    }

    /// Removes every segment and starts an empty journal whose next record
    /// is `next_sequence`: a Raft replica that installed a snapshot beyond
    /// its log. The old segments go first, so a crash in between leaves no
    /// segment, which opens as an empty journal at the caller's start.
    pub fn reset(&mut self, next_sequence: u64) -> Result<(), JournalError> {
        self.finish()?;
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        self.take_prepared(true);
        for segment in self.segments.drain(..) {
            fs::remove_file(&segment.path).map_err(io_error("remove segment", &segment.path))?;
        }
        sync_dir(&self.dir)?;
        let next_sequence = next_sequence.max(1);
        let (file, path) = create_segment(&self.dir, next_sequence, self.content)?;
        self.segments.push(Segment { first_sequence: next_sequence, path });
        self.file = file;
        self.offset = SEGMENT_HEADER_BYTES as u64;
        self.prepared_until = self.offset;
        self.next_sequence = next_sequence;
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The kernel may still be reading `buffer`; wait before it is freed.
        if self.in_flight.is_some() {
            let _ = self.finish();
        }
    }
}
