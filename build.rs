//! Links the `det-agent` binary with the functions `det-agent run` executes placed together
//! (`packaging/det-agent.order`, made by `packaging/order-symbols`), in release builds on
//! Linux.
//!
//! The kernel maps the neighbours of every code page a process touches (fault-around), and
//! `run`'s startup touches code all over the binary, so without an order the idle daemon
//! keeps all of its code resident, the dev master, `check` and the demo included. Placed
//! together, `run`'s code is what stays resident: 1.0 MB less for the deployment build
//! (README, "Memory"). The order is a hint: a name the linker does not find is skipped.
//! `DET_AGENT_NO_SYMBOL_ORDER=1` links as the toolchain would by itself, for a build that
//! sets its own linker (say `linker = "rust-lld"`, which takes no compiler-driver flags).
//!
//! It takes lld (`--symbol-ordering-file`); GNU ld has no such option before binutils
//! 2.43. rustup's toolchain ships lld as `rust-lld`, with a `gcc-ld/ld.lld` wrapper for the
//! C compiler that drives the link, which is what rustc itself uses for x86_64 glibc
//! targets; the musl target links with GNU ld unless told otherwise, as here.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/det-agent.order");
    println!("cargo:rerun-if-env-changed=DET_AGENT_NO_SYMBOL_ORDER");
    let var = |key: &str| std::env::var(key).unwrap_or_default();
    // PROFILE is "release" for every profile that inherits it, `dist` included.
    if var("PROFILE") != "release" || var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    if !matches!(var("DET_AGENT_NO_SYMBOL_ORDER").trim(), "" | "0") {
        return;
    }
    let order = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("packaging/det-agent.order");
    if !order.is_file() {
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().ok().filter(|o| o.status.success());
    let gcc_ld = sysroot.map(|o| {
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
            .join("lib/rustlib")
            .join(var("HOST"))
            .join("bin/gcc-ld")
    });
    let Some(gcc_ld) = gcc_ld.filter(|dir| dir.join("ld.lld").is_file()) else {
        println!(
            "cargo:warning=det-agent: this Rust toolchain has no rust-lld (lib/rustlib/HOST/bin/gcc-ld/ld.lld), \
             so the binary is linked without packaging/det-agent.order; it works the same, and its idle \
             daemon keeps about 1 MB more code resident"
        );
        return;
    };
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    println!("cargo:rustc-link-arg-bins=-B{}", gcc_ld.display());
    // -Xlinker, not -Wl: -Wl splits its argument at commas, which a checkout's path may hold.
    println!("cargo:rustc-link-arg-bins=-Xlinker");
    println!("cargo:rustc-link-arg-bins=--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Xlinker");
    println!("cargo:rustc-link-arg-bins=--no-warn-symbol-ordering");
}
