//! The `peermesh` binary: a thin command line over the library.

mod cli;

fn main() {
    std::process::exit(cli::main(std::env::args_os().collect()));
}
