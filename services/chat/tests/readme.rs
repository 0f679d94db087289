//! The README's configuration table is the documentation of every setting: it must name
//! exactly the `CHAT_*` variables the three binaries read, with the defaults they use.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;

fn env_names(cmd: clap::Command) -> BTreeSet<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The table's `CHAT_*` rows: variable → its default column.
fn documented() -> BTreeMap<String, String> {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `CHAT_"))
        .map(|l| {
            let name = l.split('`').nth(1).unwrap().to_owned();
            let default = l.trim_end_matches('|').rsplit('|').next().unwrap().trim();
            (name, default.to_owned())
        })
        .collect()
}

/// Every `CHAT_*` variable of `cmd` with a default in the code, and that default.
fn defaults(cmd: clap::Command) -> Vec<(String, String)> {
    cmd.get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            let values = a.get_default_values();
            (!values.is_empty()).then(|| {
                let joined: Vec<String> = values
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                (env, joined.join(","))
            })
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_gives_the_defaults_the_code_uses() {
    let documented = documented();
    let mut checked = 0;
    for cmd in [
        chat::Config::command(),
        chat_gateway::Config::command(),
        chat_realtime::Config::command(),
    ] {
        let binary = cmd.get_name().to_owned();
        for (env, default) in defaults(cmd) {
            let column = &documented[&env];
            // An empty default is said in words; any other is the column's first value.
            let said = if default.is_empty() {
                column.starts_with("empty")
            } else {
                column.split('`').nth(1) == Some(default.as_str())
            };
            assert!(
                said,
                "{binary}: {env} defaults to {default:?}, the README says {column:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} defaults found");
}

#[test]
fn the_readme_configuration_table_matches_the_code() {
    let documented: BTreeSet<String> = documented().into_keys().collect();
    let mut read = env_names(chat::Config::command());
    read.extend(env_names(chat_gateway::Config::command()));
    read.extend(env_names(chat_realtime::Config::command()));
    assert_eq!(
        documented, read,
        "README table vs. settings the binaries read"
    );
}

/// A row whose meaning starts with binaries (`` `chat-realtime`, `chat`: ``) names
/// exactly the binaries that read it; a row without names, a setting all three read.
#[test]
fn the_readme_configuration_table_says_which_binaries_read_each_setting() {
    let readme = include_str!("../../../README.md");
    let binaries = [
        ("chat", env_names(chat::Config::command())),
        ("chat-gateway", env_names(chat_gateway::Config::command())),
        ("chat-realtime", env_names(chat_realtime::Config::command())),
    ];
    for line in readme.lines().filter(|l| l.starts_with("| `CHAT_")) {
        let name = line.split('`').nth(1).unwrap();
        let meaning = line.split('|').nth(2).unwrap().trim();
        let said: BTreeSet<&str> = match meaning.split_once(": ") {
            Some((head, _))
                if head
                    .split(", ")
                    .all(|b| b.starts_with("`chat") && b.ends_with('`')) =>
            {
                head.split(", ").map(|b| b.trim_matches('`')).collect()
            }
            _ => binaries.iter().map(|(b, _)| *b).collect(),
        };
        let read: BTreeSet<&str> = binaries
            .iter()
            .filter(|(_, envs)| envs.contains(name))
            .map(|(b, _)| *b)
            .collect();
        assert_eq!(
            said, read,
            "{name}: the README says {said:?}, the code reads it in {read:?}"
        );
    }
}
