//! The `floodgate` binary: Pingora's command line (`-c -d -u -t`), logging,
//! config loading and the server's run loop.

use clap::Parser;
use pingora_core::server::configuration::Opt;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "conf/floodgate.yaml";

#[derive(Parser, Debug)]
#[command(name = "floodgate", version, about = "An API gateway on Pingora")]
struct Cli {
    /// The config file.
    #[arg(short = 'c', long = "conf", default_value = DEFAULT_CONFIG)]
    conf: String,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Take over the listening sockets of a running instance (graceful upgrade).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
    /// Validate the config and exit.
    #[arg(short = 't', long = "test")]
    test: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();

    let config = match floodgate::config::load(&cli.conf) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: invalid config:", cli.conf);
            for line in e.to_string().lines() {
                eprintln!("  {line}");
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.test {
        println!("{}: config OK", cli.conf);
        return ExitCode::SUCCESS;
    }

    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        nocapture: false,
        test: false,
        conf: None,
    };
    match floodgate::app::build(config, opt) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("floodgate: {e}");
            ExitCode::FAILURE
        }
    }
}
