//! The `flowd-bench` binary. Everything lives in the library (`lib.rs`), so that the root
//! package's `cargo test` runs the harness's tests (`tests/it/bench.rs`) with the rest.

fn main() -> std::process::ExitCode {
    flowd_bench::main()
}
