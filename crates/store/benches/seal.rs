//! What sealing costs per value: a party number sealed and opened, its
//! blind token, and an event body (about 600 bytes) sealed and opened.
//! Start-up opens two numbers per live binding; a bind seals two numbers,
//! computes two tokens and seals its response and its event.
//!
//!   cargo bench -p maskline-store --bench seal

use criterion::{Criterion, criterion_group, criterion_main};
use maskline_store::seal::{Column, Keyring, MasterKey};
use std::hint::black_box;

fn ring() -> Keyring {
    let master = MasterKey::ephemeral();
    Keyring::from_meta(master.clone(), &Keyring::genesis(&master)).unwrap()
}

fn seal(c: &mut Criterion) {
    let keys = ring();
    let number = "+8613847319256";
    let sealed_number = keys.seal_str(Column::BindingA, number);
    let body = format!(
        r#"{{"id":"0192a3b4-c5d6-7e8f-9012-3456789abcde","type":"binding.created","created_at":"2026-12-07T05:00:00.000Z","data":{{"id":"0192a3b4-c5d6-7e8f-9012-3456789abcdf","mode":"axb","x":"+8657100000001","a":"{number}","b":"+8613962748135","extension":null,"area":"0571","external_ref":"order-123456","controls":{{"a_to_b":true,"b_to_a":true,"max_call_seconds":3600,"record":false,"sms":true}},"status":"active","created_at":"2026-12-07T05:00:00Z","expires_at":"2026-12-08T05:00:00Z"}}}}"#
    );
    let sealed_body = keys.seal_str(Column::EventBody, &body);
    c.bench_function("seal a number", |b| {
        b.iter(|| keys.seal_str(Column::BindingA, black_box(number)))
    });
    c.bench_function("open a number", |b| {
        b.iter(|| {
            keys.open_string(Column::BindingA, black_box(&sealed_number))
                .unwrap()
        })
    });
    c.bench_function("blind token of a number", |b| {
        b.iter(|| keys.blind(black_box(number)))
    });
    c.bench_function(&format!("seal an event body ({} bytes)", body.len()), |b| {
        b.iter(|| keys.seal_str(Column::EventBody, black_box(&body)))
    });
    c.bench_function("open an event body", |b| {
        b.iter(|| {
            keys.open_string(Column::EventBody, black_box(&sealed_body))
                .unwrap()
        })
    });
}

criterion_group!(benches, seal);
criterion_main!(benches);
