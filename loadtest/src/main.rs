fn main() {
    eprintln!("chat-loadtest: not built yet");
    std::process::exit(2);
}
