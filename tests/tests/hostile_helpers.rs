//! Hostile process state: a caller controls everything a helper inherits
//! (resource limits, signal dispositions and mask, interval timers, working
//! directory, standard descriptors). Every helper resets or refuses it before
//! it does anything with its capabilities.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tupper_integration::Env;

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

const HELPERS: [&str; 3] = ["storage", "ns", "net"];

/// The value of `Key:` in `/proc/<pid>/status`.
fn status_field(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Soft and hard values of one row of `/proc/<pid>/limits`.
fn limit_row(pid: u32, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let row = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_string();
    let mut fields = row[name.len().min(row.len())..].split_whitespace();
    (
        fields.next().unwrap_or_default().to_string(),
        fields.next().unwrap_or_default().to_string(),
    )
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn helpers_reset_what_a_hostile_caller_hands_them() {
    let e = env();
    for helper in HELPERS {
        let mut holder = e
            .as_user(&e.user, &e.driver.to_string_lossy())
            .arg(e.libexec())
            .args(["hold-hostile", helper])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the driver");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("driver output");
        let pid: u32 = line
            .trim()
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{helper}: driver said {line:?}"));
        // Past the interval timer the caller armed (2 s): a helper that kept
        // it would have died of SIGALRM by now.
        std::thread::sleep(Duration::from_millis(2500));
        let state = status_field(pid, "State");
        let checks = [
            (
                "alive after the caller's timer",
                !state.is_empty() && !state.starts_with('Z'),
            ),
            (
                "no core dumps",
                limit_row(pid, "Max core file size").0 == "0",
            ),
            (
                "no core dumps, not even after prlimit",
                helper == "ns" || limit_row(pid, "Max core file size").1 == "0",
            ),
            (
                "empty signal mask",
                status_field(pid, "SigBlk") == "0000000000000000",
            ),
            // Only SIGPIPE (13) and SIGXFSZ (25) ignored.
            (
                "default signal dispositions",
                status_field(pid, "SigIgn") == "0000000001001000",
            ),
            (
                "no ambient capabilities",
                status_field(pid, "CapAmb") == "0000000000000000",
            ),
            (
                "no effective capabilities",
                status_field(pid, "CapEff") == "0000000000000000",
            ),
            (
                "working directory /",
                std::fs::read_link(format!("/proc/{pid}/cwd")).ok() == Some("/".into()),
            ),
            // (glibc itself reopens a closed standard descriptor of a
            // program run with capabilities on /dev/full or /dev/null.)
            (
                "standard input reopened on a harmless device",
                std::fs::read_link(format!("/proc/{pid}/fd/0")).is_ok_and(|p| {
                    p == std::path::Path::new("/dev/null") || p == std::path::Path::new("/dev/full")
                }),
            ),
        ];
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(w, _)| *w)
            .collect();
        // The proc files of a non-dumpable process belong to root.
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(format!("/proc/{pid}/environ")).map(|m| m.uid());
        drop(holder.stdin.take());
        let _ = holder.wait();
        assert!(
            failed.is_empty(),
            "tupper-{helper}: {failed:?} (state {state:?})"
        );
        assert_eq!(owner.ok(), Some(0), "tupper-{helper} is dumpable");
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn helpers_refuse_hard_limits_too_low_to_finish() {
    let e = env();
    let supervisor = e.supervisor();
    for (ulimit, says) in [
        ("ulimit -f 1048576", "file size (ulimit -f)"),
        ("ulimit -t 600", "cpu time (ulimit -t)"),
        ("ulimit -n 64", "open files (ulimit -n)"),
    ] {
        let script = format!("{ulimit} && exec {} image ls", supervisor.display());
        let out = e
            .as_user(&e.user, "/bin/sh")
            .args(["-c", &script])
            .output()
            .expect("spawn sh");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{ulimit}: image ls succeeded");
        assert!(
            err.contains(&format!("the hard resource limit on {says}")),
            "{ulimit}: {err}"
        );
    }
    // A lowered soft limit is simply raised again: the command works.
    let script = format!("ulimit -S -f 1 && exec {} image ls", supervisor.display());
    let out = e
        .as_user(&e.user, "/bin/sh")
        .args(["-c", &script])
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "soft limit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing was left running.
    let _ = Command::new("true").status();
}
