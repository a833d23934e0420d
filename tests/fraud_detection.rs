//! End-to-end: the `fraud_detection` example as a real process, against
//! alerts worked out by hand and against a brute-force search done here.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

mod common;

fn run(args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new(common::example_binary("fraud_detection")?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(stdin.as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn alerts(output: &Output) -> Result<Vec<String>> {
    if !output.status.success() {
        bail!("the example failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let mut alerts: Vec<String> = String::from_utf8(output.stdout.clone())?.lines().map(str::to_owned).collect();
    alerts.sort();
    Ok(alerts)
}

#[test]
fn a_small_then_a_large_transaction_within_a_minute_alerts() -> Result<()> {
    let input = "\
1000,acct-1,0.50
2000,acct-2,0.99
30000,acct-1,725.00
61000,acct-1,900.00
62001,acct-2,600.00
70000,acct-3,1.00
71000,acct-3,999.99
80000,acct-4,0.01
90000,acct-4,0.02
145000,acct-4,500.01
150001,acct-4,800.00
";
    // acct-1: 725.00 at 29 s after 0.50 alerts, 900.00 at 60 s after it too
    // (within one minute, inclusive). acct-2: 600.00 comes 60.001 s after.
    // acct-3: 1.00 is not under 1.00. acct-4: the second small one restarts
    // the minute, so 500.01 at 55 s after it alerts and 800.00 at 60.001 s not.
    let expected =
        vec!["alert,acct-1,1000,30000,725.00", "alert,acct-1,1000,61000,900.00", "alert,acct-4,90000,145000,500.01"];
    assert_eq!(alerts(&run(&[], input)?)?, expected);
    Ok(())
}

/// Alerts by brute force: for each large transaction, the latest earlier
/// small one of the account.
fn brute_force(transactions: &[(i64, String, i64)]) -> Vec<String> {
    let mut alerts = Vec::new();
    for (index, (timestamp, account, cents)) in transactions.iter().enumerate() {
        if *cents <= 50_000 {
            continue;
        }
        let small = transactions[..index].iter().rev().find(|(_, other, cents)| other == account && *cents < 100);
        if let Some((small_timestamp, ..)) = small
            && timestamp - small_timestamp <= 60_000
        {
            alerts.push(format!("alert,{account},{small_timestamp},{timestamp},{}.{:02}", cents / 100, cents % 100));
        }
    }
    alerts.sort();
    alerts
}

#[test]
fn alerts_match_a_brute_force_search_at_parallelism_1_and_3() -> Result<()> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let transactions: Vec<(i64, String, i64)> = (0..20_000i64)
        .map(|i| {
            let cents = match next() % 10 {
                0 => (next() % 100) as i64,
                1 => 50_000 + (next() % 50_000) as i64,
                _ => 100 + (next() % 49_900) as i64,
            };
            (i * 97, format!("acct-{}", next() % 40), cents)
        })
        .collect();
    let input: String = transactions
        .iter()
        .map(|(timestamp, account, cents)| format!("{timestamp},{account},{}.{:02}\n", cents / 100, cents % 100))
        .collect();
    let expected = brute_force(&transactions);
    assert!(expected.len() > 50, "the input should raise alerts");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("transactions.csv");
    std::fs::write(&file, &input)?;
    assert_eq!(alerts(&run(&["--parallelism", "1"], &input)?)?, expected, "stdin");
    let path = file.to_str().context("path")?;
    assert_eq!(alerts(&run(&[path, "--parallelism", "3"], "")?)?, expected, "file at parallelism 3");
    Ok(())
}

#[test]
fn amounts_are_read_exactly_and_malformed_ones_fail_the_job() -> Result<()> {
    // "0.5" is 50 cents and "500.0" is not over 500.00; "500.01" is.
    let input = "1000,acct-1,0.5\n2000,acct-1,500.0\n3000,acct-1,500.01\n";
    assert_eq!(alerts(&run(&[], input)?)?, vec!["alert,acct-1,1000,3000,500.01"]);
    for bad in ["0.5.0", "1.234", "-1.00", ".5", "1,00"] {
        let line = format!("1000,acct-1,{bad}");
        let output = run(&[], &format!("{line}\n"))?;
        assert!(!output.status.success(), "{line} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("malformed input line '{line}'")), "{stderr}");
    }
    Ok(())
}
