//! The `flowd` binary: all the work happens in [`flowd::cli`].

fn main() -> std::process::ExitCode {
    flowd::cli::main()
}
