//! The command line as a user meets it: `--version`, `check-config` on good and bad files,
//! `run` refusing a bad config with exit code 3 and a message that names the field and line.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ESTUARY, run_with_timeout};

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(ESTUARY).arg("check-config").arg(&path),
        Duration::from_secs(20),
    );
    (
        status.code().unwrap_or(-1),
        format!("{}{stderr}", String::from_utf8_lossy(&stdout)),
    )
}

const GOOD_INPUT: &str =
    "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.2.3:5004\"\n";

#[test]
fn version_prints_the_crate_version() {
    let (status, stdout, _) = run_with_timeout(
        Command::new(ESTUARY).arg("--version"),
        Duration::from_secs(10),
    );
    assert!(status.success());
    assert_eq!(
        String::from_utf8_lossy(&stdout).trim(),
        format!("estuary {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_shipped_example_validates() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (status, stdout, stderr) = run_with_timeout(
                Command::new(ESTUARY).arg("check-config").arg(&path),
                Duration::from_secs(20),
            );
            assert!(
                status.success(),
                "{}: {stderr}{}",
                path.display(),
                String::from_utf8_lossy(&stdout)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} examples found");
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let (code, out) = check_config(&format!("{GOOD_INPUT}latencyy = \"5ms\"\n"));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("inputs[0].latencyy"), "{out}");
    assert!(out.contains(":5:") || out.contains("line 5"), "{out}");
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let (code, out) = check_config(&format!("{GOOD_INPUT}channels = \"two\"\n"));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("channels") || out.contains("invalid type"),
        "{out}"
    );
    assert!(out.contains(":5:") || out.contains("line 5"), "{out}");
}

#[test]
fn wrong_type_in_a_later_table_names_its_index() {
    let text = format!(
        "{GOOD_INPUT}\n[[inputs]]\nname = \"b\"\nkind = \"aes67\"\naddress = \"239.1.2.4:5004\"\nlatency = 5\n"
    );
    let (code, out) = check_config(&text);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(":10: inputs[1].latency"), "{out}");
}

#[test]
fn unknown_interface_is_named_with_its_line_and_the_choices() {
    let (code, out) = check_config(&format!("{GOOD_INPUT}interface = \"nosuch0\"\n"));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("inputs[0].interface"), "{out}");
    assert!(out.contains(":5:"), "{out}");
    assert!(
        out.contains("lo"),
        "should list the interfaces there are: {out}"
    );
}

#[test]
fn output_naming_a_missing_input_is_rejected() {
    let text = format!(
        "{GOOD_INPUT}\n[[outputs]]\nname = \"o\"\nkind = \"srt\"\ninput = \"nope\"\nmode = \"caller\"\n\
         address = \"127.0.0.1:9000\"\ncodec = \"opus\"\n"
    );
    let (code, out) = check_config(&text);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("outputs[0].input") && out.contains("nope"),
        "{out}"
    );
    assert!(out.contains(":9:"), "{out}");
}

#[test]
fn short_passphrase_is_rejected() {
    let text = format!(
        "{GOOD_INPUT}\n[[outputs]]\nname = \"o\"\nkind = \"srt\"\ninput = \"a\"\nmode = \"caller\"\n\
         address = \"127.0.0.1:9000\"\ncodec = \"opus\"\npassphrase = \"short\"\n"
    );
    let (code, out) = check_config(&text);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("outputs[0].passphrase") && out.contains("10 to 79"),
        "{out}"
    );
}

#[test]
fn invalid_inline_sdp_is_rejected_with_the_sdp_error() {
    let text = "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\nsdp = \"v=0\\nthis is not sdp\\n\"\n";
    let (code, out) = check_config(text);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("inputs[0].sdp"), "{out}");
}

#[test]
fn run_refuses_a_bad_config_with_exit_code_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[inputs]]\nname = \"a\"\nkind = \"madi\"\n").expect("write");
    let (status, _, stderr) = run_with_timeout(
        Command::new(ESTUARY).arg("run").arg("-c").arg(&path),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("kind") || stderr.contains("madi"),
        "{stderr}"
    );
    assert!(stderr.contains(":3"), "{stderr}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (status, _, stderr) = run_with_timeout(
        Command::new(ESTUARY).args(["check-config", "/nonexistent/estuary.toml"]),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(3));
    assert!(
        stderr.contains("/nonexistent/estuary.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_json_object_per_line_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("json.toml");
    std::fs::write(
        &path,
        "[log]\nformat = \"json\"\n\n[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"127.0.0.1:47001\"\n",
    )
    .expect("write");
    let mut cmd = Command::new(ESTUARY);
    cmd.arg("run").arg("-c").arg(&path);
    let mut daemon = common::Proc::spawn("estuary-json", &mut cmd, dir.path());
    daemon.wait_for_stderr("receiving", Duration::from_secs(10));
    let status = daemon.terminate(Duration::from_secs(5));
    assert!(status.success(), "SIGTERM exit: {status}");
    let log = daemon.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    assert!(log.contains("\"message\":\"receiving\""), "{log}");
    assert!(log.contains("\"message\":\"stopping\""), "{log}");
}

#[test]
fn alarm_rules_are_checked_with_field_and_line() {
    let rule = |body: &str| {
        format!(
            "{GOOD_INPUT}\n[alarms]\n[[alarms.webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/\"\n\n[[alarms.rules]]\nname = \"r\"\n{body}"
        )
    };
    let (code, out) = check_config(&rule("condition = \"silense\"\n"));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(":13:") && out.contains("alarms.rules[0].condition"),
        "{out}"
    );
    assert!(out.contains("unknown condition \"silense\""), "{out}");

    let (code, out) = check_config(&rule("condition = \"loss\"\nthreshold = 3.0\n"));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(":14:") && out.contains("loss takes no threshold"),
        "{out}"
    );

    let (code, out) = check_config(&rule("condition = \"silence\"\ninputs = [\"b\"]\n"));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("alarms.rules[0].inputs: no input named \"b\""),
        "{out}"
    );

    let (code, out) = check_config(&rule("condition = \"silence\"\nnotify = [\"pager\"]\n"));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(":14:") && out.contains("no notifier named \"pager\""),
        "{out}"
    );

    let (code, out) = check_config(&rule("condition = \"silence\"\nseverity = \"loud\"\n"));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("alarms.rules[0].severity"), "{out}");

    let (code, out) = check_config(&rule(
        "condition = \"silence\"\nthreshold = -40.0\nseverity = \"critical\"\nnotify = [\"ops\"]\n",
    ));
    assert_eq!(code, 0, "{out}");
}
