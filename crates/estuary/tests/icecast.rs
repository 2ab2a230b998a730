//! Icecast and HTTP listen-in outputs against real peers: Debian's `icecast2` (run as a
//! child with a generated config on 127.0.0.1, in a private network namespace per test) and
//! FFmpeg reading the streams back. Every check decodes: tone frequency and level for MP3 and
//! Ogg Opus, the exact generator sequence for SRT 302M and (to 16 bits) for Ogg FLAC.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const ICECAST: &str = "127.0.0.1:8000";
/// The generator's default tone: 1 kHz, −18 dBFS peak, so −21.03 dBFS RMS.
const TONE_HZ: f64 = 1000.0;
const TONE_RMS_DBFS: f64 = -18.0 - 3.0103;

/// [`isolate`], plus an IPv4 address on a non-loopback interface: Icecast resolves its bind
/// address with `AI_ADDRCONFIG`, and glibc then returns no IPv4 address when the only
/// non-loopback interface (the namespace's IPv6 veth, `est0`) has no IPv4 address.
fn isolate_for_icecast() {
    isolate();
    let status = Command::new("ip")
        .args([
            "addr",
            "add",
            "192.0.2.1/32",
            "dev",
            estuary_io::netns::IPV6_TEST_INTERFACE,
        ])
        .status()
        .expect("ip");
    assert!(status.success(), "ip addr add failed");
}

fn start_icecast(dir: &Path) -> Proc {
    let xml = dir.join("icecast.xml");
    // Logs to stderr: Icecast drops root for `nobody`, who cannot write in the test's dir.
    std::fs::write(
        &xml,
        "<icecast>\n\
         <limits><sources>8</sources><clients>20</clients><source-timeout>5</source-timeout>\
         <burst-size>0</burst-size></limits>\n\
         <authentication><source-password>hackme</source-password>\
         <admin-user>admin</admin-user><admin-password>adminpw</admin-password></authentication>\n\
         <hostname>127.0.0.1</hostname>\n\
         <listen-socket><port>8000</port><bind-address>127.0.0.1</bind-address></listen-socket>\n\
         <paths><basedir>/usr/share/icecast2</basedir><logdir>/tmp</logdir>\
         <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>\n\
         <logging><accesslog>-</accesslog><errorlog>-</errorlog><loglevel>3</loglevel></logging>\n\
         <security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group>\
         </changeowner></security>\n</icecast>\n",
    )
    .expect("icecast.xml");
    let mut cmd = Command::new("icecast2");
    cmd.arg("-c").arg(&xml);
    let mut icecast = Proc::spawn("icecast2", &mut cmd, dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(ICECAST).is_err() {
        assert!(
            icecast.child.try_wait().expect("try_wait").is_none(),
            "icecast2 exited:\n{}",
            icecast.stderr()
        );
        assert!(Instant::now() < deadline, "icecast2 did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    icecast
}

/// Icecast's `status-json.xsl` sources (one object, or an array when several).
fn icecast_sources() -> Vec<serde_json::Value> {
    let Ok(mut response) = ureq::get(format!("http://{ICECAST}/status-json.xsl")).call() else {
        return Vec::new();
    };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match &json["icestats"]["source"] {
        serde_json::Value::Array(list) => list.clone(),
        serde_json::Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

fn source_of(mount: &str) -> Option<serde_json::Value> {
    icecast_sources()
        .into_iter()
        .find(|s| s["listenurl"].as_str().is_some_and(|u| u.ends_with(mount)))
}

/// Waits until `check` holds for `mount`'s source; returns how long it took.
fn wait_for_source(
    mount: &str,
    timeout: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if source_of(mount).is_some_and(|s| check(&s)) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// What a listener of `mount` receives in `duration` (the body, after Icecast's headers).
fn listen(mount: &str, duration: Duration) -> Vec<u8> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(ICECAST).expect("connect");
    write!(s, "GET {mount} HTTP/1.0\r\nHost: {ICECAST}\r\n\r\n").expect("request");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut out = Vec::new();
    let end = Instant::now() + duration;
    let mut buf = [0; 8192];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// FFmpeg reading `url` for `seconds` into raw s32le at `rate`.
fn ffmpeg_reader(
    dir: &Path,
    name: &str,
    url: &str,
    seconds: u32,
    rate: u32,
) -> (Proc, std::path::PathBuf) {
    let out = dir.join(format!("{name}.raw"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"])
        .args(["-i", url])
        .args(["-t", &seconds.to_string()])
        .args([
            "-f",
            "s32le",
            "-acodec",
            "pcm_s32le",
            "-ar",
            &rate.to_string(),
        ])
        .arg(&out);
    (Proc::spawn(name, &mut cmd, dir), out)
}

fn assert_tone(samples: &[i32], channels: usize, rate: f64, what: &str) {
    let left = channel(samples, channels, 0);
    // Skip the codec's start-up (priming, Opus pre-skip, resampler filter).
    let start = (rate * 0.3) as usize;
    assert!(
        left.len() > start + rate as usize / 2,
        "{what}: only {} frames decoded",
        left.len()
    );
    let window = to_f64(&left[start..]);
    let f = frequency(&window, rate);
    assert!((f - TONE_HZ).abs() < 1.0, "{what}: tone at {f:.2} Hz");
    let level = rms_dbfs(&window);
    assert!(
        (level - TONE_RMS_DBFS).abs() < 0.5,
        "{what}: level {level:.2} dBFS RMS, want {TONE_RMS_DBFS:.2}"
    );
}

const TONE_INPUT: &str = "[api]\nenabled = false\n[discovery]\nsap = false\nravenna = false\n\n\
    [[inputs]]\nname = \"tone\"\nkind = \"generator\"\nsignal = \"tone\"\nmeters = false\n\n";

/// MP3 (resampled to 44.1 kHz, title through `/admin/metadata`) and Ogg Opus (title in its
/// comment header) published to Icecast; FFmpeg decodes each mount; a new title written to
/// the watched file shows in Icecast's status for both.
#[test]
fn icecast_mp3_and_ogg_opus_decode_to_the_tone_and_follow_the_title_file() {
    isolate_for_icecast();
    let dir = tempfile::tempdir().expect("tempdir");
    let _icecast = start_icecast(dir.path());
    let title_file = dir.path().join("title.txt");
    std::fs::write(&title_file, "Morning Show\n").expect("title");
    let config = format!(
        "{TONE_INPUT}\
         [[outputs]]\nname = \"mp3\"\nkind = \"icecast\"\ninput = \"tone\"\n\
         url = \"http://{ICECAST}/live.mp3\"\npassword = \"hackme\"\ncodec = \"mp3\"\n\
         bitrate = 128000\nsample_rate = 44100\nstream_name = \"Estuary MP3\"\n\
         genre = \"Test\"\ntitle_file = \"{tf}\"\n\n\
         [[outputs]]\nname = \"opus\"\nkind = \"icecast\"\ninput = \"tone\"\n\
         url = \"http://{ICECAST}/live.opus\"\npassword = \"hackme\"\ncodec = \"opus\"\n\
         bitrate = 96000\ntitle_file = \"{tf}\"\n",
        tf = title_file.display()
    );
    let estuary = start_estuary(dir.path(), &config);
    // MP3: the title through the admin interface, in Icecast's status. Ogg: in the stream's
    // comment header, which listeners get (Icecast 2.4 does not show Opus titles in its status).
    assert!(
        wait_for_source("/live.mp3", Duration::from_secs(10), |s| s["title"]
            == "Morning Show")
        .is_some(),
        "/live.mp3 not published with its title: {:?}\n{}",
        icecast_sources(),
        estuary.stderr()
    );
    assert!(
        wait_for_source("/live.opus", Duration::from_secs(10), |_| true).is_some(),
        "/live.opus not published"
    );
    let head = listen("/live.opus", Duration::from_millis(500));
    assert!(contains(&head, "OpusHead") && contains(&head, "title=Morning Show"));
    let mp3 = source_of("/live.mp3").expect("mp3 source");
    assert_eq!(mp3["server_name"], "Estuary MP3");
    assert_eq!(mp3["genre"], "Test");
    assert_eq!(mp3["server_type"], "audio/mpeg");
    assert_eq!(
        source_of("/live.opus").expect("opus")["server_type"],
        "audio/ogg"
    );

    let (mut mp3_reader, mp3_out) = ffmpeg_reader(
        dir.path(),
        "mp3",
        &format!("http://{ICECAST}/live.mp3"),
        2,
        44_100,
    );
    let (mut opus_reader, opus_out) = ffmpeg_reader(
        dir.path(),
        "opus",
        &format!("http://{ICECAST}/live.opus"),
        2,
        48_000,
    );
    for reader in [&mut mp3_reader, &mut opus_reader] {
        let status = reader.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "ffmpeg failed:\n{}", reader.stderr());
    }
    assert_tone(
        &s32le(&std::fs::read(&mp3_out).expect("mp3")),
        2,
        44_100.0,
        "MP3 at 44.1 kHz",
    );
    assert_tone(
        &s32le(&std::fs::read(&opus_out).expect("opus")),
        2,
        48_000.0,
        "Ogg Opus",
    );

    let listener = std::thread::spawn(|| listen("/live.opus", Duration::from_secs(4)));
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&title_file, "Evening News\n").expect("title");
    assert!(
        wait_for_source("/live.mp3", Duration::from_secs(10), |s| s["title"]
            == "Evening News")
        .is_some(),
        "/live.mp3: the new title did not reach Icecast: {:?}\n{}",
        source_of("/live.mp3"),
        estuary.stderr()
    );
    // The Ogg listener connected before the change sees a chained stream with the new title.
    let heard = listener.join().expect("listener");
    assert!(
        contains(&heard, "title=Evening News"),
        "no chained Ogg stream with the new title in {} bytes",
        heard.len()
    );
}
