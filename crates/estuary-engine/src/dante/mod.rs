//! Dante (unofficial implementation), the pure parts: a device's control state and the
//! transmitter's flow table. The daemon owns the sockets and feeds these datagrams and time.

pub mod device;
pub mod flows;
pub mod ptpv1;
pub mod rx;
pub mod subscriber;

pub use device::{Changes, Device, DeviceSpec, DeviceState, factory_channel_name};
