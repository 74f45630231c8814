//! Property tests of the conversions between the wire's messages and the domain types: what
//! crosses the wire comes back as it left.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use stampede_common::metrics::{HistogramBundle, LatencySummary, Tally, new_histogram};
use stampede_common::proto::{Counts, Histograms};

fn tally() -> impl Strategy<Value = Tally> {
    (
        vec(any::<u32>(), 13),
        btree_map("[a-z_]{1,12}", any::<u32>(), 0..5),
    )
        .prop_map(|(n, errors)| {
            let n: Vec<u64> = n.into_iter().map(u64::from).collect();
            Tally {
                sent: n[0],
                completed: n[1],
                failed: n[2],
                timeouts: n[3],
                abnormal: n[4],
                dropped: n[5],
                cancelled: n[6],
                good: n[7],
                input_tokens: n[8],
                output_tokens: n[9],
                server_input_tokens: n[10],
                server_input_requests: n[11],
                content_chunks: n[12],
                errors: errors.into_iter().map(|(k, v)| (k, u64::from(v))).collect(),
                error_samples: Vec::new(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_tally_crosses_the_wire_unchanged(t in tally()) {
        let wire = Counts::from(&t);
        prop_assert_eq!(Tally::from(&wire), t);
    }

    #[test]
    fn histograms_cross_the_wire_with_the_same_distribution(
        values in vec(1u64..3_600_000_000, 0..300),
    ) {
        let mut b = HistogramBundle::new();
        b.e2e = new_histogram();
        for v in &values {
            b.e2e.record(*v).unwrap();
            b.ttft.record((*v / 7).max(1)).unwrap();
        }
        let wire: Histograms = b.encode().unwrap();
        let back = HistogramBundle::decode(&wire).unwrap();
        for ((name, sent), (_, got)) in b.each().into_iter().zip(back.each()) {
            prop_assert_eq!(sent.len(), got.len(), "{}", name);
            prop_assert_eq!(LatencySummary::of(sent), LatencySummary::of(got), "{}", name);
        }
    }
}
