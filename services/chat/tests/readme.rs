//! The README's configuration table is the documentation of every setting: it must name
//! exactly the `CHAT_*` variables the three binaries read.

use std::collections::BTreeSet;

use clap::CommandFactory;

fn env_names(cmd: clap::Command) -> BTreeSet<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_readme_configuration_table_matches_the_code() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `CHAT_"))
        .map(|l| l.split('`').nth(1).unwrap().to_owned())
        .collect();
    let mut read = env_names(chat::Config::command());
    read.extend(env_names(chat_gateway::Config::command()));
    read.extend(env_names(chat_realtime::Config::command()));
    assert_eq!(
        documented, read,
        "README table vs. settings the binaries read"
    );
}
