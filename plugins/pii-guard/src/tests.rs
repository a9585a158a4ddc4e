use super::*;
use wardgate_sdk::testing;

fn guard(json: &str) -> PiiGuard {
    testing::configure::<PiiGuard>(json).unwrap_or_else(|e| panic!("{e}"))
}

fn masked(g: &PiiGuard, text: &str) -> String {
    match g.scan(text) {
        Scan::Clean => text.to_string(),
        Scan::Changed(t) => t,
        Scan::Blocked(e) => panic!("blocked on {e:?}"),
    }
}

#[test]
fn operators_mask_redact_hash_and_block() {
    let g = guard(
        r#"{"entityActions": {"EMAIL_ADDRESS": "REDACT", "US_SSN": "HASH", "CREDIT_CARD": "BLOCK"},
            "hashKey": "k1"}"#,
    );
    let out = masked(
        &g,
        "mail bob@example.com, ssn 536-22-8726, call (415) 555-0132",
    );
    let hash = g.hash("536-22-8726");
    assert_eq!(hash.len(), 64);
    assert_eq!(out, format!("mail , ssn {hash}, call <PHONE_NUMBER>"));
    // Keyed: another key, another hash.
    let other = guard(r#"{"entityActions": {"US_SSN": "HASH"}, "hashKey": "k2"}"#);
    assert_ne!(other.hash("536-22-8726"), hash);
    assert!(matches!(
        g.scan("card 4111-1111-1111-1111"),
        Scan::Blocked(Entity::CREDIT_CARD)
    ));
}

#[test]
fn thresholds_per_entity_and_all() {
    // Phone numbers score 0.4 without context, 0.75 with it.
    let g = guard(r#"{"scoreThresholds": {"ALL": 0.5}}"#);
    assert_eq!(masked(&g, "ref (415) 555-0132"), "ref (415) 555-0132");
    assert_eq!(masked(&g, "phone (415) 555-0132"), "phone <PHONE_NUMBER>");
    let g = guard(r#"{"scoreThresholds": {"ALL": 0.5, "PHONE_NUMBER": 0.3}}"#);
    assert_eq!(masked(&g, "ref (415) 555-0132"), "ref <PHONE_NUMBER>");
    // Very weak SSN/bank patterns need their context words by default.
    let g = guard("{}");
    assert_eq!(masked(&g, "number 536228726"), "number 536228726");
    assert_eq!(masked(&g, "ssn 536228726"), "ssn <US_SSN>");
}

#[test]
fn overlaps_keep_the_surer_finding() {
    let g = guard("{}");
    // The email's domain is also a URL: the validated email wins.
    assert_eq!(
        masked(&g, "to bob@shop.example.com."),
        "to <EMAIL_ADDRESS>."
    );
    assert_eq!(
        masked(&g, "see https://shop.example.com/x?id=1, then"),
        "see <URL>, then"
    );
}

#[test]
fn people_come_from_the_names_list() {
    let g = guard(r#"{"names": ["Alice Smith", "Bob"]}"#);
    assert_eq!(
        masked(&g, "ALICE SMITH met bob and Bobby"),
        "<PERSON> met <PERSON> and Bobby"
    );
}

#[test]
fn config_errors_name_the_field() {
    let err = |json: &str| testing::configure::<PiiGuard>(json).err().unwrap();
    assert_eq!(
        err(r#"{"entityActions": {"EMAIL": "MASK"}}"#).field,
        "entityActions.EMAIL"
    );
    assert_eq!(
        err(r#"{"scoreThresholds": {"URL": 2}}"#).field,
        "scoreThresholds.URL"
    );
    assert_eq!(
        err(r#"{"entityActions": {"URL": "HASH"}}"#).field,
        "hashKey"
    );
    assert_eq!(err(r#"{"entities": ["PERSON"]}"#).field, "names");
    assert!(
        err(r#"{"entityActions": {"URL": "ERASE"}}"#)
            .message
            .contains("ERASE")
    );
    assert_eq!(err(r#"{"mode": "during_call"}"#).field, "mode");
    assert_eq!(err(r#"{"blockStatus": 99}"#).field, "blockStatus");
}

#[test]
fn modes_choose_the_hooks() {
    let pre = guard(r#"{"mode": "pre_call"}"#);
    assert_eq!(
        pre.active_hooks(),
        Hooks::LLM_REQUEST.union(Hooks::MCP_REQUEST)
    );
    let both = guard(r#"{"mode": ["pre_call", "post_call"]}"#);
    assert_eq!(both.active_hooks(), PiiGuard::HOOKS);
}

#[test]
fn mcp_arguments_and_results_are_masked_inside_json() {
    let g = guard(r#"{"entityActions": {"IBAN_CODE": "BLOCK"}}"#);
    let req = McpRequest {
        method: "tools/call".into(),
        target: None,
        name: Some("send".into()),
        arguments: Some(r#"{"to":"bob@example.com","n":3,"cc":["ann@example.org"]}"#.into()),
        session: None,
    };
    match g.on_mcp_request(&testing::context(), req) {
        McpRequestAction::Modify(args) => assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            serde_json::json!({"to": "<EMAIL_ADDRESS>", "n": 3, "cc": ["<EMAIL_ADDRESS>"]})
        ),
        other => panic!("{other:?}"),
    }
    let resp = McpResponse {
        method: "tools/call".into(),
        target: None,
        name: Some("lookup".into()),
        result: r#"{"content":[{"type":"text","text":"IBAN DE89 3704 0044 0532 0130 00"}]}"#.into(),
        is_error: false,
    };
    match g.on_mcp_response(&testing::context(), resp) {
        McpResponseAction::Deny(d) => {
            assert_eq!(d.status, 400);
            assert!(d.body.contains("IBAN_CODE"), "{}", d.body);
        }
        other => panic!("{other:?}"),
    }
}

/// Documents are looked over before they are parsed; the look must see
/// what the parse sees (escapes decoded, strings at any depth), and invalid
/// JSON is still scanned as text (for what blocks: it cannot be rewritten).
#[test]
fn json_documents_without_candidates_pass_and_escaped_ones_are_found() {
    let g = guard("{}");
    assert_eq!(
        g.scan_json_text(r#"{"a":2,"b":[true,null,"sum is 5."]}"#),
        Ok(None)
    );
    let escaped = g.scan_json_text(r#"{"deep":[{"to":"bob\u0040example.com"}]}"#);
    assert_eq!(
        escaped
            .unwrap()
            .map(|t| serde_json::from_str::<Value>(&t).unwrap()),
        Some(serde_json::json!({"deep": [{"to": "<EMAIL_ADDRESS>"}]}))
    );
    let g = guard(r#"{"entityActions": {"CREDIT_CARD": "BLOCK"}}"#);
    assert_eq!(
        g.scan_json_text("not json: card 4111-1111-1111-1111"),
        Err(Entity::CREDIT_CARD)
    );
}

/// Feed `text` as a stream of `size`-byte chunks, then the end; what the client gets.
fn stream(g: &PiiGuard, text: &str, size: usize) -> String {
    let ctx = testing::context();
    let mut sent = String::new();
    let mut pieces: Vec<&str> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut n = size.min(rest.len());
        while !rest.is_char_boundary(n) {
            n += 1;
        }
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    for (i, p) in pieces.iter().chain(std::iter::once(&"")).enumerate() {
        let chunk = LlmChunk {
            index: i as u32,
            text: p.to_string(),
            lookbehind: String::new(),
            usage: None,
            done: i == pieces.len(),
        };
        match g.on_llm_chunk(&ctx, chunk) {
            LlmChunkAction::Continue => sent.push_str(p),
            LlmChunkAction::Modify(t) => sent.push_str(&t),
            LlmChunkAction::Deny(d) => return format!("DENIED: {}", d.body),
        }
    }
    sent
}

#[test]
fn streamed_values_split_across_chunks_are_masked_whole() {
    let g = guard("{}");
    let text = "Sure! Write to jane.doe@example.com or call (415) 555-0132. \
                Card 4111 1111 1111 1111 is on file; IBAN DE89 3704 0044 0532 0130 00. Bye";
    let whole = masked(&g, text);
    for size in [1, 3, 7, 16, 50, 500] {
        assert_eq!(stream(&g, text, size), whole, "chunks of {size}");
    }
    // A second stream on the same instance starts clean.
    assert_eq!(stream(&g, "no pii here at all", 4), "no pii here at all");
    let block = guard(r#"{"entityActions": {"CREDIT_CARD": "BLOCK"}}"#);
    assert!(stream(&block, text, 5).starts_with("DENIED: response blocked"));
}

/// Precision and recall per entity on the labelled corpus
/// (tests/fixtures/pii/corpus.jsonl, made by make_corpus.py).
#[test]
fn corpus_precision_and_recall() {
    let corpus = include_str!("../../../tests/fixtures/pii/corpus.jsonl");
    let g = guard("{}");
    let mut tally: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new(); // tp, fp, fn
    for line in corpus.lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let text = sample["text"].as_str().unwrap();
        let expected: Vec<(String, String)> = sample["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[0].as_str().unwrap().to_string(),
                    e[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let got: Vec<(String, String)> = g
            .findings(text)
            .iter()
            .map(|f| {
                (
                    f.entity.name().to_string(),
                    text[f.start..f.end].to_string(),
                )
            })
            .collect();
        for e in Entity::ALL {
            let t = tally.entry(e.name()).or_default();
            let exp: Vec<_> = expected.iter().filter(|x| x.0 == e.name()).collect();
            let hit: Vec<_> = got.iter().filter(|x| x.0 == e.name()).collect();
            let tp = hit.iter().filter(|h| exp.contains(h)).count() as u32;
            t.0 += tp;
            t.1 += hit.len() as u32 - tp;
            t.2 += exp.len() as u32 - tp;
        }
    }
    println!("entity          precision  recall   (tp/fp/fn)");
    for (name, (tp, fp, fneg)) in &tally {
        if tp + fp + fneg == 0 {
            continue;
        }
        let p = *tp as f64 / (tp + fp).max(1) as f64;
        let r = *tp as f64 / (tp + fneg).max(1) as f64;
        println!("{name:<15} {p:>9.3} {r:>7.3}   ({tp}/{fp}/{fneg})");
        if ["CREDIT_CARD", "IBAN_CODE", "CRYPTO"].contains(name) {
            assert!(
                p >= 0.95 && r >= 0.95,
                "{name}: precision {p:.3} recall {r:.3}"
            );
        }
    }
}

#[test]
#[ignore]
fn corpus_false_positives() {
    let corpus = include_str!("../../../tests/fixtures/pii/corpus.jsonl");
    let g = guard("{}");
    for line in corpus.lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let text = sample["text"].as_str().unwrap();
        for f in g.findings(text) {
            let v = &text[f.start..f.end];
            if !sample["entities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e[1] == v && e[0] == f.entity.name())
            {
                println!("FP {:?} {v:?} in {text}", f.entity);
            }
        }
    }
}
