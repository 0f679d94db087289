//! Settings are declared once, in their clap attributes (flag, `CHAT_*` variable,
//! default, range), by the crate that owns them. [`declared_defaults`] reads the
//! defaults back from those attributes, so a config's `Default` (what tests and
//! embedders start from) cannot drift from what the binaries use.

/// The settings `T` declares with every one at its declared default, whatever the
/// environment holds.
pub fn declared_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|a| a.env(None::<&str>));
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<&str>())
        .unwrap_or_else(|e| panic!("a setting without a default is required: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("declared defaults: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    struct Example {
        #[arg(long, env = "CHAT_EXAMPLE_SIZE", default_value_t = 7)]
        size: u32,
        #[arg(long, env = "CHAT_EXAMPLE_NAME")]
        name: Option<String>,
        #[arg(
            long,
            env = "CHAT_EXAMPLE_LIST",
            value_delimiter = ',',
            default_value = "a,b"
        )]
        list: Vec<String>,
    }

    #[test]
    fn defaults_come_from_the_attributes() {
        let e: Example = declared_defaults();
        assert_eq!(e.size, 7);
        assert_eq!(e.name, None);
        assert_eq!(e.list, ["a", "b"]);
    }
}
