//! Validation of AES67 outputs and generator inputs: each mistake names its field and line.

use std::path::Path;

use super::*;

const GEN: &str = "[[inputs]]\nname = \"gen\"\nkind = \"generator\"\nchannels = 64\n\n";

fn error(text: &str) -> ConfigError {
    parse(text, Path::new(".")).expect_err("must be refused")
}

fn output(fields: &str) -> String {
    format!(
        "{GEN}[[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"gen\"\n\
         address = \"239.69.9.1:5004\"\n{fields}"
    )
}

#[test]
fn a_valid_aes67_output_plans_its_packets() {
    let config = parse(
        &output("format = \"L16\"\nptime = 0.25\ndscp = \"EF\"\nchannels = [1, 2]\n"),
        Path::new("."),
    )
    .expect("valid");
    let plan = config.outputs[0].aes67_plan(48_000, 2).expect("plan");
    assert_eq!(plan.format, SampleFormat::L16);
    assert_eq!((plan.frames_per_packet, plan.dscp, plan.ttl), (12, 46, 32));
    // 96 kHz doubles the frames, 44.1 kHz keeps the 48 kHz counts (AES67 §7.2).
    assert_eq!(
        config.outputs[0]
            .aes67_plan(96_000, 2)
            .map(|p| p.frames_per_packet),
        Ok(24)
    );
    assert_eq!(
        config.outputs[0]
            .aes67_plan(44_100, 2)
            .map(|p| p.frames_per_packet),
        Ok(12)
    );
}

#[test]
fn packets_over_the_mtu_name_ptime_and_the_size() {
    // 64 channels of L24 at 1 ms: 9228 bytes.
    let e = error(&output("ptime = 1\n"));
    assert_eq!(e.field, "outputs[0].ptime");
    assert_eq!(e.line, Some(11));
    assert!(e.message.contains("9228-byte"), "{e}");
    // At 125 µs the same stream fits.
    parse(&output("ptime = 0.125\n"), Path::new(".")).expect("fits");
}

#[test]
fn bad_aes67_settings_are_named_with_their_line() {
    for (fields, field, line) in [
        ("ptime = 0.5\n", "ptime", 11),
        ("format = \"AM824\"\nptime = 0.125\n", "format", 11),
        ("dscp = \"AF99\"\nptime = 0.125\n", "dscp", 11),
        ("ttl = 0\nptime = 0.125\n", "ttl", 11),
        ("payload_type = 200\nptime = 0.125\n", "payload_type", 11),
        ("channels = [65]\nptime = 0.125\n", "channels", 11),
        ("mode = \"caller\"\nptime = 0.125\n", "mode", 7),
    ] {
        let e = error(&output(fields));
        assert_eq!(e.field, format!("outputs[0].{field}"), "{fields}: {e}");
        assert_eq!(e.line, Some(line), "{fields}: {e}");
    }
}

#[test]
fn srt_outputs_refuse_aes67_settings_and_need_mode_and_codec() {
    let srt = |fields: &str| {
        format!(
            "{GEN}[[outputs]]\nname = \"s\"\nkind = \"srt\"\ninput = \"gen\"\n\
             address = \"127.0.0.1:9000\"\n{fields}"
        )
    };
    let e = error(&srt("mode = \"listener\"\ncodec = \"pcm\"\nptime = 1\n"));
    assert_eq!(e.field, "outputs[0].ptime");
    assert!(e.message.contains("AES67 setting"), "{e}");
    assert_eq!(error(&srt("codec = \"pcm\"\n")).field, "outputs[0].mode");
    assert_eq!(error(&srt("mode = \"caller\"\n")).field, "outputs[0].codec");
}

#[test]
fn generator_inputs_are_checked() {
    let generator =
        |fields: &str| format!("[[inputs]]\nname = \"g\"\nkind = \"generator\"\n{fields}");
    let e = error(&generator("signal = \"noise\"\n"));
    assert_eq!((e.field.as_str(), e.line), ("inputs[0].signal", Some(4)));
    let e = error(&generator("frequency = 30000\n"));
    assert_eq!(e.field, "inputs[0].frequency");
    let e = error(&generator("address = \"127.0.0.1:5004\"\n"));
    assert_eq!(e.field, "inputs[0].address");
    let e = error(
        "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"127.0.0.1:5004\"\nsignal = \"tone\"\n",
    );
    assert_eq!((e.field.as_str(), e.line), ("inputs[0].signal", Some(5)));
    let config = parse(
        &generator("signal = \"sweep\"\nsample_rate = 96000\n"),
        Path::new("."),
    )
    .expect("valid");
    let InputPlan::Fixed(stream) = config.inputs[0].plan().expect("plan") else {
        panic!("a generator is fixed");
    };
    assert_eq!((stream.channels, stream.sample_rate), (2, 96_000));
}

#[test]
fn dscp_names() {
    assert_eq!(parse_dscp("af41"), Some(34));
    assert_eq!(parse_dscp("EF"), Some(46));
    assert_eq!(parse_dscp("CS6"), Some(48));
    assert_eq!(parse_dscp("AF11"), Some(10));
    assert_eq!(parse_dscp("63"), Some(63));
    assert_eq!(parse_dscp("64"), None);
    assert_eq!(parse_dscp("CS8"), None);
}
