//! `maskline`: the server (`serve`) and a CLI that talks to it over HTTP.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
mod config;
mod intercept;
mod serve;

use config::Config;

/// Exit status for a bad configuration (sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "maskline", version, about = "Privacy-number platform")]
struct Args {
    /// TOML configuration file; MASKLINE_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API; embedded store unless configured otherwise).
    Serve,
    /// Apply the PostgreSQL schema's migrations (MASKLINE_DATABASE_URL) and exit.
    Migrate,
    /// Validate the configuration (file and MASKLINE_* environment) without
    /// binding or opening anything: exit 0, or 64 naming the key at fault.
    CheckConfig,
    /// Manage tenants (talks to the running server with the admin key).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
        #[command(flatten)]
        server: cli::ServerArgs,
    },
    /// Manage a tenant's numbers (admin key acting for --tenant).
    Numbers {
        #[command(subcommand)]
        command: NumbersCommand,
        #[command(flatten)]
        server: cli::ServerArgs,
    },
    /// Console accounts (talks to the running server with the admin key,
    /// or a tenant's key via --key for its own users).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
        #[command(flatten)]
        server: cli::ServerArgs,
    },
    /// The keys that seal stored values (works on the database directly).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Ask the running server for a route decision (switch key).
    Route {
        #[arg(long)]
        caller: String,
        #[arg(long)]
        called: String,
        #[arg(long)]
        extension: Option<String>,
        #[arg(long, default_value = "voice")]
        channel: String,
        #[command(flatten)]
        server: cli::ServerArgs,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id and API key (shown once).
    Create { name: String },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a console account. The password is read from
    /// MASKLINE_USER_PASSWORD, or else from the first line of standard
    /// input (never an argument: those show in the process list).
    Add {
        #[arg(long)]
        email: String,
        /// admin, owner, operator or viewer.
        #[arg(long)]
        role: String,
        /// The tenant's id (every role but admin).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a data key under the master key; it seals new values from a few
    /// seconds on, and running servers reseal older values in the background
    /// while every key still reads.
    Rotate,
}

#[derive(Subcommand)]
enum NumbersCommand {
    /// Import numbers from a CSV file: `number[,area]` per line, optional header.
    Import {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
    },
}

fn main() -> ExitCode {
    // A panic's message can carry request data (a phone number); report
    // where it happened, never what it said.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map_or_else(
            || "unknown location".to_owned(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        eprintln!("maskline: internal error at {at} (message withheld: it may hold request data)");
    }));
    maskline_callbacks::install_crypto_provider();
    let args = Args::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("maskline: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::CheckConfig = args.command {
        let from = args
            .config
            .as_deref()
            .map_or_else(|| "defaults".to_owned(), |p| format!("{}", p.display()));
        println!("maskline: configuration is valid ({from} and MASKLINE_* environment)");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maskline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Serve => serve::run(config).await,
            Command::Migrate => serve::migrate(config).await,
            Command::CheckConfig => Ok(()),
            Command::Keys {
                command: KeysCommand::Rotate,
            } => serve::rotate_keys(config).await,
            Command::Tenant {
                command: TenantCommand::Create { name },
                server,
            } => cli::tenant_create(&config, &server, &name).await,
            Command::Users {
                command:
                    UsersCommand::Add {
                        email,
                        role,
                        tenant,
                    },
                server,
            } => cli::users_add(&config, &server, &email, &role, tenant.as_deref()).await,
            Command::Numbers {
                command: NumbersCommand::Import { file, tenant },
                server,
            } => cli::numbers_import(&config, &server, &file, &tenant).await,
            Command::Route {
                caller,
                called,
                extension,
                channel,
                server,
            } => {
                cli::route(
                    &config,
                    &server,
                    &caller,
                    &called,
                    extension.as_deref(),
                    &channel,
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maskline: {e:#}");
            ExitCode::FAILURE
        }
    }
}
