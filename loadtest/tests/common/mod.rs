//! Running the load tester's binary, for the tests of this crate.

use serde_json::Value;

/// Runs the binary; returns its exit status, stdout and stderr.
pub async fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-loadtest"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("the load tester runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a scenario with `--json --quiet`; returns the exit status, the report (if
/// one was printed) and stderr.
pub async fn report<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, Option<Value>, String) {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(AsRef::as_ref).collect();
    all.extend([
        std::ffi::OsStr::new("--json"),
        std::ffi::OsStr::new("--quiet"),
    ]);
    let (code, stdout, stderr) = run(&all).await;
    (code, serde_json::from_str(&stdout).ok(), stderr)
}
