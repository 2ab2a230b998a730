//! One thread per output: encodes (Opus or SMPTE 302M), muxes MPEG-TS and hands 1316-byte
//! messages to the output's SRT sender, whose own thread connects, listens and reconnects.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use estuary_engine::time::MonoTime;
use estuary_io::clock::monotonic_now;
use estuary_io::opus::OpusEncoder;
use estuary_io::srt::SrtSender;
use estuary_wire::s302m::{self, S302mFormat};
use estuary_wire::ts::{self, TsAudio, TsConfig, TsMuxer};

use super::OutputSnapshot;
use crate::config::{CodecConfig, OutputConfig, ResolvedStream};
use crate::shutdown::Stop;

/// 302M access units: 5 ms keeps the added latency small at 0.6 % TS overhead per PES.
const PCM_FRAME: usize = 240;

enum Encoder {
    Opus(OpusEncoder),
    Pcm(S302mFormat),
}

pub(super) struct OutputWorker {
    pub name: String,
    consumer: rtrb::Consumer<i32>,
    marks: rtrb::Consumer<(u64, MonoTime)>,
    in_channels: usize,
    map: Vec<usize>,
    /// Channels sent (302M needs an even count: a silent channel pads an odd map).
    out_channels: usize,
    pub frame: usize,
    encoder: Encoder,
    muxer: TsMuxer,
    input_block: Vec<i32>,
    frame_block: Vec<i32>,
    access_unit: Vec<u8>,
    ts_out: Vec<u8>,
    /// Frames encoded by this worker; matched against the ingest's marks.
    frames_done: u64,
    /// Frames the output had encoded before this worker (a restarted route).
    pts_base: u64,
    srt: Arc<SrtSender>,
    shared: Arc<Mutex<OutputSnapshot>>,
    snapshot: OutputSnapshot,
}

impl OutputWorker {
    pub fn new(
        output: &OutputConfig,
        stream: &ResolvedStream,
        (consumer, marks): (rtrb::Consumer<i32>, rtrb::Consumer<(u64, MonoTime)>),
        srt: Arc<SrtSender>,
        shared: Arc<Mutex<OutputSnapshot>>,
    ) -> anyhow::Result<Self> {
        // A restarted route continues the output's media time, so PTS never jumps back.
        let (pts_base, snapshot) = {
            let previous = shared.lock().unwrap_or_else(|e| e.into_inner());
            (previous.frames_encoded, previous.clone())
        };
        let map = output.channel_map(stream.channels);
        let (encoder, out_channels, frame, audio) = match output.codec.unwrap_or(CodecConfig::Pcm) {
            CodecConfig::Opus => {
                let channels = map.len();
                let enc = OpusEncoder::new(
                    stream.sample_rate,
                    u16::try_from(channels)?,
                    *output.bitrate.get_ref(),
                )?;
                let frame = enc.frame_samples();
                (
                    Encoder::Opus(enc),
                    channels,
                    frame,
                    TsAudio::Opus {
                        channels: u8::try_from(channels)?,
                    },
                )
            }
            // `check` allows only Opus and PCM on SRT.
            _ => {
                let channels = map.len().next_multiple_of(2);
                let format = S302mFormat {
                    channels: u8::try_from(channels)?,
                    bits: *output.bits.get_ref(),
                };
                (
                    Encoder::Pcm(format),
                    channels,
                    PCM_FRAME,
                    TsAudio::S302m { format },
                )
            }
        };
        let max_au = match &encoder {
            Encoder::Opus(_) => 4_000,
            Encoder::Pcm(format) => s302m::packed_len(*format, frame),
        };
        Ok(Self {
            name: output.name.get_ref().clone(),
            consumer,
            marks,
            in_channels: usize::from(stream.channels),
            map,
            out_channels,
            frame,
            encoder,
            muxer: TsMuxer::new(TsConfig::new(audio))?,
            input_block: vec![0; frame * usize::from(stream.channels)],
            frame_block: vec![0; frame * out_channels],
            access_unit: vec![0; max_au],
            ts_out: Vec::with_capacity(64 * 188),
            frames_done: 0,
            pts_base,
            srt,
            shared,
            snapshot,
        })
    }

    pub fn run(mut self, halt: &Stop) {
        while !halt.requested() {
            let mut worked = false;
            while self.encode_one() {
                worked = true;
            }
            if worked && let Ok(mut shared) = self.shared.try_lock() {
                *shared = self.snapshot.clone();
            }
            // The ingest thread unparks us when a codec frame is complete; the timeout only
            // bounds how long a stop request waits.
            thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// Encodes one frame if the ring holds one; returns whether it did.
    fn encode_one(&mut self) -> bool {
        let need = self.frame * self.in_channels;
        let Ok(chunk) = self.consumer.read_chunk(need) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        self.input_block[..a.len()].copy_from_slice(a);
        self.input_block[a.len()..].copy_from_slice(b);
        chunk.commit_all();

        for (frame_in, frame_out) in self
            .input_block
            .chunks_exact(self.in_channels)
            .zip(self.frame_block.chunks_exact_mut(self.out_channels))
        {
            for (slot, &ch) in frame_out.iter_mut().zip(&self.map) {
                *slot = frame_in[ch];
            }
        }
        let encoded = match &mut self.encoder {
            Encoder::Opus(enc) => enc
                .encode(&self.frame_block, &mut self.access_unit)
                .map_err(|e| e.to_string()),
            // The frame index keeps the AES3 192-frame block phase continuous across units.
            Encoder::Pcm(format) => s302m::pack_into_at(
                *format,
                self.frames_done,
                &self.frame_block,
                &mut self.access_unit,
            )
            .map_err(|e| e.to_string()),
        };
        let len = match encoded {
            Ok(len) => len,
            Err(_) => {
                self.snapshot.encode_errors += 1;
                return true;
            }
        };
        // PTS in 90 kHz units from the output's own sample count: concealment keeps the
        // input continuous, so the count is the media time.
        let pts = (self.pts_base + self.frames_done) * 90_000 / 48_000;
        if self
            .muxer
            .write_access_unit(pts, &self.access_unit[..len], &mut self.ts_out)
            .is_err()
        {
            self.snapshot.encode_errors += 1;
        }
        let srt = &self.srt;
        ts::drain_messages(&mut self.ts_out, |message| srt.send(message));
        self.frames_done += self.frame as u64;
        if let Some(completed) = self.frame_completed_at() {
            self.snapshot
                .handoff
                .record(monotonic_now().duration_since(completed));
        }
        self.snapshot.frames_encoded = self.pts_base + self.frames_done;
        self.snapshot.access_units += 1;
        true
    }
}

impl OutputWorker {
    /// When the ingest thread pushed the last sample of the frame just encoded.
    fn frame_completed_at(&mut self) -> Option<MonoTime> {
        let done = self.frames_done;
        while let Ok(&(pushed, at)) = self.marks.peek() {
            if pushed >= done {
                return Some(at);
            }
            let _ = self.marks.pop();
        }
        None
    }
}
