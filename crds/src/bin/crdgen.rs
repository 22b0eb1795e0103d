//! Writes the CRD YAML, one file per kind, into every output directory.
//!
//! Run from the workspace root: `cargo run -p synco-crds --bin crdgen`.
//! An optional argument names the workspace root.

use std::path::PathBuf;

use synco_crds::generate::{OUTPUT_DIRS, rendered};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let files = rendered()?;
    for dir in OUTPUT_DIRS {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir)?;
        for (name, text) in &files {
            std::fs::write(dir.join(name), text)?;
        }
        eprintln!("wrote {} CRDs to {}", files.len(), dir.display());
    }
    Ok(())
}
