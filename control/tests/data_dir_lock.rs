//! One control plane per data directory: the database has one
//! group-committing writer by design, so `Control::open` locks the directory
//! and a second opener fails at once, naming the holder's pid, before it has
//! touched anything. `create_org` is the exception by design: it runs
//! offline beside a live server.
#![allow(clippy::unwrap_used)]

use sealrun_control::{Control, OpenError, OpenOptions, Settings, create_org};
use std::path::Path;

fn open(data_dir: &Path, admin_token_file: &Path) -> Result<Control, OpenError> {
    Control::open(OpenOptions {
        data_dir,
        org_name: "acme",
        admin_token_file: Some(admin_token_file),
        settings: Settings::default(),
        database: None,
    })
}

#[test]
fn a_second_control_plane_on_one_data_dir_fails_naming_the_holder_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = open(&data, &dir.path().join("first.token")).unwrap();
    let files_before = listing(&data);

    let second_token = dir.path().join("second.token");
    let err = open(&data, &second_token).unwrap_err();

    assert!(matches!(err, OpenError::Lock(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "data directory {} is in use by sealrun server (pid {}); stop it first or use another data directory",
            data.display(),
            std::process::id()
        )
    );
    assert!(!second_token.exists(), "no admin token written");
    assert_eq!(listing(&data), files_before, "no file created or resized");
    first.close();
}

#[test]
fn closing_a_control_plane_releases_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = dir.path().join("admin.token");
    let first = open(&data, &token).unwrap();
    first.close();

    // `first` is still alive (as behind a lingering Arc), but closed.
    let again = open(&data, &token).unwrap();
    again.close();
    drop(first);
}

#[test]
fn create_org_works_beside_a_running_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let control = open(&data, &dir.path().join("admin.token")).unwrap();

    let token = create_org(&data, None, "umbrella").unwrap();

    assert!(token.starts_with("srt_"), "a user token");
    control.close();
}

/// Names and sizes of the files directly in `dir`, sorted. (The database's
/// WAL files are written by the first control plane's writer at its own
/// pace, so they are left out.)
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().contains("-wal"))
        .filter(|e| !e.file_name().to_string_lossy().contains("-shm"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}
