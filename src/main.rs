fn main() -> std::process::ExitCode {
    mimi_discovery::cli::main()
}
