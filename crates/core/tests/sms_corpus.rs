//! The pick-up-code extractor and the marketing filter on a labelled corpus
//! of real-world formats (`tests/data/sms_corpus.jsonl`: courier, locker and
//! station notices, verification codes, bulk marketing, other notices and
//! personal texts, Chinese and English). Prints the figures BENCHMARKS.md
//! reports (`cargo test -p maskline-core --test sms_corpus -- --nocapture`).

use maskline_core::sms::pickup::{is_verification, pickup_code};
use maskline_core::sms::text::fold;
use maskline_core::sms::{Filter, Verdict};

struct Entry {
    text: String,
    kind: String,
    code: Option<String>,
    block: bool,
}

fn corpus() -> Vec<Entry> {
    parse(include_str!("data/sms_corpus.jsonl"))
}

/// Written apart from the rules as a held-out set; its first run (pick-up
/// 0.869, marketing recall 0.717) showed formats the rules had missed, which
/// were then added: it has been tuned on since, like the corpus.
fn tuning_b() -> Vec<Entry> {
    parse(include_str!("data/sms_tuning_b.jsonl"))
}

/// Written by someone who saw neither the rules nor the other sets, and
/// never tuned on: the figures BENCHMARKS.md reports as unseen. Only the
/// hard rules are asserted on it (no pick-up or verification text blocked);
/// rates are printed.
fn unseen() -> Vec<Entry> {
    parse(include_str!("data/sms_unseen.jsonl"))
}

fn parse(data: &str) -> Vec<Entry> {
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            Entry {
                text: v["text"].as_str().unwrap().to_owned(),
                kind: v["kind"].as_str().unwrap().to_owned(),
                code: v["pickup_code"].as_str().map(str::to_owned),
                block: v["block"].as_bool().unwrap(),
            }
        })
        .collect()
}

/// Codes compare as the extractor returns them: full-width folded, upper
/// case.
fn norm(code: &str) -> String {
    fold(code).to_ascii_uppercase()
}

#[test]
fn pickup_codes_match_exactly() {
    pickup_figures("corpus", &corpus());
}

#[test]
fn pickup_codes_match_exactly_on_the_second_set() {
    pickup_figures("second set", &tuning_b());
}

#[test]
fn pickup_codes_on_unseen_texts() {
    let (rate, spurious) = pickup_rates("unseen", &unseen());
    println!("unseen: exact {rate:.3}, spurious {spurious:.3}");
}

fn pickup_figures(name: &str, corpus: &[Entry]) {
    let (rate, spurious) = pickup_rates(name, corpus);
    assert!(rate >= 0.97, "exact-match rate {rate:.3} below 0.97");
    assert!(
        spurious <= 0.02,
        "{spurious:.3} of texts without a code were given one"
    );
}

/// Prints the figures and every miss; returns the exact-match rate and the
/// share of texts without a code that were given one.
fn pickup_rates(name: &str, corpus: &[Entry]) -> (f64, f64) {
    let (mut right, mut total, mut spurious, mut negatives) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    for e in corpus {
        let got = pickup_code(&e.text);
        match &e.code {
            Some(want) => {
                total += 1;
                if got.as_deref() == Some(norm(want).as_str()) {
                    right += 1;
                } else {
                    misses.push(format!("want {want:?} got {got:?}: {}", e.text));
                }
            }
            None => {
                negatives += 1;
                if let Some(g) = got {
                    spurious += 1;
                    misses.push(format!("want none got {g:?} ({}): {}", e.kind, e.text));
                }
            }
        }
    }
    let rate = f64::from(right) / f64::from(total);
    println!(
        "{name}: pick-up codes {right}/{total} exact ({rate:.3}); {spurious} of {negatives} texts without a code given one"
    );
    for m in &misses {
        println!("  {m}");
    }
    (rate, f64::from(spurious) / f64::from(negatives))
}

#[test]
fn marketing_is_blocked_and_codes_never_are() {
    marketing_figures("corpus", &corpus());
}

#[test]
fn marketing_is_blocked_and_codes_never_are_on_the_second_set() {
    marketing_figures("second set", &tuning_b());
}

#[test]
fn marketing_on_unseen_texts_never_blocks_codes() {
    let (precision, recall) = marketing_rates("unseen", &unseen());
    println!("unseen: precision {precision:.3}, recall {recall:.3}");
}

fn marketing_figures(name: &str, corpus: &[Entry]) {
    let (precision, recall) = marketing_rates(name, corpus);
    assert!(precision >= 0.97, "precision {precision:.3}");
    assert!(recall >= 0.90, "recall {recall:.3}");
}

/// Prints the figures and every mistake, asserts that no pick-up or
/// verification text is blocked; returns precision and recall.
fn marketing_rates(name: &str, corpus: &[Entry]) -> (f64, f64) {
    let filter = Filter::default();
    let (mut tp, mut fp, mut fn_) = (0u32, 0u32, 0u32);
    let mut protected_blocked = Vec::new();
    let mut wrong = Vec::new();
    for e in corpus {
        let blocked = filter.classify(&e.text) != Verdict::Pass;
        match (blocked, e.block) {
            (true, true) => tp += 1,
            (true, false) => {
                fp += 1;
                wrong.push(format!("blocked ({}): {}", e.kind, e.text));
            }
            (false, true) => {
                fn_ += 1;
                wrong.push(format!("passed (marketing): {}", e.text));
            }
            (false, false) => {}
        }
        if blocked && (e.kind == "pickup" || e.kind == "verification") {
            protected_blocked.push(e.text.clone());
        }
    }
    let precision = f64::from(tp) / f64::from(tp + fp);
    let recall = f64::from(tp) / f64::from(tp + fn_);
    println!(
        "{name}: marketing filter precision {precision:.3} recall {recall:.3} (tp {tp}, fp {fp}, fn {fn_})"
    );
    for w in &wrong {
        println!("  {w}");
    }
    assert!(
        protected_blocked.is_empty(),
        "pick-up or verification texts blocked: {protected_blocked:#?}"
    );
    (precision, recall)
}

#[test]
fn verification_texts_are_recognised() {
    let corpus = corpus();
    let mut missed = Vec::new();
    for e in corpus.iter().filter(|e| e.kind == "verification") {
        if !is_verification(&e.text) && pickup_code(&e.text).is_none() {
            missed.push(e.text.clone());
        }
    }
    println!("verification texts not recognised: {}", missed.len());
    for m in &missed {
        println!("  {m}");
    }
}
