//! Naming one process across pid reuse: its pid plus its start time.

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line. The command name in
/// field 2 may hold spaces and parentheses, so count from the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3; field 22 is the 20th from here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Start time of a running `pid`, `None` when no such process exists.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_field() {
        let stat = "1234 (evil) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(-5), None);
        assert_eq!(start_time(i32::MAX), None);
    }
}
