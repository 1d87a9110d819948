//! A snapshot archive holds a directory's files exactly, reads with
//! standard tools, and an unpack never yields anything but the packed
//! files: damage, strange members and lies in `SHA256SUMS` are refused,
//! with nothing left behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use consensus::snapshot_archive::{pack, partial_path, unpack, ArchiveError, ArchiveSummary, DIGESTS_NAME};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .map(|entry| (entry.file_name().into_string().unwrap(), std::fs::read(entry.path()).unwrap()))
        .collect()
}

/// A checkpoint's kind of files: a few names RocksDB uses, one empty, one over a megabyte.
fn checkpoint(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    let large: Vec<u8> = (0..1_300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let files = [("000012.sst", large), ("CURRENT", b"MANIFEST-000010\n".to_vec()), ("MANIFEST-000010", vec![7; 513]), ("OPTIONS-000008", Vec::new())];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    files.into_iter().map(|(name, bytes)| (name.to_string(), bytes)).collect()
}

fn damaged(result: Result<ArchiveSummary, ArchiveError>) -> String {
    match result {
        Err(ArchiveError::Damaged { detail, .. }) => detail,
        other => panic!("expected a damaged archive, got {other:?}"),
    }
}

/// An archive written member by member, names and types as given (the
/// tar crate's builder refuses some of what an attacker would send).
fn raw_archive(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, bytes) in members {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        if *kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

fn digests_of(files: &[(&str, &[u8])]) -> String {
    files.iter().map(|(name, bytes)| format!("{}  {name}\n", hex::encode(Sha256::digest(bytes)))).collect()
}

#[test]
fn a_checkpoint_round_trips_byte_for_byte_and_packs_to_the_same_bytes_twice() {
    let work = tempfile::tempdir().unwrap();
    let files = checkpoint(&work.path().join("checkpoint"));
    let archive = work.path().join("snapshot.tar");
    let packed = pack(&work.path().join("checkpoint"), &archive).unwrap();
    assert_eq!(packed, ArchiveSummary { files: 4, bytes: files.values().map(|bytes| bytes.len() as u64).sum() });

    let into = work.path().join("installed");
    assert_eq!(unpack(&archive, &into).unwrap(), packed);
    assert_eq!(files_of(&into), files, "the unpacked files are the packed ones, and only those");
    assert!(!partial_path(&into).exists(), "the partial directory was renamed into place");

    // Deterministic: a snapshot's bytes depend on its files alone, not on when or by whom.
    let again = work.path().join("again.tar");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pack(&into, &again).unwrap();
    assert_eq!(std::fs::read(&archive).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn an_operator_reads_an_archive_with_tar_and_sha256sum() {
    let work = tempfile::tempdir().unwrap();
    checkpoint(&work.path().join("checkpoint"));
    let archive = work.path().join("snapshot.tar");
    pack(&work.path().join("checkpoint"), &archive).unwrap();
    let listing = Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    assert!(listing.status.success());
    let names: Vec<String> = String::from_utf8(listing.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(names, ["000012.sst", "CURRENT", "MANIFEST-000010", "OPTIONS-000008", DIGESTS_NAME]);
    let out = work.path().join("by-hand");
    std::fs::create_dir(&out).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(&archive).current_dir(&out).status().unwrap().success());
    let check = Command::new("sha256sum").args(["--check", "--strict", DIGESTS_NAME]).current_dir(&out).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert_eq!(String::from_utf8(check.stdout).unwrap().matches(": OK").count(), 4);
}

#[test]
fn only_a_directory_of_plain_files_is_packed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("checkpoint");
    checkpoint(&dir);
    std::fs::create_dir(dir.join("nested")).unwrap();
    let archive = work.path().join("snapshot.tar");
    assert!(matches!(pack(&dir, &archive), Err(ArchiveError::NotPackable { detail, .. }) if detail.contains("not a regular file")));
    std::fs::remove_dir(dir.join("nested")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
    assert!(matches!(pack(&dir, &archive), Err(ArchiveError::NotPackable { .. })));
    std::fs::remove_file(dir.join("link")).unwrap();
    std::fs::write(dir.join(DIGESTS_NAME), "").unwrap();
    assert!(matches!(pack(&dir, &archive), Err(ArchiveError::NotPackable { detail, .. }) if detail.contains("reserves")));
}

#[test]
fn an_unpack_refuses_a_target_that_exists_and_clears_a_crashed_one() {
    let work = tempfile::tempdir().unwrap();
    checkpoint(&work.path().join("checkpoint"));
    let archive = work.path().join("snapshot.tar");
    pack(&work.path().join("checkpoint"), &archive).unwrap();
    let into = work.path().join("installed");
    std::fs::create_dir(&into).unwrap();
    assert!(matches!(unpack(&archive, &into), Err(ArchiveError::TargetExists { .. })));
    std::fs::remove_dir(&into).unwrap();
    // A crash in an earlier unpack left a partial directory with a stray file.
    std::fs::create_dir(partial_path(&into)).unwrap();
    std::fs::write(partial_path(&into).join("stray"), b"from a crash").unwrap();
    unpack(&archive, &into).unwrap();
    assert!(!files_of(&into).contains_key("stray"));
}

#[test]
fn strange_members_and_lying_digests_are_refused_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let regular = tar::EntryType::Regular;
    let content: &[u8] = b"the state";
    let digests = digests_of(&[("CURRENT", content)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no digests", raw_archive(&[("CURRENT", regular, content)]), "no SHA256SUMS"),
        ("a parent path", raw_archive(&[("../escaped", regular, content), (DIGESTS_NAME, regular, digests.as_bytes())]), "plain file name"),
        ("an absolute path", raw_archive(&[("/tmp/escaped", regular, content), (DIGESTS_NAME, regular, digests.as_bytes())]), "plain file name"),
        ("a nested path", raw_archive(&[("db/CURRENT", regular, content), (DIGESTS_NAME, regular, digests.as_bytes())]), "plain file name"),
        ("a symlink", raw_archive(&[("CURRENT", tar::EntryType::Symlink, b""), (DIGESTS_NAME, regular, digests.as_bytes())]), "type"),
        ("a directory", raw_archive(&[("CURRENT", tar::EntryType::Directory, b""), (DIGESTS_NAME, regular, digests.as_bytes())]), "type"),
        ("a member twice", raw_archive(&[("CURRENT", regular, content), ("CURRENT", regular, content), (DIGESTS_NAME, regular, digests.as_bytes())]), "twice"),
        (
            "a member after the digests",
            raw_archive(&[("CURRENT", regular, content), (DIGESTS_NAME, regular, digests.as_bytes()), ("EXTRA", regular, content)]),
            "after",
        ),
        ("a wrong digest", raw_archive(&[("CURRENT", regular, b"other state"), (DIGESTS_NAME, regular, digests.as_bytes())]), "CURRENT does not match"),
        (
            "a file the digests do not list",
            raw_archive(&[("CURRENT", regular, content), ("EXTRA", regular, content), (DIGESTS_NAME, regular, digests.as_bytes())]),
            "EXTRA does not match",
        ),
        ("a listed file missing", raw_archive(&[(DIGESTS_NAME, regular, digests.as_bytes())]), "CURRENT does not match"),
        ("a digests line in another form", raw_archive(&[("CURRENT", regular, content), (DIGESTS_NAME, regular, b"abc CURRENT\n")]), "without a name"),
    ];
    for (case, bytes, expected) in cases {
        let archive = work.path().join("case.tar");
        std::fs::write(&archive, bytes).unwrap();
        let into = work.path().join("installed");
        let detail = damaged(unpack(&archive, &into));
        assert!(detail.contains(expected), "{case}: {detail}");
        let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, ["case.tar"], "{case}: nothing left beside the archive");
        assert!(!Path::new("/tmp/escaped").exists(), "{case}: nothing written outside");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever happens to an archive's bytes (a flip anywhere, a cut
    /// anywhere), an unpack either refuses it or gives the packed files exactly.
    #[test]
    fn a_damaged_archive_never_unpacks_to_other_files(flip_at in any::<prop::sample::Index>(), flip in 1u8.., cut_at in any::<prop::sample::Index>(), cut in any::<bool>()) {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("checkpoint");
        std::fs::create_dir(&dir).unwrap();
        let files: BTreeMap<String, Vec<u8>> = [("CURRENT", b"MANIFEST-000003\n".to_vec()), ("000004.sst", vec![42; 3000])]
            .into_iter().map(|(name, bytes)| (name.to_string(), bytes)).collect();
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let archive = work.path().join("snapshot.tar");
        pack(&dir, &archive).unwrap();
        let mut bytes = std::fs::read(&archive).unwrap();
        if cut {
            bytes.truncate(cut_at.index(bytes.len()));
        } else {
            let at = flip_at.index(bytes.len());
            bytes[at] ^= flip;
        }
        std::fs::write(&archive, &bytes).unwrap();
        let into = work.path().join("installed");
        match unpack(&archive, &into) {
            Ok(_) => prop_assert_eq!(files_of(&into), files),
            Err(ArchiveError::Damaged { .. }) => prop_assert!(!into.exists() && !partial_path(&into).exists()),
            Err(other) => prop_assert!(false, "{other}"),
        }
    }

    /// Bytes that were never an archive are refused without a panic.
    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let work = tempfile::tempdir().unwrap();
        let archive = work.path().join("snapshot.tar");
        std::fs::write(&archive, &bytes).unwrap();
        let into = work.path().join("installed");
        match unpack(&archive, &into) {
            Err(ArchiveError::Damaged { .. }) => prop_assert!(!into.exists() && !partial_path(&into).exists()),
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
