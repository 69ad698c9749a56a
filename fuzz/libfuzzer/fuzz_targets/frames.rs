#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarmlabel_fuzz::run(swarmlabel_fuzz::Target::Frames, data);
});
