//! WAV/BWF/RF64: parse arbitrary header bytes; a repair plan of whatever parses, applied,
//! must parse again with the sizes it promised.
#![no_main]

use estuary_wire::wav;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = wav::parse(data) else {
        return;
    };
    let len = data.len() as u64;
    let Ok(plan) = wav::repair(data, len) else {
        return;
    };
    let mut fixed = data.to_vec();
    for (at, bytes) in &plan.patches {
        let at = *at as usize;
        fixed[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fixed.truncate(plan.truncate_to as usize);
    let again = wav::parse(&fixed).expect("a repaired header parses");
    assert_eq!(again.data_size, plan.data_size);
    assert_eq!(again.spec, info.spec);
});
