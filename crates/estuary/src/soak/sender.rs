//! The soak's sender: the known sequence as L24 RTP, packet `k` sent at `start + k × ptime`
//! (an absolute schedule: a late wake-up catches up in a burst instead of slipping), from a
//! real-time thread when the system allows it, so the sender is not what makes packets late.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::tx::sequence_sample;
use estuary_wire::payload::{SampleFormat, encode_into};
use estuary_wire::rtp::RtpPacketBuilder;
use estuary_wire::units::{RtpTimestamp, SeqNum};

/// RTP timestamp of the first packet: frame `n` has timestamp `FIRST_TIMESTAMP + n`.
pub const FIRST_TIMESTAMP: u32 = 1_000_000;
/// First sequence number: near the wrap, which the receiver must follow.
const FIRST_SEQUENCE: u16 = 65_000;
const SSRC: u32 = 0x50a4_0001;
pub const PAYLOAD_TYPE: u8 = 98;
/// Above the gateway's own threads: the sender plays the network, which never waits.
pub const PRIORITY: i32 = estuary_io::sched::INGEST_PRIORITY + 5;

pub struct SequenceSender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    max_lateness_ns: Arc<AtomicU64>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl SequenceSender {
    pub fn spawn(dest: SocketAddr, channels: u16, fpp: u32) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        socket.connect(dest)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let max_lateness_ns = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("soak-send".into())
            .spawn({
                let (stop, sent, late) = (
                    Arc::clone(&stop),
                    Arc::clone(&sent),
                    Arc::clone(&max_lateness_ns),
                );
                move || {
                    // Refused without CAP_SYS_NICE: the run then says so through late packets.
                    let _ = estuary_io::sched::promote_current_thread(PRIORITY);
                    send_loop(&socket, channels, fpp, &stop, &sent, &late)
                }
            })?;
        Ok(Self {
            stop,
            sent,
            max_lateness_ns,
            thread: Some(thread),
        })
    }

    pub fn packets_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The longest a packet left behind its schedule.
    pub fn max_lateness(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.max_lateness_ns.load(Ordering::Relaxed))
    }

    /// Stops after the packet in flight; returns the packets sent.
    pub fn stop(&mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
        }
        Ok(self.packets_sent())
    }
}

impl Drop for SequenceSender {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn send_loop(
    socket: &UdpSocket,
    channels: u16,
    fpp: u32,
    stop: &AtomicBool,
    sent: &AtomicU64,
    max_lateness_ns: &AtomicU64,
) -> std::io::Result<()> {
    let width = usize::from(channels);
    let mut samples = vec![0i32; fpp as usize * width];
    let mut payload = vec![0u8; samples.len() * 3];
    let mut packet = vec![0u8; 12 + payload.len()];
    let start = monotonic_now().as_nanos();
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + k * u64::from(fpp) * 1_000_000_000 / 48_000;
        sleep_until(MonoTime::from_nanos(due));
        let behind = monotonic_now().as_nanos().saturating_sub(due);
        max_lateness_ns.fetch_max(behind, Ordering::Relaxed);
        let first = k * u64::from(fpp);
        for (i, frame) in samples.chunks_exact_mut(width).enumerate() {
            for (c, s) in frame.iter_mut().enumerate() {
                *s = sequence_sample(first + i as u64, c);
            }
        }
        let len = encode_into(SampleFormat::L24, &samples, &mut payload)
            .map_err(std::io::Error::other)?;
        let n = RtpPacketBuilder {
            marker: k == 0,
            payload_type: PAYLOAD_TYPE,
            sequence: SeqNum(FIRST_SEQUENCE.wrapping_add(k as u16)),
            timestamp: RtpTimestamp(FIRST_TIMESTAMP.wrapping_add(first as u32)),
            ssrc: SSRC,
            csrcs: &[],
            extension: None,
            payload: &payload[..len],
            padding: 0,
        }
        .write_into(&mut packet)
        .map_err(std::io::Error::other)?;
        socket.send(&packet[..n])?;
        k += 1;
        sent.store(k, Ordering::Relaxed);
    }
    Ok(())
}
