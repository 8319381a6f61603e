//! Runs the real binary with `--quick` over the baseline stacks and checks that every
//! line is one JSON object of the documented shape with positive figures, and that every
//! expected (bench, stack, concurrency) appears exactly once.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pheromone-bench"))
        .args(args)
        .output()
        .expect("run pheromone-bench");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn positive(line: &Value, key: &str) -> f64 {
    let v = line[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {line}"));
    assert!(
        v.is_finite() && v > 0.0,
        "{key} = {v} is not positive in {line}"
    );
    v
}

/// Runs the binary with `args`, expects exactly one line, checks it has exactly `keys` in
/// that order, and returns it parsed.
fn one_line(args: &[&str], keys: &[&str]) -> Value {
    let (ok, stdout, stderr) = run(args);
    assert!(ok, "stderr:\n{stderr}");
    let texts: Vec<&str> = stdout.lines().collect();
    assert_eq!(texts.len(), 1, "{stdout}");
    let line: Value = serde_json::from_str(texts[0]).expect("json");
    assert_keys(texts[0], &line, keys);
    line
}

/// Checks the object has exactly `keys`, printed in that order.
fn assert_keys(text: &str, line: &Value, keys: &[&str]) {
    assert_eq!(
        line.as_object().expect("object").len(),
        keys.len(),
        "{text}"
    );
    let mut last = 0;
    for key in keys {
        let at = text
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} missing in {text}"));
        assert!(at >= last, "{key} out of order in {text}");
        last = at;
    }
}

#[test]
fn quick_run_prints_one_valid_line_per_measurement() {
    let (ok, stdout, stderr) = run(&[
        "--quick",
        "--stacks",
        "tcp,tcp+chacha20poly1305,tcp+aes256gcm,libp2p",
        "--timeout-secs",
        "60",
    ]);
    assert!(ok, "bench failed; stderr:\n{stderr}");

    let mut seen = Vec::new();
    for text in stdout.lines() {
        let line: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let bench = line["bench"].as_str().expect("bench").to_owned();
        let stack = line["stack"].as_str().expect("stack").to_owned();
        let mut concurrency = 0;
        match bench.as_str() {
            "throughput" => {
                assert_keys(text, &line, &["bench", "stack", "mb_per_s", "cpu_s_per_gb"]);
                positive(&line, "mb_per_s");
                positive(&line, "cpu_s_per_gb");
            }
            "rr" => {
                assert_keys(
                    text,
                    &line,
                    &["bench", "stack", "concurrency", "per_s", "p50_us", "p99_us"],
                );
                concurrency = line["concurrency"].as_u64().expect("concurrency");
                positive(&line, "per_s");
                let p50 = positive(&line, "p50_us");
                let p99 = positive(&line, "p99_us");
                assert!(p99 >= p50, "p99 below p50 in {line}");
            }
            "connect" => {
                assert_keys(text, &line, &["bench", "stack", "per_s", "p50_us"]);
                positive(&line, "per_s");
                positive(&line, "p50_us");
            }
            "dispatch" => {
                assert_keys(
                    text,
                    &line,
                    &["bench", "stack", "mode", "concurrency", "per_s", "p50_us"],
                );
                concurrency = line["concurrency"].as_u64().expect("concurrency");
                let mode = line["mode"].as_str().expect("mode");
                assert!(mode == "long" || mode == "short", "{text}");
                if mode == "short" {
                    // Tell the short run from the long one at the same concurrency.
                    concurrency += 1000;
                }
                positive(&line, "per_s");
                positive(&line, "p50_us");
            }
            other => panic!("unknown bench {other} in {line}"),
        }
        seen.push((bench, stack, concurrency));
    }

    let mut expected: Vec<(String, String, u64)> = [
        ("throughput", "tcp", 0),
        ("throughput", "tcp+chacha20poly1305", 0),
        ("throughput", "tcp+aes256gcm", 0),
        ("throughput", "libp2p", 0),
        ("rr", "tcp", 1),
        ("rr", "tcp", 64),
        ("rr", "libp2p", 1),
        ("rr", "libp2p", 64),
        ("connect", "tcp", 0),
        ("connect", "libp2p", 0),
        ("dispatch", "libp2p", 1),
        ("dispatch", "libp2p", 64),
        ("dispatch", "libp2p", 1001),
    ]
    .iter()
    .map(|&(b, s, c)| (b.to_owned(), s.to_owned(), c))
    .collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "stderr:\n{stderr}");
}

#[test]
fn only_and_stacks_select_a_subset() {
    let (ok, stdout, stderr) = run(&["--quick", "--only", "connect", "--stacks", "tcp"]);
    assert!(ok, "stderr:\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["bench"], "connect");
    assert_eq!(lines[0]["stack"], "tcp");
}

#[test]
fn pheromone_dispatch_lines() {
    let (ok, stdout, stderr) = run(&["--quick", "--only", "dispatch", "--stacks", "pheromone"]);
    assert!(ok, "stderr:\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let benches: Vec<&str> = lines
        .iter()
        .map(|l| l["bench"].as_str().expect("bench"))
        .collect();
    assert_eq!(
        benches,
        [
            "dispatch",
            "dispatch",
            "dispatch",
            "dispatch_memory",
            "dispatch_all"
        ],
        "{stdout}"
    );
    // Long mode carries its same-run raw-stream baseline; short mode has none.
    for long in &lines[..2] {
        positive(long, "raw_stream_per_s");
        positive(long, "raw_stream_p50_us");
        positive(long, "vs_raw_stream");
    }
    assert_eq!(lines[2]["mode"], "short");
    assert!(lines[2].get("vs_raw_stream").is_none(), "{stdout}");
    assert_eq!(lines[3]["streams_after"], 0);
    positive(&lines[3], "rss_large_kib");
    assert_eq!(lines[4]["peers"], 10);
    positive(&lines[4], "per_s");
}

#[test]
fn pheromone_throughput_line_names_its_cipher() {
    let auto = if pheromone::cpu_has_fast_aes_gcm() {
        "aes256gcm"
    } else {
        "chacha20poly1305"
    };
    for (extra, cipher) in [(None, auto), (Some("--no-aes-gcm"), "chacha20poly1305")] {
        let mut args = vec!["--quick", "--only", "throughput", "--stacks", "pheromone"];
        args.extend(extra);
        let line = one_line(
            &args,
            &["bench", "stack", "mb_per_s", "cpu_s_per_gb", "cipher"],
        );
        assert_eq!(line["stack"], "pheromone");
        assert_eq!(line["cipher"], cipher, "{extra:?}");
        positive(&line, "mb_per_s");
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let (ok, stdout, _) = run(&["--quick", "--concurrency", "0"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    let (ok, _, _) = run(&["--stacks", "carrier-pigeon"]);
    assert!(!ok);
}

#[test]
fn pheromone_forward_line() {
    let line = one_line(
        &["--quick", "--only", "forward", "--stacks", "pheromone"],
        &[
            "bench",
            "stack",
            "bytes",
            "forwarded_mb_per_s",
            "raw_stream_mb_per_s",
            "ratio",
            "forwarded_cpu_s_per_gb",
            "raw_cpu_s_per_gb",
        ],
    );
    assert_eq!(line["bench"], "forward");
    assert_eq!(line["stack"], "pheromone");
    assert_eq!(line["bytes"], 4 << 20);
    positive(&line, "forwarded_mb_per_s");
    positive(&line, "raw_stream_mb_per_s");
    positive(&line, "ratio");
    positive(&line, "forwarded_cpu_s_per_gb");
    positive(&line, "raw_cpu_s_per_gb");
}

#[test]
fn several_runs_print_the_median_with_min_and_max() {
    let line = one_line(
        &[
            "--quick", "--runs", "3", "--only", "connect", "--stacks", "tcp",
        ],
        &["bench", "stack", "per_s", "p50_us", "runs", "min", "max"],
    );
    assert_eq!(line["runs"], 3);
    let per_s = positive(&line, "per_s");
    let (min, max) = (
        positive(&line["min"], "per_s"),
        positive(&line["max"], "per_s"),
    );
    assert!(min <= per_s && per_s <= max, "{line}");
    let (ok, _, _) = run(&["--quick", "--runs", "0"]);
    assert!(!ok, "--runs 0 must be refused");
}
