//! Usage errors: one `tupper:` line and one hint line, exit 125, instead of
//! clap's multi-line block (`--help` and `--version` are printed as clap
//! makes them).

/// Subcommands, to point the hint at the right `--help`.
const SUBCOMMANDS: [&str; 5] = ["run", "image", "ps", "rm", "gc"];
const IMAGE_SUBCOMMANDS: [&str; 4] = ["import", "ls", "list", "rm"];

/// The two lines printed for a usage error: clap's rendered message
/// (`rendered`) reduced to its first line, and a hint naming the help of
/// the subcommand in `args` (the command line without the program name).
pub fn format(rendered: &str, missing_subcommand: bool, args: &[String]) -> (String, String) {
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    let msg = if missing_subcommand {
        "a subcommand is required".to_string()
    } else {
        let msg = first.strip_prefix("error: ").unwrap_or(first);
        // clap quotes with '…'; keep its words as they are.
        msg.to_string()
    };
    let mut words = args.iter().filter(|a| !a.starts_with('-'));
    let mut path = String::from("tupper-supervisor");
    if let Some(sub) = words.next().filter(|w| SUBCOMMANDS.contains(&w.as_str())) {
        path.push(' ');
        path.push_str(sub);
        if sub == "image" {
            if let Some(s) = words
                .next()
                .filter(|w| IMAGE_SUBCOMMANDS.contains(&w.as_str()))
            {
                path.push(' ');
                path.push_str(s);
            }
        }
    }
    (format!("tupper: {msg}"), format!("see {path} --help"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn one_line_and_a_hint() {
        let rendered = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: tupper-supervisor run [OPTIONS] <IMAGE> [COMMAND]...\n\nFor more information, try '--help'.\n";
        let (line, hint) = format(rendered, false, &a(&["run", "--bogus", "busybox"]));
        assert_eq!(line, "tupper: unexpected argument '--bogus' found");
        assert_eq!(hint, "see tupper-supervisor run --help");
        let (line, hint) = format("error: x\n", false, &a(&["image", "import"]));
        assert_eq!(line, "tupper: x");
        assert_eq!(hint, "see tupper-supervisor image import --help");
        let (line, hint) = format("Run Linux containers\n\nUsage: ...", true, &[]);
        assert_eq!(line, "tupper: a subcommand is required");
        assert_eq!(hint, "see tupper-supervisor --help");
        let (_, hint) = format("error: y", false, &a(&["--foo", "bar"]));
        assert_eq!(hint, "see tupper-supervisor --help");
    }
}
