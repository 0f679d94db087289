//! `chat-loadtest`: parses the flags and hands over to the library; the exit status says
//! how it went (0 clean, 3 losses or failures seen, 99 a threshold crossed, 64 bad flag,
//! 69 target unreachable, 1 the run could not be carried out).

use chat_loadtest::{Config, Error};

fn main() {
    let cfg = Config::from_args().unwrap_or_else(|e| fail(e));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(Error::Failed(format!("cannot start the runtime: {e}"))));
    if cfg.worker.is_some() {
        let result = runtime.block_on(chat_loadtest::run_worker(cfg));
        std::process::exit(match result {
            Ok(()) => 0,
            Err(e) => e.exit_code(),
        });
    }
    let json = cfg.json;
    let quiet = cfg.quiet;
    let report = runtime
        .block_on(chat_loadtest::run(cfg))
        .unwrap_or_else(|e| fail(e));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(doc) => println!("{doc}"),
            Err(e) => fail(Error::Failed(format!("cannot write the report: {e}"))),
        }
        if !quiet {
            eprint!("{}", report.summary());
        }
    } else {
        print!("{}", report.summary());
    }
    std::process::exit(report.exit_status);
}

fn fail(e: Error) -> ! {
    match &e {
        Error::Help(text) => print!("{text}"),
        _ => eprintln!("chat-loadtest: {e}"),
    }
    std::process::exit(e.exit_code());
}
