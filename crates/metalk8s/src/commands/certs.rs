use std::process::ExitCode;

use comfy_table::Cell;
use metalk8s_pki::PkiAction;

use crate::cli::{CertsCommand, ClusterArgs};
use crate::exit::{CommandResult, Failure, PROBLEM_FOUND};
use crate::ops::certs::{CertsReport, check};
use crate::ops::deploy::{DeployRequest, deploy};
use crate::output;

pub fn run(command: CertsCommand) -> CommandResult {
    match command {
        CertsCommand::Check { cluster, warn_days } => run_check(&cluster, warn_days),
        CertsCommand::Renew {
            cluster,
            all,
            expiring_within,
        } => renew(&cluster, all, expiring_within.unwrap_or(30)),
    }
}

fn run_check(args: &ClusterArgs, warn_days: u32) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let report = super::runtime().block_on(check(
        &inventory,
        &super::connect_options(&args.connect),
        time::Duration::days(i64::from(warn_days)),
    ));
    if !output::print_data(args.output, &report) {
        print_check(&report);
    }
    Ok(if report.any_expired() || !report.unreachable.is_empty() {
        ExitCode::from(PROBLEM_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_check(report: &CertsReport) {
    let mut table = output::table(&[
        "node",
        "file",
        "subject",
        "issuer",
        "not after",
        "days left",
        "status",
    ]);
    for cert in &report.certificates {
        table.add_row(vec![
            Cell::new(&cert.node),
            Cell::new(&cert.path),
            Cell::new(cert.subject.as_deref().unwrap_or("-")),
            Cell::new(cert.issuer.as_deref().unwrap_or("-")),
            Cell::new(
                cert.not_after
                    .map(|t| t.date().to_string())
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            Cell::new(
                cert.days_left
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            Cell::new(match &cert.error {
                Some(error) => format!("{}: {error}", cert.status),
                None => cert.status.clone(),
            }),
        ]);
    }
    println!("{table}");
    for (node, error) in &report.unreachable {
        println!("{node}: cannot be read: {error}");
    }
    let count = |status: &str| {
        report
            .certificates
            .iter()
            .filter(|c| c.status == status)
            .count()
    };
    println!(
        "{} certificates: {} ok, {} expiring soon, {} expired, {} unreadable",
        report.certificates.len(),
        count("ok"),
        count("expiring-soon"),
        count("expired"),
        count("unreadable")
    );
    if count("expiring-soon") + count("expired") > 0 {
        eprintln!("renew them with `metalk8s certs renew -i INVENTORY`");
    }
}

fn renew(args: &ClusterArgs, all: bool, within_days: u32) -> CommandResult {
    let inventory =
        metalk8s_inventory::load(&args.inventory.inventory).map_err(Failure::invalid)?;
    let connect = super::connect_options(&args.connect);
    let runtime = super::runtime();
    // A healthy etcd is renewed one member at a time, checked after each; one that is
    // not (its certificates expired while it was off) can only come back all at once.
    let healthy = runtime.block_on(async {
        let (cluster, _) = crate::ops::etcd::connect(&inventory, &connect).await?;
        Ok::<_, Failure>(
            metalk8s_etcd::status(&cluster)
                .await
                .is_ok_and(|status| status.healthy()),
        )
    })?;
    if !healthy {
        eprintln!(
            "etcd is not healthy: renewing every member at once (a rolling renewal needs a healthy cluster)"
        );
    }
    // Every phase (none named: a phase named explicitly must have something to do, and
    // one without its bundle has not), narrowed after the renewal to those placing a
    // renewed certificate.
    let mut request = DeployRequest::new(Vec::new(), connect);
    request.placing_renewed_only = true;
    request.pki = if all {
        PkiAction::RenewAll
    } else {
        PkiAction::RenewExpiring {
            within_seconds: i64::from(within_days) * 86_400,
        }
    };
    request.etcd_rolling = Some(healthy);
    let outcome = runtime.block_on(deploy(&inventory, &request))?;
    let renewals = outcome.pki.map(|pki| pki.renewals).unwrap_or_default();
    if !output::print_data(
        args.output,
        &serde_json::json!({ "renewals": renewals, "deploy": outcome.report }),
    ) {
        for renewal in &renewals {
            println!(
                "renewed {} of {} ({:?}): valid until {}",
                renewal.name,
                renewal.node,
                renewal.decision,
                renewal.not_after.date()
            );
        }
        if renewals.is_empty() {
            println!("no certificate needed renewal");
        }
        super::deploy::print_report(&outcome.report);
    }
    Ok(if outcome.report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEM_FOUND)
    })
}
