//! Icecast and HTTP listen-in outputs against real peers: Debian's `icecast2` (run as a
//! child with a generated config on 127.0.0.1, in a private network namespace per test) and
//! FFmpeg reading the streams back. Every check decodes: tone frequency and level for MP3 and
//! Ogg Opus, the exact generator sequence for SRT 302M and for 24-bit Ogg FLAC.

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

/// HTTP listen-in (MP3) read by FFmpeg (tone checked) and played by Debian's Chromium in an
/// `<audio>` element (playwright-core, `tests/dashboard/listen.mjs`): `currentTime` passes 2 s.
#[test]
fn http_listen_in_decodes_in_ffmpeg_and_plays_in_chromium() {
    for tool in ["node", "chromium"] {
        assert!(
            have(tool),
            "{tool} is not installed: run scripts/deps.sh test"
        );
    }
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/deps.sh test"
    );
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{TONE_INPUT}[[outputs]]\nname = \"web\"\nkind = \"http\"\ninput = \"tone\"\n\
         address = \"127.0.0.1:8001\"\npath = \"/live.mp3\"\ncodec = \"mp3\"\nmax_listeners = 4\n"
    );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("generating", Duration::from_secs(10));
    let url = "http://127.0.0.1:8001/live.mp3";
    let (mut reader, out) = ffmpeg_reader(dir.path(), "http-mp3", url, 2, 48_000);
    let status = reader.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", reader.stderr());
    assert_tone(
        &s32le(&std::fs::read(&out).expect("mp3")),
        2,
        48_000.0,
        "HTTP MP3",
    );

    let (status, stdout, stderr) = run_with_timeout(
        Command::new("node").arg(e2e.join("listen.mjs")).arg(url),
        Duration::from_secs(60),
    );
    assert!(
        status.success(),
        "Chromium did not play the stream:\n{}\n{stderr}\n{}",
        String::from_utf8_lossy(&stdout),
        estuary.stderr()
    );
}

/// nginx with the RTMP module on 127.0.0.1:1935; `extra` goes at the top level (a `stream {}`
/// TLS proxy), `modules` names further dynamic modules to load.
fn start_nginx_rtmp(dir: &Path, modules: &[&str], extra: &str) -> Proc {
    let conf = dir.join("nginx.conf");
    let loads: String = std::iter::once("ngx_rtmp_module")
        .chain(modules.iter().copied())
        .map(|m| format!("load_module /usr/lib/nginx/modules/{m}.so;\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "{loads}daemon off;\n\
             master_process off;\nerror_log stderr info;\npid {}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:1935; application live {{ live on; record off; }} }} }}\n\
             {extra}",
            dir.display()
        ),
    )
    .expect("nginx.conf");
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(dir);
    let mut nginx = Proc::spawn("nginx", &mut cmd, dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect("127.0.0.1:1935").is_err() {
        assert!(
            nginx.child.try_wait().expect("try_wait").is_none(),
            "nginx exited:\n{}",
            nginx.stderr()
        );
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

/// RTMP (AAC-LC in FLV, 44.1 kHz) published to nginx-rtmp; FFmpeg plays it back from nginx
/// and the tone is there at the right frequency and level.
#[test]
fn rtmp_to_nginx_plays_back_the_tone() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let _nginx = start_nginx_rtmp(dir.path(), &[], "");
    let config = format!(
        "{TONE_INPUT}[[outputs]]\nname = \"rtmp\"\nkind = \"rtmp\"\ninput = \"tone\"\n\
         url = \"rtmp://127.0.0.1/live/studio\"\nbitrate = 128000\nsample_rate = 44100\n"
    );
    let estuary = start_estuary(dir.path(), &config);
    std::thread::sleep(Duration::from_secs(1));
    let (mut reader, out) = ffmpeg_reader(
        dir.path(),
        "rtmp",
        "rtmp://127.0.0.1/live/studio",
        2,
        44_100,
    );
    read_tone(&mut reader, &out, &estuary, 44_100, "RTMP AAC");
}

/// Waits for an [`ffmpeg_reader`] and checks the tone it decoded (2 channels at `rate`).
fn read_tone(reader: &mut Proc, out: &Path, estuary: &Proc, rate: u32, what: &str) {
    let status = reader.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "ffmpeg failed:\n{}\n{}",
        reader.stderr(),
        estuary.stderr()
    );
    assert_tone(
        &s32le(&std::fs::read(out).expect(what)),
        2,
        f64::from(rate),
        what,
    );
}

/// One sequence input, three outputs: SRT 302M, Icecast (MP3) and HTTP listen-in (Ogg FLAC).
/// Icecast is killed for two seconds: the SRT receiver's and the HTTP listener's audio (24-bit
/// FLAC) stay the exact sequence, and the source is back on Icecast within two seconds of the
/// server answering again.
#[test]
fn an_icecast_outage_touches_neither_srt_nor_http_and_the_source_comes_back() {
    isolate_for_icecast();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut icecast = start_icecast(dir.path());
    let config = "[api]\nenabled = false\n[discovery]\nsap = false\nravenna = false\n\n\
         [[inputs]]\nname = \"seq\"\nkind = \"generator\"\nsignal = \"sequence\"\nmeters = false\n\n\
         [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"seq\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:9000\"\ncodec = \"pcm\"\n\n\
         [[outputs]]\nname = \"ice\"\nkind = \"icecast\"\ninput = \"seq\"\n\
         url = \"http://127.0.0.1:8000/seq.mp3\"\npassword = \"hackme\"\n\n\
         [[outputs]]\nname = \"web\"\nkind = \"http\"\ninput = \"seq\"\n\
         address = \"127.0.0.1:8081\"\npath = \"/seq.ogg\"\ncodec = \"flac\"\n";
    let mut estuary = start_estuary(dir.path(), config);
    estuary.wait_for_stderr("generating", Duration::from_secs(10));
    assert!(
        wait_for_source("/seq.mp3", Duration::from_secs(10), |_| true).is_some(),
        "no source on Icecast:\n{}",
        estuary.stderr()
    );

    let srt_out = dir.path().join("srt.raw");
    let mut srt_reader = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 7, &srt_out);
    let (mut http_reader, http_out) = ffmpeg_reader(
        dir.path(),
        "http",
        "http://127.0.0.1:8081/seq.ogg",
        7,
        48_000,
    );
    std::thread::sleep(Duration::from_secs(2));
    icecast.kill();
    std::thread::sleep(Duration::from_secs(2));
    let mut restarted = start_icecast(dir.path());
    let back = wait_for_source("/seq.mp3", Duration::from_secs(10), |_| true);
    // CI once saw the source not come back while Estuary's connects were refused: say
    // whether the restarted server was still running, and what it logged.
    assert!(
        back.is_some_and(|t| t <= Duration::from_secs(2)),
        "the source came back after {back:?}:\n{}\nrestarted icecast2 ({:?}):\n{}",
        estuary.stderr(),
        restarted.child.try_wait(),
        restarted.stderr()
    );

    for reader in [&mut srt_reader, &mut http_reader] {
        let status = reader.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "ffmpeg failed:\n{}", reader.stderr());
    }
    let srt = s32le(&std::fs::read(&srt_out).expect("srt"));
    assert!(
        srt.len() >= 6 * 48_000 * 2,
        "only {} SRT samples",
        srt.len()
    );
    let first = (srt[0] as u32 >> 8) as u64 / 64;
    for (i, frame) in srt.chunks_exact(2).enumerate() {
        let want = [0, 1].map(|ch| estuary_io::tx::sequence_sample(first + i as u64, ch));
        assert_eq!(frame, want, "SRT frame {i} is not the sequence's next");
    }
    // Ogg FLAC keeps the input's 24 bits: the listener's audio is the exact sequence too.
    let http = s32le(&std::fs::read(&http_out).expect("http"));
    assert!(
        http.len() >= 6 * 48_000 * 2,
        "only {} HTTP samples",
        http.len()
    );
    let first = (http[0] as u32 >> 8) as u64 / 64;
    for (i, frame) in http.chunks_exact(2).enumerate() {
        let want = [0, 1].map(|ch| estuary_io::tx::sequence_sample(first + i as u64, ch));
        assert_eq!(
            frame, want,
            "HTTP FLAC frame {i} is not the sequence's next"
        );
    }
    assert!(
        estuary.child.try_wait().expect("alive").is_none(),
        "estuary died:\n{}",
        estuary.stderr()
    );
}

/// A self-signed certificate for 127.0.0.1 (P-256, one day), made with Debian's `openssl`.
/// Not a CA certificate (`openssl req -x509`'s default): WebPKI refuses a CA certificate as
/// a server's own.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (status, _, stderr) = run_with_timeout(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(30),
    );
    assert!(status.success(), "openssl: {stderr}");
    (cert, key)
}

/// RTMPS: Estuary publishes over TLS to nginx's `stream {}` TLS terminator (a self-signed
/// certificate, trusted through `tls_ca_file`) in front of nginx-rtmp; FFmpeg plays the
/// stream back over plain RTMP and the tone is there at the right frequency and level.
#[test]
fn rtmps_through_a_tls_proxy_plays_back_the_tone() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let proxy = format!(
        "stream {{ server {{ listen 127.0.0.1:1936 ssl; ssl_certificate {}; \
         ssl_certificate_key {}; proxy_pass 127.0.0.1:1935; }} }}\n",
        cert.display(),
        key.display()
    );
    let mut nginx = start_nginx_rtmp(dir.path(), &["ngx_stream_module"], &proxy);
    // Three publishers: one trusting the test's CA, one with `tls_insecure`, and one with
    // neither, which must refuse the self-signed certificate (and never publish).
    let rtmps = |name: &str, trust: &str| {
        format!(
            "[[outputs]]\nname = \"{name}\"\nkind = \"rtmp\"\ninput = \"tone\"\n\
             url = \"rtmps://127.0.0.1:1936/live/{name}\"\n{trust}\
             bitrate = 128000\nsample_rate = 48000\n\n"
        )
    };
    let config = format!(
        "{TONE_INPUT}{}{}{}",
        rtmps("studio", &format!("tls_ca_file = \"{}\"\n", cert.display())),
        rtmps("insecure", "tls_insecure = true\n"),
        rtmps("untrusted", ""),
    );
    let estuary = start_estuary(dir.path(), &config);
    // A player that arrives before the publisher may wait for ever: start it after.
    for name in ["studio", "insecure"] {
        nginx.wait_for_stderr(&format!("publish: name='{name}'"), Duration::from_secs(15));
    }
    let readers = ["studio", "insecure"].map(|name| {
        ffmpeg_reader(
            dir.path(),
            name,
            &format!("rtmp://127.0.0.1/live/{name}"),
            2,
            48_000,
        )
    });
    for (mut reader, out) in readers {
        let what = format!("RTMPS AAC ({})", out.display());
        read_tone(&mut reader, &out, &estuary, 48_000, &what);
    }
    let log = estuary.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("untrusted") && l.to_lowercase().contains("certificate")),
        "no certificate error for the untrusted output:\n{log}"
    );
    assert!(
        !nginx.stderr().contains("publish: name='untrusted'"),
        "{}",
        nginx.stderr()
    );
}

const API: &str = "http://127.0.0.1:8490";
const API_TOKEN: &str = "out-test-token-0123456789abcdef";

/// `curl` with a method, a bearer token and a JSON body; returns (HTTP status, body).
fn curl(method: &str, path: &str, token: Option<&str>, json: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-X", method, "-w", "\n%{http_code}"])
        .arg(format!("{API}{path}"));
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = json {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let (_, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl {path}: {err}"));
    (code, body.to_owned())
}

/// `/metrics` as series (`name{labels}`) → value; every series' family has HELP and TYPE.
fn scrape() -> std::collections::HashMap<String, f64> {
    let (code, text) = curl("GET", "/metrics", None, None);
    assert_eq!(code, 200, "{text}");
    let mut typed = std::collections::HashSet::new();
    let mut series = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or("").to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, value) = line.rsplit_once(' ').expect("a sample line");
            let family = name.split('{').next().unwrap_or("");
            assert!(typed.contains(family), "{family} has no TYPE line");
            series.insert(name.to_owned(), value.parse().expect("a number"));
        }
    }
    series
}

fn series(metrics: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    *metrics
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The title from the config, then from the API (`POST /api/outputs/ice/title` with the admin
/// token), in Icecast's status JSON; the output counters in `/metrics` move: bytes, bitrate,
/// the state set, HTTP listeners, and, when Icecast is killed and restarted, the error
/// timestamp and the reconnections.
#[test]
fn titles_from_config_and_api_reach_icecast_and_output_metrics_move() {
    isolate_for_icecast();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut icecast = start_icecast(dir.path());
    let config = format!(
        "[api]\nbind = \"127.0.0.1:8490\"\ntoken = \"{API_TOKEN}\"\n\
         [discovery]\nsap = false\nravenna = false\n\n\
         [[inputs]]\nname = \"tone\"\nkind = \"generator\"\nsignal = \"tone\"\nmeters = false\n\n\
         [[outputs]]\nname = \"ice\"\nkind = \"icecast\"\ninput = \"tone\"\n\
         url = \"http://{ICECAST}/api.mp3\"\npassword = \"hackme\"\ntitle = \"From Config\"\n\n\
         [[outputs]]\nname = \"web\"\nkind = \"http\"\ninput = \"tone\"\n\
         address = \"127.0.0.1:8002\"\npath = \"/web.mp3\"\n"
    );
    let estuary = start_estuary(dir.path(), &config);
    assert!(
        wait_for_source("/api.mp3", Duration::from_secs(10), |s| s["title"]
            == "From Config")
        .is_some(),
        "the config's title is not on Icecast: {:?}\n{}",
        source_of("/api.mp3"),
        estuary.stderr()
    );

    let body = r#"{"title": "Live from the API"}"#;
    assert_eq!(
        curl("POST", "/api/outputs/ice/title", None, Some(body)).0,
        401
    );
    assert_eq!(
        curl(
            "POST",
            "/api/outputs/nope/title",
            Some(API_TOKEN),
            Some(body)
        )
        .0,
        404
    );
    let bad = r#"{"title": "two\nlines"}"#;
    assert_eq!(
        curl("POST", "/api/outputs/ice/title", Some(API_TOKEN), Some(bad)).0,
        400
    );
    let (code, text) = curl(
        "POST",
        "/api/outputs/ice/title",
        Some(API_TOKEN),
        Some(body),
    );
    assert_eq!(code, 204, "{text}");
    assert!(
        wait_for_source("/api.mp3", Duration::from_secs(5), |s| s["title"]
            == "Live from the API")
        .is_some(),
        "the API's title is not on Icecast: {:?}\n{}",
        source_of("/api.mp3"),
        estuary.stderr()
    );

    // A listener on the HTTP output while the counters are read twice, 2.5 s apart.
    let listener = std::thread::spawn(|| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect("127.0.0.1:8002").expect("connect");
        write!(s, "GET /web.mp3 HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let end = Instant::now() + Duration::from_secs(4);
        let mut buf = [0; 8192];
        let mut total = 0;
        while Instant::now() < end {
            total += s.read(&mut buf).unwrap_or(0);
        }
        total
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = scrape();
    std::thread::sleep(Duration::from_millis(2500));
    let after = scrape();
    let ice = |m: &std::collections::HashMap<String, f64>, name: &str| {
        series(m, &format!("{name}{{output=\"ice\"}}"))
    };
    let web = |m: &std::collections::HashMap<String, f64>, name: &str| {
        series(m, &format!("{name}{{output=\"web\"}}"))
    };
    assert_eq!(
        series(
            &after,
            "estuary_output_state{output=\"ice\",state=\"connected\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &after,
            "estuary_output_state{output=\"web\",state=\"serving\"}"
        ),
        1.0
    );
    assert!(
        ice(&after, "estuary_output_sent_bytes_total")
            > ice(&before, "estuary_output_sent_bytes_total")
    );
    assert!(
        ice(&after, "estuary_output_frames_encoded_total")
            > ice(&before, "estuary_output_frames_encoded_total")
    );
    let rate = ice(&after, "estuary_output_send_rate_bits_per_second");
    assert!(
        (100_000.0..160_000.0).contains(&rate),
        "Icecast send rate {rate} bit/s for 128 kbit/s MP3"
    );
    assert!(ice(&after, "estuary_output_title_updates_total") >= 1.0);
    assert_eq!(
        ice(&after, "estuary_output_last_error_timestamp_seconds"),
        0.0
    );
    assert!(ice(&after, "estuary_output_queue_chunks") < 64.0);
    assert_eq!(web(&after, "estuary_output_listeners"), 1.0);
    assert!(
        web(&after, "estuary_output_sent_bytes_total")
            > web(&before, "estuary_output_sent_bytes_total")
    );
    assert!(listener.join().expect("listener") > 30_000);

    // Icecast gone for a second: an error with its time, then a reconnection.
    icecast.kill();
    std::thread::sleep(Duration::from_secs(1));
    let down = scrape();
    assert_eq!(
        series(
            &down,
            "estuary_output_state{output=\"ice\",state=\"connected\"}"
        ),
        0.0
    );
    assert!(ice(&down, "estuary_output_errors_total") >= 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let at = ice(&down, "estuary_output_last_error_timestamp_seconds");
    assert!(
        (now - 5.0..=now + 1.0).contains(&at),
        "last error at {at}, now {now}"
    );
    assert!(ice(&down, "estuary_output_frames_dropped_total") > 0.0);
    let _icecast = start_icecast(dir.path());
    assert!(
        wait_for_source("/api.mp3", Duration::from_secs(5), |_| true).is_some(),
        "no reconnection:\n{}",
        estuary.stderr()
    );
    std::thread::sleep(Duration::from_millis(200));
    let back = scrape();
    assert!(ice(&back, "estuary_output_reconnects_total") >= 1.0);
    assert!(ice(&back, "estuary_output_streams_started_total") >= 2.0);
}
