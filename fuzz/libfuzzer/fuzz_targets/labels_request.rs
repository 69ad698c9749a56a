#![no_main]

// libfuzzer-sys's hook aborts at any panic, even one the node catches on purpose (a dependency's
// decoder panicking inside `catch_unwind`, e.g. automerge loading a damaged shard file): with the
// default hook, such a contained panic unwinds to our `catch_unwind` as in the node, and only a
// panic that escapes the target reaches libfuzzer-sys's own `catch_unwind`, which aborts (a crash).
libfuzzer_sys::fuzz_target!(
    init: std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))),
    |data: &[u8]| {
        swarmlabel_fuzz::run(swarmlabel_fuzz::Target::LabelsRequest, data);
    }
);
