// web/dist is embedded with include_dir!, which cannot tell cargo to watch it on stable:
// rebuild when the committed web build changes.
fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
}
