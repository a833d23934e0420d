//! Helpers shared by the process-level tests.

use std::path::PathBuf;
use std::process::Child;

use anyhow::{Context, Result, bail};

/// The example binary `name`, built by `cargo test` next to the test binaries.
pub fn example_binary(name: &str) -> Result<PathBuf> {
    let test_binary = std::env::current_exe()?;
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).context("no target directory")?;
    let binary = profile_dir.join("examples").join(name);
    if !binary.exists() {
        bail!(
            "{} is missing: run the tests with `cargo test --workspace`, which builds the examples",
            binary.display()
        );
    }
    Ok(binary)
}

/// A process started by the test, killed when dropped, so a failing test
/// leaves nothing running.
#[allow(dead_code)] // Each test file compiles this module; not all start processes.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
