use std::process::ExitCode;

use comfy_table::Cell;
use metalk8s_etcd::{BackupOptions, ClusterStatus, EtcdError};
use metalk8s_model::report::error_chain;

use crate::cli::{ClusterArgs, EtcdCommand, EtcdMemberCommand};
use crate::exit::{CommandResult, Failure, PROBLEM_FOUND};
use crate::ops::etcd::{GATE_TIMEOUT, connect, stamp};
use crate::output;

pub fn run(command: EtcdCommand) -> CommandResult {
    super::runtime().block_on(async {
        match command {
            EtcdCommand::Status { cluster } => status(&cluster).await,
            EtcdCommand::Backup {
                cluster,
                dir,
                keep,
                schedule,
            } => backup(&cluster, dir, keep, schedule.as_deref()).await,
            EtcdCommand::Restore { cluster, snapshot } => restore(&cluster, &snapshot).await,
            EtcdCommand::Member(EtcdMemberCommand::Replace { cluster, node }) => {
                replace(&cluster, &node).await
            }
            EtcdCommand::Defrag { cluster } => defrag(&cluster).await,
        }
    })
}

fn say(line: &str) {
    eprintln!("{line}");
}

fn failed(error: EtcdError) -> Failure {
    let text = error_chain(&error);
    Failure::problem(match error.hint() {
        Some(hint) => miette::miette!(help = hint, "{text}"),
        None => miette::miette!("{text}"),
    })
}

async fn open(
    args: &ClusterArgs,
) -> Result<
    (
        metalk8s_etcd::EtcdCluster,
        Option<std::sync::Arc<dyn metalk8s_transport::Host>>,
    ),
    Failure,
> {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    Ok(connect(&inventory, &super::connect_options(&args.connect)).await?)
}

async fn status(args: &ClusterArgs) -> CommandResult {
    let (cluster, _) = open(args).await?;
    // A cluster where no member answers is a status too: every member down, with why.
    let status = metalk8s_etcd::status(&cluster).await.map_err(failed)?;
    if !output::print_data(args.output, &status) {
        print_status(&status);
    }
    Ok(if status.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEM_FOUND)
    })
}

fn print_status(status: &ClusterStatus) {
    let mut table = output::table(&[
        "member",
        "endpoint",
        "id",
        "health",
        "leader",
        "version",
        "db size",
        "raft index",
        "service",
    ]);
    for member in &status.members {
        let health = if member.healthy {
            "healthy".to_owned()
        } else if !member.listed {
            "not a member".to_owned()
        } else {
            format!("DOWN: {}", member.error.as_deref().unwrap_or("unhealthy"))
        };
        table.add_row(vec![
            Cell::new(&member.name),
            Cell::new(&member.endpoint),
            Cell::new(member.id.as_deref().unwrap_or("-")),
            Cell::new(health),
            Cell::new(if member.leader { "yes" } else { "" }),
            Cell::new(member.version.as_deref().unwrap_or("-")),
            Cell::new(
                member
                    .db_size
                    .map(human_size)
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            Cell::new(
                member
                    .raft_index
                    .map(|index| index.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            Cell::new(member.service.as_deref().unwrap_or("unreachable")),
        ]);
    }
    println!("{table}");
    for unknown in &status.unknown_members {
        println!("member {unknown} is in etcd but not in the inventory");
    }
    let quorum = if status.has_quorum() {
        "quorum"
    } else {
        "NO QUORUM"
    };
    let seen = match &status.observer {
        Some(observer) => format!("seen from {observer}"),
        None => "no member answers".to_owned(),
    };
    println!("{} ({quorum}; {seen})", status.summary());
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn bootstrap_of(
    bootstrap: Option<std::sync::Arc<dyn metalk8s_transport::Host>>,
) -> Result<std::sync::Arc<dyn metalk8s_transport::Host>, Failure> {
    bootstrap.ok_or_else(|| {
        Failure::problem(miette::miette!(
            "the bootstrap node, where snapshots are kept, cannot be reached"
        ))
    })
}

async fn backup(
    args: &ClusterArgs,
    dir: String,
    keep: u32,
    schedule: Option<&str>,
) -> CommandResult {
    let (cluster, bootstrap) = open(args).await?;
    let bootstrap = bootstrap_of(bootstrap)?;
    let options = BackupOptions {
        dir,
        keep: keep as usize,
        stamp: stamp(),
    };
    let backup = metalk8s_etcd::backup(&cluster, bootstrap.as_ref(), &options, &say)
        .await
        .map_err(failed)?;
    if let Some(calendar) = schedule {
        metalk8s_etcd::schedule(&cluster, bootstrap.as_ref(), &options, calendar)
            .await
            .map_err(failed)?;
        eprintln!(
            "{} on {} takes a snapshot {calendar} (`systemctl list-timers` there)",
            metalk8s_etcd::BACKUP_TIMER,
            bootstrap.name()
        );
    }
    if !output::print_data(args.output, &backup) {
        println!(
            "snapshot {} on {} ({} bytes, revision {}, {} keys, from {})",
            backup.path,
            bootstrap.name(),
            backup.size,
            backup.revision,
            backup.keys,
            backup.member
        );
        println!("sha256 {}", backup.sha256);
        for removed in &backup.removed {
            println!("removed old snapshot {removed}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn restore(args: &ClusterArgs, snapshot: &str) -> CommandResult {
    let (cluster, bootstrap) = open(args).await?;
    let bootstrap = bootstrap_of(bootstrap)?;
    let restored = metalk8s_etcd::restore(
        &cluster,
        bootstrap.as_ref(),
        snapshot,
        &stamp(),
        GATE_TIMEOUT,
        &say,
    )
    .await
    .map_err(failed)?;
    if !output::print_data(args.output, &restored) {
        println!(
            "restored {} (sha256 {}, revision {})",
            restored.snapshot, restored.sha256, restored.revision
        );
        for (member, previous) in &restored.previous_data {
            println!("{member}: its previous data is kept in {previous}");
        }
        print_status(&restored.status);
    }
    Ok(ExitCode::SUCCESS)
}

async fn replace(args: &ClusterArgs, node: &str) -> CommandResult {
    let (cluster, _) = open(args).await?;
    let replaced = metalk8s_etcd::replace_member(&cluster, node, &stamp(), GATE_TIMEOUT, &say)
        .await
        .map_err(|error| match error {
            EtcdError::NotAMember { .. } => Failure::invalid(miette::miette!("{error}")),
            other => failed(other),
        })?;
    if !output::print_data(args.output, &replaced) {
        println!(
            "{} replaced; its previous data is kept in {}",
            replaced.node, replaced.previous_data
        );
        print_status(&replaced.status);
    }
    Ok(ExitCode::SUCCESS)
}

async fn defrag(args: &ClusterArgs) -> CommandResult {
    let (cluster, _) = open(args).await?;
    let done = metalk8s_etcd::defrag(&cluster, GATE_TIMEOUT, &say)
        .await
        .map_err(failed)?;
    if !output::print_data(args.output, &done) {
        for member in &done {
            let size = |bytes: Option<u64>| bytes.map(human_size).unwrap_or_else(|| "?".to_owned());
            println!(
                "{}: {} -> {}",
                member.member,
                size(member.db_size_before),
                size(member.db_size_after)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
