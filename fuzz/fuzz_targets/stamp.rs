#![no_main]
//! See `sonde::fuzzing::stamp`: the invariants it checks are the ones this target hunts for.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::stamp(data));
