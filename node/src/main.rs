//! The `murmur` binary: parse the command line, set up logging, run the command. Everything
//! else is library code in `murmur_node`, which the tests call directly.

use clap::Parser;
use murmur_node::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(err) = murmur_node::logging::init(cli.log_format) {
        eprintln!("murmur: cannot set up logging: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    match murmur_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("murmur: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
