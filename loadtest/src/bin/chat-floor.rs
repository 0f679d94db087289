//! `chat-floor`: the loopback floor of a fan-out on this machine (see
//! `chat_loadtest::floor`). Exit status 0, or 3 when a frame went missing.

use chat_loadtest::EXIT_PROBLEMS;
use chat_loadtest::floor::{FloorConfig, run};
use clap::Parser;

fn main() {
    let cfg = FloorConfig::parse();
    let report = run(&cfg).unwrap_or_else(|e| {
        eprintln!("chat-floor: {e}");
        std::process::exit(1);
    });
    if cfg.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", report.summary());
    }
    let clean = report.delivered == report.expected && report.out_of_order == 0;
    std::process::exit(if clean { 0 } else { EXIT_PROBLEMS });
}
