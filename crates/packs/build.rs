//! The built-in packs are embedded from `packs/`: rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../../packs");
}
