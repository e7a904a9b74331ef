//! Rebuild when the built-in catalogue or the console changes: their files are embedded in the
//! binary, and a file added to `catalog/` or `console/` is otherwise not noticed.
fn main() {
    println!("cargo:rerun-if-changed=catalog");
    println!("cargo:rerun-if-changed=console");
}
