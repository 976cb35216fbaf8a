//! The agent protocol's JSON bodies, each way: `serde_json::from_slice`
//! into every message type on any bytes; whatever parses must serialize,
//! parse back, and serialize to the same bytes again (and compare equal,
//! where the type has equality).
#![no_main]

use accelhub_domain::{
    AgentHello, ClaimRequest, CreateAgentToken, JobReport, LeaseState, NodeReport, Recorded,
    Renewal, WorkItem, WorkObject,
};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let once = serde_json::to_vec(&v).expect("a parsed message serializes");
    let back: T = serde_json::from_slice(&once).unwrap_or_else(|e| {
        panic!(
            "{} does not parse back: {e}",
            String::from_utf8_lossy(&once)
        )
    });
    let twice = serde_json::to_vec(&back).expect("serializes again");
    assert_eq!(once, twice, "serialization is not stable");
    Some(back)
}

fn round_trip_eq<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let back: T = round_trip(data).expect("parses back");
        assert_eq!(back, v);
    }
}

fuzz_target!(|data: &[u8]| {
    // Agent to control plane.
    round_trip::<NodeReport>(data);
    round_trip::<ClaimRequest>(data);
    round_trip::<Renewal>(data);
    round_trip_eq::<JobReport>(data);
    round_trip::<CreateAgentToken>(data);
    // Control plane to agent.
    round_trip::<AgentHello>(data);
    round_trip_eq::<WorkItem>(data);
    round_trip_eq::<WorkObject>(data);
    round_trip::<LeaseState>(data);
    round_trip::<Recorded>(data);
});
