//! The `floodgate` binary: Pingora's command line (`-c -d -u -t`), logging,
//! config loading and the server's run loop; plus the `token`, `hash-key` and
//! `consumer` tools.

use clap::{Parser, Subcommand};
use floodgate::services::state_file::StateFile;
use pingora_core::server::configuration::Opt;
use std::process::ExitCode;

/// mimalloc: per-thread free lists suit a proxy's many short-lived request
/// allocations better than glibc's malloc (measured in benches/load.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "conf/floodgate.yaml";

extern "C" {
    /// mimalloc's own: frees this thread's empty pages and purges them now.
    fn mi_collect(force: bool);
}

/// Loading a big config leaves megabytes freed on this thread (the YAML parser's
/// events: 14 MB at 10,000 routes). mimalloc returns freed memory to the OS only
/// when the thread that freed it allocates again, and this one sleeps from here
/// on in `run_forever`: without this, idle RSS at 10,000 routes is 98 MB, not 33.
fn return_startup_garbage() {
    // SAFETY: mimalloc is the global allocator (linked above); mi_collect only
    // touches the calling thread's heap and mimalloc's arenas, under their own locks.
    unsafe { mi_collect(true) }
}

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
    #[command(subcommand)]
    tool: Option<Tool>,
}

#[derive(Subcommand, Debug)]
enum Tool {
    /// Print an HS256 JWT for development and tests.
    Token {
        /// The environment variable holding the HMAC secret (never a command-line argument).
        #[arg(long)]
        secret_env: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        tier: Option<String>,
        /// Seconds until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        #[arg(long)]
        aud: Option<String>,
        #[arg(long)]
        iss: Option<String>,
        #[arg(long)]
        kid: Option<String>,
    },
    /// Print the sha256: digest of an API key, for the config file.
    HashKey { key: String },
    /// Manage consumers through a running instance's admin API.
    Consumer {
        /// The admin listener's URL.
        #[arg(long, default_value = "http://127.0.0.1:9091")]
        admin: String,
        /// The environment variable holding the admin token (never a command-line argument).
        #[arg(long, default_value = "FLOODGATE_ADMIN_TOKEN")]
        token_env: String,
        #[command(subcommand)]
        action: floodgate::services::admin::client::ConsumerAction,
    },
}

fn run_tool(tool: Tool) -> ExitCode {
    match tool {
        Tool::Consumer {
            admin,
            token_env,
            action,
        } => {
            let Ok(token) = std::env::var(&token_env) else {
                eprintln!("floodgate consumer: environment variable {token_env} is not set");
                return ExitCode::FAILURE;
            };
            match floodgate::services::admin::client::run(&admin, &token, &action) {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("floodgate consumer: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Tool::HashKey { key } => {
            println!("{}", floodgate::auth::api_key::hash_key(&key));
            ExitCode::SUCCESS
        }
        Tool::Token {
            secret_env,
            sub,
            tier,
            ttl,
            aud,
            iss,
            kid,
        } => {
            let Ok(secret) = std::env::var(&secret_env) else {
                eprintln!("floodgate token: environment variable {secret_env} is not set");
                return ExitCode::FAILURE;
            };
            let now = jsonwebtoken::get_current_timestamp();
            let mut claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + ttl});
            for (name, value) in [("tier", tier), ("aud", aud), ("iss", iss)] {
                if let Some(value) = value {
                    claims[name] = serde_json::Value::String(value);
                }
            }
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = kid;
            let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
            match jsonwebtoken::encode(&header, &claims, &key) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("floodgate token: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `env_logger` under `RUST_LOG`, except that Pingora's debug and trace records are
/// dropped whatever `RUST_LOG` says: they print whole request headers, and with
/// them `Authorization` and API keys, which must never reach a log.
struct NoSecrets(env_logger::Logger);

impl log::Log for NoSecrets {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        !(metadata.target().starts_with("pingora") && metadata.level() > log::Level::Info)
            && self.0.enabled(metadata)
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

fn init_logging() {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(NoSecrets(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// An upgrade takes its sockets from a running instance, which holds the listen
/// addresses: if one can be bound, nobody will send them, and `-u` would wait for
/// them only to fail seconds later with a bare EAGAIN.
fn running_instance(listen: &[std::net::SocketAddr]) -> Result<(), String> {
    match listen.first().map(std::net::TcpListener::bind) {
        Some(Ok(_free)) => Err(format!("nothing listens on {}", listen[0])),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    if let Some(tool) = cli.tool {
        return run_tool(tool);
    }

    let (config, state_file) = match floodgate::config::load(&cli.conf, StateFile::read) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{}: invalid config:", cli.conf);
            for line in e.to_string().lines() {
                eprintln!("  {line}");
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.test {
        for warning in floodgate::upstream::discovery::unresolved_names(&config.upstreams, &config.dns) {
            eprintln!("warning: {warning} (floodgate starts without it and keeps looking it up)");
        }
        for warning in floodgate::config::expiring_certificates(&config.listen, std::time::SystemTime::now())
        {
            eprintln!("warning: {warning}");
        }
        println!("{}: config OK", cli.conf);
        return ExitCode::SUCCESS;
    }

    if cli.upgrade {
        let addrs: Vec<_> = config.listen.iter().map(|l| l.addr).collect();
        if let Err(why) = running_instance(&addrs) {
            eprintln!("floodgate -u: no running floodgate to take over: {why}");
            return ExitCode::FAILURE;
        }
    }
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        nocapture: false,
        test: false,
        conf: None,
    };
    match floodgate::app::build(config, state_file, opt) {
        Ok(server) => {
            return_startup_garbage();
            server.run_forever()
        }
        Err(e) => {
            eprintln!("floodgate: {e}");
            ExitCode::FAILURE
        }
    }
}
