//! Links the system libsrt (gnutls build) and libopus through pkg-config.
//!
//! Debian's `libsrt-gnutls-dev` installs `srt.pc` (and `haisrt.pc`) with `-lsrt-gnutls`; FFmpeg
//! in the same process loads that same library, so a second libsrt build must never be linked.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    link("srt", "srt-gnutls");
    link("opus", "opus");
}

/// Emits the link flags pkg-config gives for `package`; falls back to `-l{fallback}` when
/// pkg-config is absent, so a plain Debian box with the -dev packages still builds.
fn link(package: &str, fallback: &str) {
    let output = Command::new("pkg-config")
        .args(["--libs", package])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let flags = String::from_utf8_lossy(&out.stdout);
            for flag in flags.split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={dir}");
                } else if let Some(lib) = flag.strip_prefix("-l") {
                    println!("cargo:rustc-link-lib={lib}");
                }
            }
        }
        _ => {
            println!(
                "cargo:warning=pkg-config found no `{package}`; linking -l{fallback} (install the -dev package)"
            );
            println!("cargo:rustc-link-lib={fallback}");
        }
    }
}
