//! PostgreSQL for the test suite. `SEALRUN_TEST_DATABASE_URL` names a
//! cluster and a role that may create databases (e.g.
//! `postgres://sealrun:sealrun@127.0.0.1/postgres`):
//!
//! - tests of PostgreSQL itself (replicas, `migrate-store`) take a database
//!   with [`require_postgres`], which skips loudly without the variable, or
//!   fails under `SEALRUN_REQUIRE_POSTGRES` or `CI`;
//! - with `SEALRUN_TEST_STORE=postgres` besides, every server the kit starts
//!   in process gets a database of its own instead of SQLite, so the same
//!   control-plane tests run against both backends (`scripts/test.sh` runs
//!   `api/tests` twice).
//!
//! A server's database is named after its data directory, so a server
//! restarted on the same directory finds its data again. It is dropped with
//! a server that owns its directory; `scripts/test.sh` drops any left
//! (`sealrun_t_*`) after the run.

use sealrun_api::DatabaseUrl;
use std::path::Path;

/// The variable naming the cluster the suite uses.
pub const TEST_DATABASE_URL: &str = "SEALRUN_TEST_DATABASE_URL";

/// The variable that puts the in-process servers on PostgreSQL.
pub const TEST_STORE: &str = "SEALRUN_TEST_STORE";

/// Whether this pass runs the control-plane suite on PostgreSQL.
pub fn postgres_under_test() -> bool {
    std::env::var(TEST_STORE).is_ok_and(|s| s == "postgres")
}

/// A database of its own for a test of PostgreSQL, named after `dir`; or
/// `None` after a loud `SKIPPED` line when no cluster is configured (a
/// failure instead under `SEALRUN_REQUIRE_POSTGRES` or `CI`).
pub fn require_postgres(dir: &Path) -> Option<TestDatabase> {
    if std::env::var_os(TEST_DATABASE_URL).is_none() {
        crate::docker::skip_or_fail_unless(
            &format!("no PostgreSQL cluster ({TEST_DATABASE_URL} is not set)"),
            "SEALRUN_REQUIRE_POSTGRES",
        );
        return None;
    }
    TestDatabase::create(dir)
}

/// A test's own database.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    /// The URL a server connects with.
    pub url: DatabaseUrl,
    /// The same, as text (for a subprocess's `SEALRUN_DATABASE_URL`).
    pub url_text: String,
}

impl TestDatabase {
    /// The database for a server keeping its data in `data_dir`, created if
    /// new; `None` when the suite tests SQLite.
    pub fn for_data_dir(data_dir: &Path) -> Option<TestDatabase> {
        if !postgres_under_test() {
            return None;
        }
        TestDatabase::create(data_dir)
    }

    /// The database named after `dir`, created if new; `None` without a
    /// cluster.
    pub fn create(dir: &Path) -> Option<TestDatabase> {
        let admin = std::env::var(TEST_DATABASE_URL).ok()?;
        let data_dir = dir;
        let name = format!(
            "sealrun_t_{:016x}",
            fnv1a(data_dir.as_os_str().as_encoded_bytes())
        );
        let (base, _) = admin
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("{TEST_DATABASE_URL} must end with /DATABASE"));
        let url_text = format!("{base}/{name}");
        let url = url_text
            .parse()
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL}: {e}"));
        let db = TestDatabase {
            admin,
            name,
            url,
            url_text,
        };
        db.admin_statement(
            &format!("SELECT 1 FROM pg_database WHERE datname = '{}'", db.name),
            Some(&format!("CREATE DATABASE {}", db.name)),
        );
        Some(db)
    }

    /// Drops the database (its server must be stopped).
    pub fn drop_database(&self) {
        self.admin_statement(
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            None,
        );
    }

    /// Runs `sql` on the admin connection, on a thread of its own (the
    /// synchronous client runs a runtime of its own, which cannot start
    /// inside a test's). With `otherwise`, `sql` is a query and `otherwise`
    /// runs if it returns no row.
    fn admin_statement(&self, sql: &str, otherwise: Option<&str>) {
        let (admin, sql, otherwise) = (
            self.admin.clone(),
            sql.to_owned(),
            otherwise.map(str::to_owned),
        );
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                .unwrap_or_else(|e| panic!("cannot connect to {TEST_DATABASE_URL}: {e}"));
            match otherwise {
                None => client.batch_execute(&sql),
                Some(then) => match client.query_opt(&sql, &[]) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => client.batch_execute(&then),
                    Err(e) => Err(e),
                },
            }
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
        .join()
        .expect("the admin connection's thread");
    }
}

/// FNV-1a: a stable name from a path (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
