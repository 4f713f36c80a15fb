//! `candor witness serve` for tests that need witnesses, and key files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use candor_core::note::{SignerKey, VerifierKey};

use super::CANDOR;

/// A running `candor witness serve` on a fixed port (so it can come back on the
/// same URL), killed on drop.
pub struct Witness {
    key_file: PathBuf,
    data: PathBuf,
    port: u16,
    log: VerifierKey,
    child: Option<Child>,
}

impl Witness {
    pub fn start(key_file: PathBuf, data: PathBuf, log: VerifierKey) -> Witness {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut w = Witness {
            key_file,
            data,
            port,
            log,
            child: None,
        };
        w.up();
        w
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn up(&mut self) {
        let mut child = Command::new(CANDOR)
            .args(["witness", "serve", "--key"])
            .arg(&self.key_file)
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--log", &self.log.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn candor witness serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        assert!(line.contains("listening on"), "witness said {line:?}");
        self.child = Some(child);
    }

    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill witness");
            c.wait().expect("reap witness");
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.down();
    }
}

/// Writes a new signed-note private key named `name` into `dir`; returns its path
/// and the key.
pub fn write_key(dir: &Path, name: &str) -> (PathBuf, SignerKey) {
    let key = SignerKey::generate(name).expect("generate key");
    let path = dir.join(format!("{}.key", name.replace('/', "_")));
    std::fs::write(&path, format!("{key}\n")).expect("write key");
    (path, key)
}
