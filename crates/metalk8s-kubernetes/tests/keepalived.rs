//! keepalived's files for the VIP. tests/proxy_lab.rs runs them for real on lab nodes.

mod common;

use metalk8s_kubernetes::keepalived;

#[test]
fn the_track_script_checks_the_haproxy_serving_the_vip_and_the_local_api_server() {
    let cluster = common::cluster(3, 36, true, false);
    let files = keepalived::files(&cluster, &cluster.nodes[1])
        .unwrap()
        .unwrap();
    let requests: Vec<&str> = files
        .check_script
        .lines()
        .filter(|line| line.contains("curl "))
        .collect();
    assert_eq!(requests.len(), 2, "{}", files.check_script);
    // haproxy first (connections to the VIP go through it), chained with `&&` so that
    // either failure fails the script.
    assert!(
        requests[0].contains("http://127.0.0.1:7080/healthz") && requests[0].ends_with("&&"),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].starts_with("exec curl ")
            && requests[1].contains("https://10.100.0.12:6443/readyz"),
        "{}",
        requests[1]
    );
    // Both requests together fit in the script's timeout, which is the one rendered.
    let max_times: u32 = requests
        .iter()
        .map(|request| {
            let after = request.split("--max-time ").nth(1).expect("a --max-time");
            after.split(' ').next().unwrap().parse::<u32>().unwrap()
        })
        .sum();
    let timeout = keepalived::TRACK_SCRIPT.timeout_seconds;
    assert!(max_times <= timeout, "{max_times} s > {timeout} s");
    assert!(files.config.contains(&format!("    timeout {timeout}\n")));
}

#[test]
fn a_killed_keepalived_leaves_no_vip_behind_and_comes_back() {
    let cluster = common::cluster(3, 36, true, false);
    let files = keepalived::files(&cluster, &cluster.nodes[0])
        .unwrap()
        .unwrap();
    let service: Vec<&str> = files
        .drop_in
        .lines()
        .skip_while(|line| *line != "[Service]")
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(
        service,
        [
            "[Service]",
            "Restart=always",
            "RestartSec=1s",
            // `-`: after a clean stop keepalived has removed it already.
            "ExecStopPost=-ip address del 10.100.0.100/32 dev eth0",
        ]
    );
    assert!(files.drop_in.contains("[Unit]\nStartLimitIntervalSec=0\n"));
}
