//! A relay as `submit_sm`s: from X, to the bound party, in the GSM default
//! alphabet when the text allows (else UTF-16), cut into concatenated parts
//! (UDH, 8-bit reference) when it is long, each asking for a delivery
//! receipt. rusmpp's multipart builder cuts and heads the parts.

use std::str::FromStr;

use maskline_core::Number;
use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::COctetString;
use rusmpp::values::{EsmClass, Npi, RegisteredDelivery, Ton};

use crate::alphabet::{Utf16, is_gsm7};

/// Septets in one unpacked GSM part: 160 fit a single message, but a
/// concatenated part holds 153 after its header, and the builder cuts
/// `max - header` octets, so 159 keeps parts at 153 (a text of exactly 160
/// characters goes in two parts).
const GSM7_MAX: usize = 159;

const RECEIPT_ON_SUCCESS_OR_FAILURE: u8 = 0x01;

#[derive(Debug, thiserror::Error)]
#[error("the text cannot be cut into at most 255 parts")]
pub struct TooLong;

/// The `submit_sm`s for one relay, in part order.
pub fn submits(
    from: Number,
    to: Number,
    text: &str,
    reference: u8,
) -> Result<Vec<SubmitSm>, TooLong> {
    let base = SubmitSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(address(from))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(address(to))
        // Not `EsmClass::default()`: rusmpp's sets the ANSI-41 "delivery
        // acknowledgement" bit (0x08), which an SMSC may take as a receipt.
        .esm_class(EsmClass::from(0u8))
        // A receipt whether delivery succeeds or fails (SMPP 3.4 §5.2.17).
        .registered_delivery(RegisteredDelivery::from(RECEIPT_ON_SUCCESS_OR_FAILURE))
        .build();
    let parts = base.multipart(text).reference_u8(reference);
    if is_gsm7(text) {
        parts
            .max_short_message_size(GSM7_MAX)
            .build()
            .map_err(|_| TooLong)
    } else {
        parts.encoder(Utf16).build().map_err(|_| TooLong)
    }
}

/// E.164 digits without `+`, as SMPP writes an international number.
fn address(n: Number) -> COctetString<1, 21> {
    // 15 digits at most: always fits.
    COctetString::from_str(&n.digits().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::decode;
    use crate::inbound::{Concat, Delivery, interpret};
    use rusmpp::pdus::DeliverSm;

    fn x() -> Number {
        Number::from_digits(8657100000001).unwrap()
    }
    fn a() -> Number {
        Number::from_digits(8613800000001).unwrap()
    }

    /// What a handset would read back: each part as the SMSC would
    /// deliver it, reassembled.
    fn read_back(parts: &[SubmitSm]) -> (String, usize) {
        let mut bytes = Vec::new();
        let mut coding = 0;
        for (i, p) in parts.iter().enumerate() {
            let sm = DeliverSm::builder()
                .source_addr(p.source_addr.clone())
                .destination_addr(p.destination_addr.clone())
                .esm_class(p.esm_class)
                .data_coding(p.data_coding)
                .short_message(p.short_message().clone())
                .build();
            let Ok(Delivery::Text(t)) = interpret(&sm) else {
                panic!("part {i}")
            };
            if parts.len() > 1 {
                assert_eq!(
                    t.concat,
                    Some(Concat {
                        reference: 9,
                        total: parts.len() as u8,
                        seq: i as u8 + 1
                    })
                );
            }
            coding = t.coding;
            bytes.extend(t.bytes);
        }
        (decode(coding, &bytes), parts.len())
    }

    #[test]
    fn short_texts_go_whole_and_long_ones_in_parts() {
        let cases = [
            ("Your pickup code is 12-3-4567".to_owned(), 1),
            ("a".repeat(159), 1),
            ("a".repeat(160), 2),
            ("a".repeat(153 * 3), 3),
            ("取件码".to_owned() + &"中".repeat(67), 1),
            ("中".repeat(71), 2),
            ("中".repeat(67 * 3), 3),
            ("到了😊".repeat(30), 2),
        ];
        for (text, parts) in cases {
            let subs = submits(x(), a(), &text, 9).unwrap();
            assert_eq!(
                read_back(&subs),
                (text.clone(), parts),
                "{}",
                text.chars().count()
            );
            for s in &subs {
                // A normal message; UDHI only when in parts.
                let udhi = if parts > 1 { 0x40 } else { 0 };
                assert_eq!(u8::from(s.esm_class), udhi);
                assert_eq!(u8::from(s.registered_delivery), 0x01);
                assert_eq!(s.source_addr.as_str(), "8657100000001");
                assert_eq!(s.destination_addr.as_str(), "8613800000001");
                assert!(s.short_message().len() <= 160);
            }
        }
    }
}
