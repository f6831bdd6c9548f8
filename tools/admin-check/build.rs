//! Stamps the module with a digest of the source files it is compiled from, so that a test can tell a stale
//! `scripts/lib/admin-check.wasm` from a current one without a Rust toolchain (scripts/lib/identifiers.mjs computes
//! the same digest in Node).

use std::fs;
use std::path::Path;

/// The files whose content decides the module's behaviour, relative to the repository root.
const SOURCES: [&str; 6] = [
    "src/admin_check.rs",
    "src/domain/email.rs",
    "src/domain/phone.rs",
    "src/domain/locale.rs",
    "tools/admin-check/lib.rs",
    "tools/admin-check/Cargo.toml",
];

/// FNV-1a, 64 bits: not a security measure, only a fingerprint of the sources.
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for source in SOURCES {
        let path = root.join(source);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{source}: {e}"));
        // Line endings as committed; a checkout with CRLF would otherwise change the digest.
        hash = fnv1a(text.replace("\r\n", "\n").as_bytes(), hash);
        hash = fnv1a(source.as_bytes(), hash);
    }
    println!("cargo:rustc-env=ADMIN_CHECK_SOURCES_DIGEST={hash:016x}");
}
