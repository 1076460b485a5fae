//! Key files: created private and atomically, never overwritten, and refused when
//! group or others can get at them.
#![allow(clippy::unwrap_used)]

use sealrun_vault::{Error, TargetKeypair, open, seal};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_saved_key_file_has_mode_0600_and_loads_back_to_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    let keypair = TargetKeypair::generate();
    keypair.save(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    let loaded = TargetKeypair::load(&path).unwrap();
    assert_eq!(loaded.public_key(), keypair.public_key());
    // The loaded secret half works, not just the public half.
    let sealed = seal(&keypair.public_key(), "N", "t", b"v").unwrap();
    assert_eq!(open(&loaded, "N", "t", &sealed).unwrap().expose(), b"v");
}

#[test]
fn the_key_file_is_the_documented_two_line_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    TargetKeypair::from_secret_bytes([7; 32])
        .save(&path)
        .unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "sealrun-target-key v1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
    );
}

#[test]
fn saving_leaves_no_temporary_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    TargetKeypair::generate().save(&path).unwrap();
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["target.key"]);
}

#[test]
fn saving_refuses_to_overwrite_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    let first = TargetKeypair::generate();
    first.save(&path).unwrap();
    let before = fs::read(&path).unwrap();
    let err = TargetKeypair::generate().save(&path).unwrap_err();
    assert!(
        matches!(&err, Error::KeyFileExists { path: p } if *p == path),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn saving_creates_missing_parent_directories_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/sealrun/target.key");
    TargetKeypair::generate().save(&path).unwrap();
    assert_eq!(mode_of(&dir.path().join("etc/sealrun")), 0o700);
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn a_key_file_readable_by_group_or_others_is_refused_with_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    TargetKeypair::generate().save(&path).unwrap();
    for mode in [
        0o640,
        0o604,
        0o644,
        0o660,
        0o606,
        0o620,
        0o602,
        0o610,
        0o601,
        0o700 | 0o044,
    ] {
        chmod(&path, mode);
        let err = TargetKeypair::load(&path).unwrap_err();
        assert!(
            matches!(&err, Error::LoosePermissions { path: p, mode: m } if *p == path && *m == mode),
            "mode {mode:o}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
    }
}

#[test]
fn a_key_file_with_mode_0600_or_0400_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    TargetKeypair::generate().save(&path).unwrap();
    for mode in [0o600, 0o400] {
        chmod(&path, mode);
        TargetKeypair::load(&path).unwrap();
    }
}

#[test]
fn load_or_generate_creates_once_then_loads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent/target.key");
    let (first, created) = TargetKeypair::load_or_generate(&path).unwrap();
    assert!(created);
    assert_eq!(mode_of(&path), 0o600);
    let (second, created) = TargetKeypair::load_or_generate(&path).unwrap();
    assert!(!created);
    assert_eq!(second.key_id(), first.key_id());
}

#[test]
fn load_or_generate_does_not_replace_a_loose_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    TargetKeypair::generate().save(&path).unwrap();
    chmod(&path, 0o644);
    let before = fs::read(&path).unwrap();
    let err = TargetKeypair::load_or_generate(&path).unwrap_err();
    assert!(matches!(err, Error::LoosePermissions { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn loading_a_missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.key");
    let err = TargetKeypair::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path: p, source } if *p == path && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("absent.key"));
}

#[test]
fn malformed_key_files_are_refused_without_echoing_their_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    let leaky = "c2VjcmV0LWJ5dGVzLXRoYXQtbXVzdC1ub3QtbGVhaw";
    let wrong_header = format!("ssh-rsa {leaky}\n");
    let bad_base64 = format!("sealrun-target-key v1\n{leaky}!\n");
    let cases: [(&[u8], &str); 7] = [
        (b"", "first line"),
        (wrong_header.as_bytes(), "first line"),
        (b"sealrun-target-key v1\n", "missing the key line"),
        (bad_base64.as_bytes(), "not valid base64"),
        (b"sealrun-target-key v1\nBwcH\n", "not 32 bytes"),
        (
            b"sealrun-target-key v1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nextra\n",
            "unexpected lines",
        ),
        (b"\xff\xfe not text", "not UTF-8"),
    ];
    for (contents, reason) in cases {
        let _ = fs::remove_file(&path);
        fs::write(&path, contents).unwrap();
        chmod(&path, 0o600);
        let err = TargetKeypair::load(&path).unwrap_err();
        assert!(
            matches!(err, Error::InvalidKeyFile { .. }),
            "{reason}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(reason), "{message}");
        assert!(
            !message.contains(leaky) && !format!("{err:?}").contains(leaky),
            "{message}"
        );
    }
}

#[test]
fn a_directory_is_not_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    fs::create_dir(&path).unwrap();
    chmod(&path, 0o700);
    let err = TargetKeypair::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidKeyFile {
                reason: "not a regular file",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_oversized_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
    chmod(&path, 0o600);
    let err = TargetKeypair::load(&path).unwrap_err();
    assert!(
        matches!(err, Error::InvalidKeyFile { reason, .. } if reason.contains("too large")),
        "{err:?}"
    );
}

#[test]
fn agents_racing_to_create_the_key_file_all_end_up_with_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.key");
    let results: Vec<(String, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let (keypair, created) = TargetKeypair::load_or_generate(&path).unwrap();
                    (keypair.key_id().0, created)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let on_disk = TargetKeypair::load(&path).unwrap().key_id().0;
    assert!(results.iter().all(|(id, _)| *id == on_disk), "{results:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}
