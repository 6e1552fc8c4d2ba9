//! Records the commit tend is built from, for `tend --version`, and links the binary with packed
//! relocations on GNU/Linux.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty());
    let described = match commit {
        Some(c) => format!("commit {c}"),
        None => "commit unknown: not built from a Git checkout".to_string(),
    };
    println!("cargo:rustc-env=TEND_BUILD_COMMIT={described}");
    // Rebuilt when HEAD moves (a commit, a checkout), not on every build.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
    // A position-independent binary carries one relocation per pointer in its read-only data
    // (2 MB of `.rela.dyn` for tend), all read at start: RELR packs them into 25 KB, which takes
    // 2-3.5 MB off every run's resident memory. A binary with RELR needs glibc 2.36 to start, so
    // it is asked for only when building on and for a glibc that has it (linkers before binutils
    // 2.38 ignore the option).
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && var("HOST") == var("TARGET") && glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether this machine's glibc reads packed relative relocations (2.36 and later).
fn glibc_has_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().trim_start_matches("glibc ").split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
