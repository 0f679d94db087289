//! The workspace's declared `rust-version` is one its locked dependencies build with:
//! a user on the declared toolchain must not meet a dependency that needs a newer one.

use std::process::Command;

/// `1.88` and `1.88.0` alike.
fn version(v: &str) -> [u64; 3] {
    let mut parts = v.split('.').map(|p| p.parse().unwrap_or(0));
    [(); 3].map(|_| parts.next().unwrap_or(0))
}

#[test]
fn the_declared_rust_version_covers_every_locked_dependency() {
    // Not --offline: metadata reads every locked package's manifest, other platforms'
    // too, and a fresh machine's cargo cache holds only what the host build fetched.
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let declared =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("rust-version = ")?
                    .trim()
                    .trim_matches('"')
                    .to_owned()
                    .into()
            })
            .expect("the workspace declares rust-version");
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let too_new: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !members.contains(&p["id"].as_str().unwrap_or_default()))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(&declared))
                .then(|| format!("{} needs {needs}", p["name"].as_str().unwrap_or("?")))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version {declared} is too old: {too_new:?}"
    );
}
