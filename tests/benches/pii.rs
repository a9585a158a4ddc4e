//! PII scan throughput, side by side with ContextForge's Rust-backed
//! `cpex-pii-filter` on the same text in the same run:
//! `cargo bench -p wardgate-tests --bench pii` (cpex from target/py, put
//! there by scripts/setup-test-peers; skipped with a note when absent).
//!
//! The text is every sample of tests/fixtures/pii/corpus.jsonl, one per
//! line (~280 KB, about one entity per 170 bytes). Measured:
//! - `pii-guard wasm`: the built-in component on an LLM request holding the
//!   text, through the runtime (copy in, scan, anonymize, copy out);
//! - `pii-guard native`: the same scan and anonymization as a Rust library;
//! - `cpex detect`: `PIIDetectorRust.detect(text)` with every detector on.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pii_guard::{PiiGuard, Scan};
use wardgate::policy::bindings::{ChatMessage, ContentPart, LlmRequest, Role};
use wardgate::policy::hooks::OnLlmRequest;
use wardgate::policy::{Chain, Verdict};
use wardgate_tests::{context, engine, load};

fn corpus() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pii/corpus.jsonl");
    let mut text = String::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        text.push_str(v["text"].as_str().unwrap());
        text.push('\n');
    }
    text
}

/// MB/s of `f` over `bytes`, best of 5 runs of at least 1 s.
fn throughput(bytes: usize, mut f: impl FnMut()) -> f64 {
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_secs(1) {
            f();
            n += 1;
        }
        best = best.max((bytes * n) as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    best
}

fn request(text: &str) -> LlmRequest {
    LlmRequest {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: vec![ContentPart::Text(text.to_string())],
            name: None,
            tool_call_id: None,
            tool_calls: vec![],
        }],
        tools: vec![],
        stream: false,
    }
}

const CPEX: &str = r#"
import sys, time
from cpex_pii_filter.pii_filter_rust import PIIDetectorRust
keys = ["detect_ssn", "detect_bsn", "detect_credit_card", "detect_email", "detect_phone",
        "detect_ip_address", "detect_date_of_birth", "detect_passport", "detect_driver_license",
        "detect_bank_account", "detect_medical_record"]
d = PIIDetectorRust({k: True for k in keys})
text = open(sys.argv[1]).read()
found = sum(len(v) for v in d.detect(text).values())
best = 0.0
for _ in range(5):
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        d.detect(text)
        n += 1
    best = max(best, len(text.encode()) * n / (time.perf_counter() - start) / 1e6)
print(f"{best:.1f} {found}")
"#;

fn main() {
    let text = corpus();
    let bytes = text.len();
    println!("corpus: {bytes} bytes, {} lines", text.lines().count());

    let native: PiiGuard = wardgate_sdk::testing::configure("{}").unwrap();
    let found = native.findings(&text).len();
    let mbs = throughput(bytes, || {
        assert!(matches!(
            native.scan(std::hint::black_box(&text)),
            Scan::Changed(_)
        ));
    });
    println!("pii-guard native  {mbs:>7.1} MB/s  ({found} findings)");

    let engine = engine();
    let plugin = load(&engine, "name: pii-guard\nconfig: {}");
    let chain = Chain::new(vec![Arc::new(plugin)]);
    let mut run = chain.start(context("bench"));
    let req = request(&text);
    let wasm = throughput(bytes, || {
        let mut r = req.clone();
        assert!(matches!(
            run.run::<OnLlmRequest>(&mut r),
            Ok(Verdict::Continue)
        ));
    });
    println!("pii-guard wasm    {wasm:>7.1} MB/s");

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python");
    let file = std::env::temp_dir().join(format!("wardgate-pii-corpus-{}.txt", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-c", CPEX])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    match out {
        Ok(o) if o.status.success() => {
            let line = String::from_utf8_lossy(&o.stdout);
            let mut parts = line.split_whitespace();
            let cpex: f64 = parts.next().unwrap().parse().unwrap();
            let cpex_found = parts.next().unwrap_or("?");
            println!("cpex detect       {cpex:>7.1} MB/s  ({cpex_found} findings)");
            println!(
                "ratio wasm/cpex   {:>7.2}x, native/cpex {:.2}x",
                wasm / cpex,
                mbs / cpex
            );
        }
        Ok(o) => println!(
            "cpex: not measured: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("cpex: not measured ({e}); run scripts/setup-test-peers"),
    }
}
