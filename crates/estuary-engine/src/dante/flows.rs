//! A transmitter's unicast flows: what receivers asked for over flow control (port 4455),
//! kept alive by their keepalives and dropped 4 s after the last one.

use std::net::SocketAddrV4;
use std::time::Duration;

use estuary_wire::dante::flow::{FlowHandle, FlowMessage, FlowRequest, write_granted};
use estuary_wire::dante::{
    Message, RESULT_BAD_FLOW, RESULT_NO_FLOW, RESULT_NO_FLOWS_LEFT, RESULT_OK,
    RESULT_RATE_MISMATCH, arc,
};

use crate::time::MonoTime;

/// A flow with no keepalive for this long is dropped.
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(4);

/// What the transmitter offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLimits {
    pub sample_rate: u32,
    pub tx_channels: u16,
    /// Most slots per flow (`nchan`).
    pub max_channels_per_flow: u16,
    /// Largest frames-per-packet accepted.
    pub max_fpp: u16,
    pub max_flows: usize,
}

/// One unicast flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFlow {
    pub handle: FlowHandle,
    pub destination: SocketAddrV4,
    /// TX channel per slot (0 = silent slot).
    pub slots: Vec<u16>,
    pub fpp: u16,
    /// Bytes per sample on the wire.
    pub bytes_per_sample: usize,
    pub rx_device: String,
    pub flow_name: String,
    last_seen: MonoTime,
}

/// Every unicast flow of a transmitter.
#[derive(Debug, Clone)]
pub struct TxFlows {
    limits: TxLimits,
    flows: Vec<TxFlow>,
    /// Mixed into handles so a restarted transmitter does not honour stale ones.
    cookie: u16,
    next_id: u32,
    /// Flows dropped because their receiver went quiet.
    pub expired: u64,
}

impl TxFlows {
    /// `cookie` should differ between runs (the daemon takes it from the clock).
    pub fn new(limits: TxLimits, cookie: u16) -> TxFlows {
        TxFlows {
            limits,
            flows: Vec::new(),
            cookie,
            next_id: 1,
            expired: 0,
        }
    }

    pub fn flows(&self) -> &[TxFlow] {
        &self.flows
    }

    /// Answers one flow-control datagram from `from`; bytes that are not a request get no
    /// answer.
    pub fn handle(&mut self, now: MonoTime, datagram: &[u8]) -> Option<Vec<u8>> {
        let message = Message::parse(datagram).ok()?;
        if !message.header.is_request() {
            return None;
        }
        let h = message.header;
        let result = match FlowMessage::parse(&message) {
            Ok(FlowMessage::Request(request)) => match self.grant(now, request) {
                Ok(handle) => return write_granted(&h, handle).ok(),
                Err(code) => code,
            },
            Ok(FlowMessage::Stop(handle)) => {
                let before = self.flows.len();
                self.flows.retain(|f| f.handle != handle);
                if self.flows.len() < before {
                    RESULT_OK
                } else {
                    RESULT_NO_FLOW
                }
            }
            Ok(FlowMessage::Update { handle, slots }) => {
                let valid = self.valid_slots(&slots);
                match self.flows.iter_mut().find(|f| f.handle == handle) {
                    Some(_) if !valid => RESULT_BAD_FLOW,
                    Some(f) => {
                        f.slots = slots;
                        f.last_seen = now;
                        RESULT_OK
                    }
                    None => RESULT_NO_FLOW,
                }
            }
            Ok(FlowMessage::Other(_)) | Err(_) => estuary_wire::dante::RESULT_FAILURE,
        };
        arc::write_status(&h, result).ok()
    }

    fn valid_slots(&self, slots: &[u16]) -> bool {
        !slots.is_empty()
            && slots.len() <= usize::from(self.limits.max_channels_per_flow)
            && slots.iter().all(|&c| c <= self.limits.tx_channels)
    }

    fn grant(&mut self, now: MonoTime, r: FlowRequest) -> Result<FlowHandle, u16> {
        if r.sample_rate != self.limits.sample_rate {
            return Err(RESULT_RATE_MISMATCH);
        }
        if !self.valid_slots(&r.slots) || r.fpp == 0 || r.fpp > self.limits.max_fpp {
            return Err(RESULT_BAD_FLOW);
        }
        let bytes_per_sample = (r.bits / 8) as usize;
        // A new request from the same receiver socket replaces its flow.
        if let Some(f) = self
            .flows
            .iter_mut()
            .find(|f| f.destination == r.destination)
        {
            f.slots = r.slots;
            f.fpp = r.fpp;
            f.bytes_per_sample = bytes_per_sample;
            f.flow_name = r.flow_name;
            f.last_seen = now;
            return Ok(f.handle);
        }
        if self.flows.len() >= self.limits.max_flows {
            return Err(RESULT_NO_FLOWS_LEFT);
        }
        let mut handle = [0u8; 6];
        handle[..4].copy_from_slice(&self.next_id.to_be_bytes());
        handle[4..].copy_from_slice(&self.cookie.to_be_bytes());
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let handle = FlowHandle(handle);
        self.flows.push(TxFlow {
            handle,
            destination: r.destination,
            slots: r.slots,
            fpp: r.fpp,
            bytes_per_sample,
            rx_device: r.rx_device,
            flow_name: r.flow_name,
            last_seen: now,
        });
        Ok(handle)
    }

    /// Any datagram from a flow's receiver socket keeps that flow alive.
    pub fn keepalive(&mut self, now: MonoTime, from: SocketAddrV4) -> bool {
        match self.flows.iter_mut().find(|f| f.destination == from) {
            Some(f) => {
                f.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// Drops flows whose receiver has been quiet for [`FLOW_TIMEOUT`]; returns them.
    pub fn expire(&mut self, now: MonoTime) -> Vec<TxFlow> {
        let (dead, alive): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flows)
            .into_iter()
            .partition(|f| now.duration_since(f.last_seen) >= FLOW_TIMEOUT);
        self.flows = alive;
        self.expired += dead.len() as u64;
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_wire::dante::flow::parse_granted;
    use std::net::Ipv4Addr;

    fn table() -> TxFlows {
        TxFlows::new(
            TxLimits {
                sample_rate: 48_000,
                tx_channels: 8,
                max_channels_per_flow: 4,
                max_fpp: 64,
                max_flows: 2,
            },
            0xBEEF,
        )
    }

    fn request(port: u16, slots: Vec<u16>, rate: u32) -> Vec<u8> {
        FlowMessage::Request(FlowRequest {
            sample_rate: rate,
            bits: 24,
            slots,
            fpp: 16,
            rx_device: "rx".into(),
            flow_name: "1_1".into(),
            destination: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        })
        .write(1)
        .expect("writes")
    }

    fn answer(bytes: &[u8]) -> Result<FlowHandle, u16> {
        parse_granted(&Message::parse(bytes).expect("header")).expect("parses")
    }

    #[test]
    fn grants_updates_expires_and_stops() {
        let mut t = table();
        let t0 = MonoTime::from_nanos(1_000_000_000);
        let h = answer(
            &t.handle(t0, &request(5000, vec![1, 2], 48_000))
                .expect("answer"),
        )
        .expect("granted");
        assert_eq!(t.flows()[0].slots, [1, 2]);
        assert_eq!(t.flows()[0].bytes_per_sample, 3);
        // The same receiver socket asking again gets the same flow, updated.
        let again =
            answer(&t.handle(t0, &request(5000, vec![3], 48_000)).expect("a")).expect("granted");
        assert_eq!(again, h);
        assert_eq!(t.flows().len(), 1);
        assert_eq!(t.flows()[0].slots, [3]);

        // Keepalives hold it; silence for 4 s drops it.
        let t3 = t0 + Duration::from_secs(3);
        assert!(t.keepalive(t3, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5000)));
        assert!(t.expire(t0 + Duration::from_secs(6)).is_empty());
        assert_eq!(t.expire(t3 + FLOW_TIMEOUT).len(), 1);
        assert_eq!(t.expired, 1);

        // Stopping an unknown flow says so.
        let stop = FlowMessage::Stop(h).write(2).expect("w");
        let reply = t.handle(t3, &stop).expect("answer");
        assert_eq!(
            Message::parse(&reply).expect("h").header.result,
            RESULT_NO_FLOW
        );
    }

    #[test]
    fn refuses_what_it_cannot_send() {
        let mut t = table();
        let now = MonoTime::from_nanos(0);
        let code = |t: &mut TxFlows, bytes: Vec<u8>| answer(&t.handle(now, &bytes).expect("a"));
        assert_eq!(
            code(&mut t, request(1, vec![1], 44_100)),
            Err(RESULT_RATE_MISMATCH)
        );
        assert_eq!(
            code(&mut t, request(1, vec![9], 48_000)),
            Err(RESULT_BAD_FLOW)
        );
        assert_eq!(
            code(&mut t, request(1, vec![1, 2, 3, 4, 5], 48_000)),
            Err(RESULT_BAD_FLOW)
        );
        assert!(code(&mut t, request(1, vec![1], 48_000)).is_ok());
        assert!(code(&mut t, request(2, vec![1], 48_000)).is_ok());
        assert_eq!(
            code(&mut t, request(3, vec![1], 48_000)),
            Err(RESULT_NO_FLOWS_LEFT)
        );
        // Garbage gets no answer.
        assert_eq!(t.handle(now, b"\x11\x02\x00"), None);
    }
}
