//! `metalk8s repo serve | apt-key`: arguments in, metalk8s-repo does the work.

use std::process::ExitCode;

use metalk8s_repo::{AptSigningKey, ServeConfig, Transport};
use tracing_subscriber::EnvFilter;

use crate::cli::{RepoCommand, RepoServeArgs};
use crate::exit::{CommandResult, Failure};

pub fn run(command: RepoCommand) -> CommandResult {
    match command {
        RepoCommand::Serve(args) => serve(args),
        RepoCommand::AptKey { key, out } => {
            let (signing_key, generated) =
                AptSigningKey::load_or_generate(&key).map_err(Failure::error)?;
            signing_key
                .write_public_keyring(&out)
                .map_err(Failure::error)?;
            let origin = if generated { "generated" } else { "existing" };
            eprintln!(
                "{origin} APT signing key {}; public keyring written to {}",
                key.display(),
                out.display()
            );
            println!("{}", signing_key.fingerprint());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(args: RepoServeArgs) -> CommandResult {
    // One line per request at debug level: METALK8S_LOG=info,metalk8s_repo=debug.
    let filter = EnvFilter::try_from_env("METALK8S_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::output::colours_enabled())
        .init();
    let transport = match (args.insecure_http, args.cert, args.key) {
        (true, _, _) => Transport::InsecureHttp,
        (false, Some(cert), Some(key)) => Transport::Https { cert, key },
        _ => {
            return Err(Failure::invalid(miette::miette!(
                "--cert and --key are required unless --insecure-http is given"
            )));
        }
    };
    let config = ServeConfig {
        bundle: args.bundle,
        listen: args.listen,
        transport,
        apt_key: args.apt_key,
    };
    super::runtime()
        .block_on(metalk8s_repo::serve(&config))
        .map_err(Failure::error)?;
    Ok(ExitCode::SUCCESS)
}
