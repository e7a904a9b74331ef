//! Rebuild when the built-in catalogue changes: its files are embedded in the binary, and a file
//! added to `catalog/` is otherwise not noticed.
fn main() {
    println!("cargo:rerun-if-changed=catalog");
}
