//! Phone numbers as tenants and carriers write them: parsing never panics,
//! and a parsed number reads back the same from its E.164 form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskline_core::{Number, Region};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for region in ["CN", "US", "GB", "HK", "SG"] {
        let region: Region = region.parse().unwrap();
        if let Ok(n) = Number::parse(text, region) {
            let e164 = n.to_string();
            assert!(Number::from_e164(&e164).is_ok_and(|m| m == n), "{text:?} -> {e164}");
            assert!(Number::parse(&e164, region).is_ok_and(|m| m == n), "{text:?} -> {e164}");
            // The mask never shows every digit.
            let masked = n.masked().to_string();
            assert!(!masked.contains(e164.trim_start_matches('+')), "{masked}");
            let _ = n.derived_area();
        }
    }
    let _ = Number::from_e164(text);
});
