//! Test databases on the PostgreSQL server that tools/test.sh starts: it exports
//! `CANDOR_TEST_POSTGRES_URL` (an admin URL such as `postgres://candor@127.0.0.1:PORT/postgres`).
//! Each test gets a fresh database of its own, so tests run in parallel.
//! Without the variable the PostgreSQL tests are skipped with a message, except under
//! CI (`CI=true`), where a missing server is a failure.

/// The environment variable naming the admin URL.
pub const ENV: &str = "CANDOR_TEST_POSTGRES_URL";

/// The admin URL, or `None` (skip) outside CI; panics under CI without it.
pub fn admin_url() -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{ENV} is not set under CI=true: tools/test.sh must start PostgreSQL");
            }
            eprintln!("skipping a PostgreSQL test: {ENV} is not set (run tools/test.sh)");
            None
        }
    }
}

/// Creates a fresh, empty database and returns its URL.
pub fn fresh_database(admin: &str) -> String {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).expect("random name");
    let name = format!("candor_t_{}", hex::encode(rnd));
    // A thread of its own: the postgres crate must not run inside a tokio runtime.
    let admin_owned = admin.to_string();
    let create = name.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin_owned, postgres::NoTls)
            .expect("connect to the test PostgreSQL server");
        c.batch_execute(&format!("CREATE DATABASE {create}"))
            .expect("create test database");
    })
    .join()
    .expect("create database thread");
    with_database(admin, &name)
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL has a database path");
    format!("{base}/{db}")
}
