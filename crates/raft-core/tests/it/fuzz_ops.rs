//! The `core_step` fuzz target's interpreter, fed random bytes: no panic, and the
//! node's own invariants hold after every call (see `tests/fuzz_ops`).

use proptest::prelude::*;

#[path = "../fuzz_ops/mod.rs"]
mod ops;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_inputs_never_panic_a_node(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        ops::run(&data);
    }
}
