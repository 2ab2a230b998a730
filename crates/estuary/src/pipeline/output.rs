//! One thread per output: converts the rate to 48 kHz when the input runs at another rate,
//! encodes (Opus or SMPTE 302M), muxes MPEG-TS and hands 1316-byte messages to the output's
//! SRT sender, whose own thread connects, listens and reconnects.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use estuary_engine::rate::RateConverter;
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
/// Both codecs on SRT (Opus and SMPTE 302M) run at 48 kHz.
const CODEC_RATE: u32 = 48_000;

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
    /// Input frames the ingest hands over at a time: one codec frame, or one conversion block.
    pub frame: usize,
    /// Frames per codec frame, at 48 kHz.
    codec_frame: usize,
    /// From the input's rate to 48 kHz, when they differ.
    converter: Option<RateConverter>,
    /// Converted frames not yet encoded (interleaved, the input's channels).
    converted: Vec<i32>,
    /// Input frames consumed, for matching the ingest's marks.
    in_frames_done: u64,
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
                    CODEC_RATE,
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
        let in_channels = usize::from(stream.channels);
        let converter = (stream.sample_rate != CODEC_RATE)
            .then(|| RateConverter::new(stream.sample_rate, CODEC_RATE, in_channels))
            .transpose()?;
        let (block, converted) = match &converter {
            Some(c) => (
                c.in_frames(),
                Vec::with_capacity((c.out_frames() + 1 + frame) * in_channels),
            ),
            None => (frame, Vec::new()),
        };
        Ok(Self {
            name: output.name.get_ref().clone(),
            consumer,
            marks,
            in_channels,
            map,
            out_channels,
            frame: block,
            codec_frame: frame,
            converter,
            converted,
            in_frames_done: 0,
            encoder,
            muxer: TsMuxer::new(TsConfig::new(audio))?,
            input_block: vec![0; block.max(frame) * in_channels],
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

    /// Takes the next block of input from the ring into `input_block`; returns whether the
    /// ring held one.
    fn take_block(&mut self, frames: usize) -> bool {
        let need = frames * self.in_channels;
        let Ok(chunk) = self.consumer.read_chunk(need) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        self.input_block[..a.len()].copy_from_slice(a);
        self.input_block[a.len()..need].copy_from_slice(b);
        chunk.commit_all();
        self.in_frames_done += frames as u64;
        true
    }

    /// Puts the next codec frame of 48 kHz audio in `input_block`; returns whether there was
    /// one.
    fn next_codec_frame(&mut self) -> bool {
        let need = self.codec_frame * self.in_channels;
        let Some(block) = self.converter.as_ref().map(RateConverter::in_frames) else {
            return self.take_block(self.codec_frame);
        };
        while self.converted.len() < need {
            if !self.take_block(block) {
                return false;
            }
            let samples = block * self.in_channels;
            if let Some(converter) = self.converter.as_mut() {
                self.converted
                    .extend_from_slice(converter.process(&self.input_block[..samples]));
            }
        }
        self.input_block[..need].copy_from_slice(&self.converted[..need]);
        self.converted.drain(..need);
        true
    }

    /// Encodes one frame if the ring holds one; returns whether it did.
    fn encode_one(&mut self) -> bool {
        if !self.next_codec_frame() {
            return false;
        }
        let need = self.codec_frame * self.in_channels;
        for (frame_in, frame_out) in self.input_block[..need]
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
        let pts = (self.pts_base + self.frames_done) * 90_000 / u64::from(CODEC_RATE);
        if self
            .muxer
            .write_access_unit(pts, &self.access_unit[..len], &mut self.ts_out)
            .is_err()
        {
            self.snapshot.encode_errors += 1;
        }
        let srt = &self.srt;
        ts::drain_messages(&mut self.ts_out, |message| srt.send(message));
        self.frames_done += self.codec_frame as u64;
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
    /// When the ingest thread pushed the last input sample of the frame just encoded.
    fn frame_completed_at(&mut self) -> Option<MonoTime> {
        let done = self.in_frames_done;
        while let Ok(&(pushed, at)) = self.marks.peek() {
            if pushed >= done {
                return Some(at);
            }
            let _ = self.marks.pop();
        }
        None
    }
}
