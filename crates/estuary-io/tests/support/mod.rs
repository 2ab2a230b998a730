//! What the io integration tests share: a private network per test, and child processes that
//! never outlive their test.
#![allow(dead_code)]

use std::process::Child;

use estuary_io::netns::isolate_thread_network;

/// Kills and reaps the child when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Puts the calling test thread (and what it spawns) in its own network namespace.
pub fn isolate() {
    isolate_thread_network().expect("private network namespace (tests need root / CAP_SYS_ADMIN)");
}
