//! What a `deliver_sm` carries: a text (or one part of a concatenated one,
//! by UDH or by SAR TLVs) or a delivery receipt for one of our submits.

use rusmpp::CommandStatus;
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::values::{MessageState, Ton};

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Delivery {
    Text(TextPart),
    Receipt(Receipt),
}

/// A text, or one part of a concatenated text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TextPart {
    pub source_ton: u8,
    pub source: String,
    pub destination_ton: u8,
    pub destination: String,
    pub coding: u8,
    /// The user data without its header.
    pub bytes: Vec<u8>,
    pub concat: Option<Concat>,
}

/// Which part of which concatenated text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Receipt {
    /// The id the SMSC gave our submit.
    pub smsc_id: String,
    pub state: ReceiptState,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReceiptState {
    Delivered,
    /// Expired, deleted, undeliverable or rejected: final, not delivered.
    Failed,
    /// Enroute, accepted, unknown: not final.
    Pending,
}

/// esm_class message type bits (SMPP 3.4 §5.2.12).
const TYPE_MASK: u8 = 0x3c;
const MC_DELIVERY_RECEIPT: u8 = 0x04;
const INTERMEDIATE_NOTIFICATION: u8 = 0x20;
const UDHI: u8 = 0x40;

/// Reads a `deliver_sm`; a malformed one gets the `command_status` its
/// `deliver_sm_resp` should carry.
pub fn interpret(sm: &DeliverSm) -> Result<Delivery, CommandStatus> {
    let esm = u8::from(sm.esm_class);
    let payload = sm.tlvs().iter().find_map(|t| match t.value() {
        Some(TlvValue::MessagePayload(p)) => Some(p.value.clone().into_vec()),
        _ => None,
    });
    let data = match payload {
        Some(p) if sm.short_message().is_empty() => p,
        Some(_) => return Err(CommandStatus::EsmeRinvmsglen),
        None => sm.short_message().clone().into_vec(),
    };
    let kind = esm & TYPE_MASK;
    if kind == MC_DELIVERY_RECEIPT || kind == INTERMEDIATE_NOTIFICATION {
        return receipt(sm, &data).map(Delivery::Receipt);
    }
    let (concat, bytes) = if esm & UDHI != 0 {
        split_udh(&data)?
    } else {
        (sar(sm), data)
    };
    let source = sm.source_addr.as_str().to_owned();
    let destination = sm.destination_addr.as_str().to_owned();
    if source.is_empty() {
        return Err(CommandStatus::EsmeRinvsrcadr);
    }
    if destination.is_empty() {
        return Err(CommandStatus::EsmeRinvdstadr);
    }
    Ok(Delivery::Text(TextPart {
        source_ton: ton(sm.source_addr_ton),
        source,
        destination_ton: ton(sm.dest_addr_ton),
        destination,
        coding: u8::from(sm.data_coding),
        bytes,
        concat,
    }))
}

fn ton(t: Ton) -> u8 {
    u8::from(t)
}

/// Splits the user data header off, reading a concatenation element
/// (8-bit or 16-bit reference) if there is one.
fn split_udh(data: &[u8]) -> Result<(Option<Concat>, Vec<u8>), CommandStatus> {
    let (&udhl, rest) = data.split_first().ok_or(CommandStatus::EsmeRinvmsglen)?;
    let udhl = usize::from(udhl);
    if rest.len() < udhl {
        return Err(CommandStatus::EsmeRinvmsglen);
    }
    let (mut header, body) = rest.split_at(udhl);
    let mut concat = None;
    while let [iei, len, tail @ ..] = header {
        let len = usize::from(*len);
        if tail.len() < len {
            return Err(CommandStatus::EsmeRinvmsglen);
        }
        let (value, next) = tail.split_at(len);
        match (iei, value) {
            (0x00, &[reference, total, seq]) => {
                concat = Some(Concat {
                    reference: u16::from(reference),
                    total,
                    seq,
                })
            }
            (0x08, &[hi, lo, total, seq]) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([hi, lo]),
                    total,
                    seq,
                })
            }
            _ => {}
        }
        header = next;
    }
    let concat = concat.filter(|c| c.total > 1 && c.seq >= 1 && c.seq <= c.total);
    Ok((concat, body.to_vec()))
}

/// Concatenation by SAR TLVs (the other way SMPP carries parts).
fn sar(sm: &DeliverSm) -> Option<Concat> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for t in sm.tlvs() {
        match t.value() {
            Some(TlvValue::SarMsgRefNum(r)) => reference = Some(*r),
            Some(TlvValue::SarTotalSegments(n)) => total = Some(*n),
            Some(TlvValue::SarSegmentSeqnum(n)) => seq = Some(*n),
            _ => {}
        }
    }
    let c = Concat {
        reference: reference?,
        total: total?,
        seq: seq?,
    };
    (c.total > 1 && c.seq >= 1 && c.seq <= c.total).then_some(c)
}

/// A receipt: the TLVs when present (receipted_message_id, message_state),
/// else the text format of SMPP 3.4 Appendix B (`id:… stat:DELIVRD …`).
fn receipt(sm: &DeliverSm, data: &[u8]) -> Result<Receipt, CommandStatus> {
    let text = String::from_utf8_lossy(data);
    let field = |name: &str| -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let at = lower.find(&format!("{name}:"))?;
        let value = &text[at + name.len() + 1..];
        Some(value.split_whitespace().next().unwrap_or("").to_owned())
    };
    let mut smsc_id = None;
    let mut state = None;
    for t in sm.tlvs() {
        match t.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => smsc_id = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => state = Some(tlv_state(*s)),
            _ => {}
        }
    }
    let smsc_id = smsc_id
        .or_else(|| field("id"))
        .filter(|id| !id.is_empty())
        .ok_or(CommandStatus::EsmeRinvmsgid)?;
    let state = state
        .or_else(|| field("stat").map(|s| text_state(&s)))
        .unwrap_or(ReceiptState::Pending);
    Ok(Receipt { smsc_id, state })
}

fn tlv_state(s: MessageState) -> ReceiptState {
    match s {
        MessageState::Delivered => ReceiptState::Delivered,
        MessageState::Expired
        | MessageState::Deleted
        | MessageState::Undeliverable
        | MessageState::Rejected => ReceiptState::Failed,
        _ => ReceiptState::Pending,
    }
}

fn text_state(s: &str) -> ReceiptState {
    match s.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => ReceiptState::Delivered,
        "EXPIRED" | "DELETED" | "UNDELIV" | "UNDELIVERABLE" | "REJECTD" | "REJECTED" => {
            ReceiptState::Failed
        }
        _ => ReceiptState::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::EsmClass;

    fn deliver(esm: u8, coding: u8, data: &[u8]) -> rusmpp::pdus::builders::DeliverSmBuilder {
        DeliverSm::builder()
            .source_addr(COctetString::from_str("8613900000009").unwrap())
            .destination_addr(COctetString::from_str("8657100000001").unwrap())
            .esm_class(EsmClass::from(esm))
            .data_coding(rusmpp::values::DataCoding::from(coding))
            .short_message(OctetString::from_slice(data).unwrap())
    }

    use std::str::FromStr;

    #[test]
    fn a_plain_text() {
        let sm = deliver(0, 0, b"hello").build();
        let Ok(Delivery::Text(t)) = interpret(&sm) else {
            panic!()
        };
        assert_eq!(
            (t.source.as_str(), t.destination.as_str()),
            ("8613900000009", "8657100000001")
        );
        assert_eq!(
            (t.coding, t.bytes.as_slice(), t.concat),
            (0, &b"hello"[..], None)
        );
    }

    #[test]
    fn concatenated_parts_by_udh_8_and_16_bit() {
        let sm = deliver(0x40, 8, &[5, 0, 3, 42, 3, 2, 0, 0x41]).build();
        let Ok(Delivery::Text(t)) = interpret(&sm) else {
            panic!()
        };
        assert_eq!(
            t.concat,
            Some(Concat {
                reference: 42,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(t.bytes, vec![0, 0x41]);
        let sm = deliver(0x40, 8, &[6, 8, 4, 1, 2, 2, 1, 0, 0x42]).build();
        let Ok(Delivery::Text(t)) = interpret(&sm) else {
            panic!()
        };
        assert_eq!(
            t.concat,
            Some(Concat {
                reference: 0x0102,
                total: 2,
                seq: 1
            })
        );
    }

    #[test]
    fn concatenated_parts_by_sar_tlvs() {
        let sm = deliver(0, 0, b"part")
            .tlvs(vec![
                MessageDeliveryRequestTlvValue::SarMsgRefNum(7),
                MessageDeliveryRequestTlvValue::SarTotalSegments(2),
                MessageDeliveryRequestTlvValue::SarSegmentSeqnum(2),
            ])
            .build();
        let Ok(Delivery::Text(t)) = interpret(&sm) else {
            panic!()
        };
        assert_eq!(
            t.concat,
            Some(Concat {
                reference: 7,
                total: 2,
                seq: 2
            })
        );
    }

    #[test]
    fn a_udh_longer_than_the_message_is_refused() {
        let sm = deliver(0x40, 0, &[9, 0, 3]).build();
        assert_eq!(interpret(&sm), Err(CommandStatus::EsmeRinvmsglen));
        let sm = deliver(0x40, 0, &[]).build();
        assert_eq!(interpret(&sm), Err(CommandStatus::EsmeRinvmsglen));
    }

    #[test]
    fn receipts_by_text_and_by_tlv() {
        let text = b"id:0A1B2C sub:001 dlvrd:001 submit date:2612061230 done date:2612061231 stat:DELIVRD err:000 text:hi";
        let sm = deliver(0x04, 0, text).build();
        assert_eq!(
            interpret(&sm),
            Ok(Delivery::Receipt(Receipt {
                smsc_id: "0A1B2C".to_owned(),
                state: ReceiptState::Delivered
            }))
        );
        let sm = deliver(0x04, 0, b"id:77 stat:UNDELIV err:001").build();
        assert!(
            matches!(interpret(&sm), Ok(Delivery::Receipt(r)) if r.state == ReceiptState::Failed)
        );
        let sm = deliver(0x04, 0, b"")
            .tlvs(vec![
                MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                    COctetString::from_str("abc").unwrap(),
                ),
                MessageDeliveryRequestTlvValue::MessageState(MessageState::Delivered),
            ])
            .build();
        assert!(
            matches!(interpret(&sm), Ok(Delivery::Receipt(r)) if r.smsc_id == "abc" && r.state == ReceiptState::Delivered)
        );
        let sm = deliver(0x04, 0, b"stat:DELIVRD").build();
        assert_eq!(interpret(&sm), Err(CommandStatus::EsmeRinvmsgid));
    }
}
