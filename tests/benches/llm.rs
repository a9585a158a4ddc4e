//! Chat completions through Wardgate vs direct to the provider, with
//! translation on: the client speaks OpenAI chat completions, the provider
//! Anthropic messages. Then OpenAI's Responses API, whole and streamed
//! (its events read by the gateway for usage and the hooks). Then Amazon
//! Bedrock: OpenAI chat in, Converse out, each call signed with SigV4 and
//! its streamed answer read from AWS event-stream frames. The provider
//! is an in-process fake on loopback that answers at once (a Python fake
//! would drown the gateway's cost in its own).
//!
//! Reports, from one run: p50/p99 per request direct and through the
//! gateway (non-streamed), and for a streamed answer of CHUNKS events the
//! time from the first to the last event, whose difference per chunk is
//! the delay the gateway adds per chunk.
//!
//! Run: cargo bench -p wardgate --bench llm [-- REQUESTS]
//! (`WARDGATE=path` measures that gateway binary instead of this package's.)

#[path = "gateway_process.rs"]
mod gateway_process;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_process::{Gateway, free_port};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

const CHUNKS: usize = 100;
const PACED_CHUNKS: usize = 10;

fn anthropic_message() -> Bytes {
    Bytes::from(
        serde_json::json!({"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [{"type": "text", "text": "The quick brown fox jumps over the lazy dog."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 11}})
        .to_string(),
    )
}

/// A streamed Messages answer of `chunks` deltas; with `thinking`, the
/// first half are a signed thinking block's.
fn anthropic_events(chunks: usize, thinking: bool) -> Vec<Bytes> {
    let ev =
        |name: &str, v: serde_json::Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
    let mut out = vec![ev(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {"id": "msg_bench", "type": "message",
            "role": "assistant", "model": "claude-bench", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    )];
    let thought = if thinking { chunks / 2 } else { 0 };
    let block = |index: usize, kind: &str| {
        let content = match kind {
            "thinking" => serde_json::json!({"type": "thinking", "thinking": "", "signature": ""}),
            _ => serde_json::json!({"type": "text", "text": ""}),
        };
        ev(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": index, "content_block": content}),
        )
    };
    let stop = |index: usize| {
        ev(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": index}),
        )
    };
    if thinking {
        out.push(block(0, "thinking"));
        for i in 0..thought {
            out.push(ev(
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": format!(" step{i}")}}),
            ));
        }
        out.push(ev(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQBCkgIARABGAIiQL2benchsig"}}),
        ));
        out.push(stop(0));
    }
    let text = usize::from(thinking);
    out.push(block(text, "text"));
    for i in thought..chunks {
        out.push(ev(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": text,
                "delta": {"type": "text_delta", "text": format!(" word{i}")}}),
        ));
    }
    out.push(stop(text));
    out.push(ev("message_delta", serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": chunks}})));
    out.push(ev(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    out
}

/// A Responses API answer, and its streamed events (`chunks` text deltas),
/// as OpenAI sends them.
fn responses_answer(chunks: usize) -> (Bytes, Vec<Bytes>) {
    let text: String = (0..chunks).map(|i| format!(" word{i}")).collect();
    let item = serde_json::json!({"id": "msg_bench", "type": "message", "status": "completed",
        "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let done = serde_json::json!({"id": "resp_bench", "object": "response", "status": "completed",
        "model": "gpt-bench", "output": [item],
        "usage": {"input_tokens": 25, "output_tokens": chunks, "total_tokens": 25 + chunks}});
    let mut seq = 0;
    let mut ev = |v: serde_json::Value| {
        let mut v = v;
        v["sequence_number"] = seq.into();
        seq += 1;
        Bytes::from(format!(
            "event: {}\ndata: {v}\n\n",
            v["type"].as_str().unwrap()
        ))
    };
    let started = serde_json::json!({"id": "resp_bench", "object": "response",
        "status": "in_progress", "model": "gpt-bench", "output": []});
    let at = serde_json::json!({"item_id": "msg_bench", "output_index": 0, "content_index": 0});
    let with = |mut base: serde_json::Value, extra: serde_json::Value| {
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let mut events = vec![
        ev(serde_json::json!({"type": "response.created", "response": started})),
        ev(
            serde_json::json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"id": "msg_bench", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
    ];
    for i in 0..chunks {
        events.push(ev(with(
            at.clone(),
            serde_json::json!({"type": "response.output_text.delta", "delta": format!(" word{i}")}),
        )));
    }
    events.push(ev(with(
        at.clone(),
        serde_json::json!({"type": "response.output_text.done", "text": text}),
    )));
    events.push(ev(with(
        at,
        serde_json::json!({"type": "response.content_part.done", "part": item["content"][0]}),
    )));
    events.push(ev(
        serde_json::json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    ));
    events.push(ev(
        serde_json::json!({"type": "response.completed", "response": done}),
    ));
    (Bytes::from(done.to_string()), events)
}

/// A Gemini answer, and its streamed partial answers (`chunks` text parts,
/// the finish and usage on the last) as server-sent events.
fn gemini_answer(chunks: usize) -> (Bytes, Vec<Bytes>) {
    let usage = serde_json::json!({"promptTokenCount": 25, "candidatesTokenCount": chunks,
        "totalTokenCount": 25 + chunks});
    let partial = |text: String, last: bool| {
        let mut v = serde_json::json!({"candidates": [{"content": {"role": "model",
            "parts": [{"text": text}]}}], "modelVersion": "gemini-bench", "responseId": "bench"});
        if last {
            v["candidates"][0]["finishReason"] = "STOP".into();
            v["usageMetadata"] = usage.clone();
        }
        v
    };
    let whole = partial("The quick brown fox jumps over the lazy dog.".into(), true);
    let events = (0..chunks)
        .map(|i| partial(format!(" word{i}"), i + 1 == chunks))
        .map(|v| Bytes::from(format!("data: {v}\r\n\r\n")))
        .collect();
    (Bytes::from(whole.to_string()), events)
}

/// A Converse answer, and its streamed events (`chunks` text deltas) as
/// AWS event-stream frames.
fn converse_answer(chunks: usize) -> (Bytes, Vec<Bytes>) {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let usage =
        serde_json::json!({"inputTokens": 25, "outputTokens": chunks, "totalTokens": 25 + chunks});
    let whole = serde_json::json!({"output": {"message": {"role": "assistant",
        "content": [{"text": "The quick brown fox jumps over the lazy dog."}]}},
        "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 1}});
    let frame = |kind: &'static str, v: serde_json::Value| {
        let message = Message::new_from_parts(
            vec![
                Header::new(":event-type", HeaderValue::String(kind.into())),
                Header::new(
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ),
                Header::new(":message-type", HeaderValue::String("event".into())),
            ],
            v.to_string(),
        );
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
        Bytes::from(out)
    };
    let mut events = vec![frame(
        "messageStart",
        serde_json::json!({"role": "assistant"}),
    )];
    for i in 0..chunks {
        events.push(frame(
            "contentBlockDelta",
            serde_json::json!({"contentBlockIndex": 0, "delta": {"text": format!(" word{i}")}}),
        ));
    }
    events.push(frame(
        "contentBlockStop",
        serde_json::json!({"contentBlockIndex": 0}),
    ));
    events.push(frame(
        "messageStop",
        serde_json::json!({"stopReason": "end_turn"}),
    ));
    events.push(frame(
        "metadata",
        serde_json::json!({"usage": usage, "metrics": {"latencyMs": 1}}),
    ));
    (Bytes::from(whole.to_string()), events)
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn fake(req: Request<Incoming>) -> Result<Response<Body>, std::convert::Infallible> {
    // Paced: PACED_CHUNKS events 1 ms apart, as a model writes, leaving the CPU idle between.
    let paced = req.headers().contains_key("x-bench-paced");
    let responses_api = req.uri().path().ends_with("/responses");
    let converse = req.uri().path().starts_with("/model/");
    let gemini_stream = req.uri().path().contains(":streamGenerateContent");
    let gemini = gemini_stream || req.uri().path().contains(":generateContent");
    let converse_stream = req.uri().path().ends_with("/converse-stream");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let stream = converse_stream || gemini_stream || parsed["stream"].as_bool().unwrap_or(false);
    let thinking = parsed["thinking"]["type"] == "enabled";
    if !stream {
        let answer = if responses_api {
            responses_answer(1).0
        } else if converse {
            converse_answer(1).0
        } else if gemini {
            gemini_answer(1).0
        } else {
            anthropic_message()
        };
        let mut r = Response::new(Full::new(answer).boxed());
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return Ok(r);
    }
    // One frame per event, each written as the provider would.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let chunks = if paced { PACED_CHUNKS } else { CHUNKS };
        let events = if responses_api {
            responses_answer(chunks).1
        } else if converse {
            converse_answer(chunks).1
        } else if gemini {
            gemini_answer(chunks).1
        } else {
            anthropic_events(chunks, thinking)
        };
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
            if paced {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    });
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(s).boxed());
    let content_type = if converse {
        "application/vnd.amazon.eventstream"
    } else {
        "text/event-stream"
    };
    r.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    Ok(r)
}

/// The fake runs on its own thread and runtime, so producing events never
/// competes with the measuring client for one scheduler.
fn start_fake() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), hyper::service::service_fn(fake))
                        .await;
                });
            }
        });
    });
    addr
}

/// One case, `n` requests each way, interleaved after a warm-up: its
/// latency direct and through the gateway, and for a stream the delay the
/// gateway adds per chunk.
async fn compare(
    c: &Http,
    n: usize,
    kind: &str,
    stream: bool,
    (direct_url, direct_body): (&str, &Bytes),
    (gw_url, gw_body): (&str, &Bytes),
) {
    for _ in 0..200 {
        once(c, direct_url, direct_body, false, false).await;
        once(c, gw_url, gw_body, false, false).await;
    }
    let (mut d, mut g, mut ds, mut gs) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let (t, s, _) = once(c, direct_url, direct_body, false, false).await;
        d.push(t);
        ds.push(s);
        let (t, s, _) = once(c, gw_url, gw_body, false, false).await;
        g.push(t);
        gs.push(s);
    }
    report_latency(kind, &mut d, &mut g);
    if stream {
        report_per_chunk(&mut ds, &mut gs);
    }
}

/// One case's whole-request latency, direct and through the gateway.
fn report_latency(kind: &str, direct: &mut [f64], gateway: &mut [f64]) {
    let (d50, g50) = (pct(direct, 0.5), pct(gateway, 0.5));
    println!(
        "{kind:13} direct p50 {d50:7.1} us p99 {:7.1} us | gateway p50 {g50:7.1} us p99 {:7.1} us | added p50 {:6.1} us",
        pct(direct, 0.99),
        pct(gateway, 0.99),
        g50 - d50
    );
}

/// A stream's first-to-last event time, as what the gateway adds per chunk.
fn report_per_chunk(direct: &mut [f64], gateway: &mut [f64]) {
    let (d, g) = (pct(direct, 0.5), pct(gateway, 0.5));
    println!(
        "{:13} first->last event p50: direct {d:7.1} us, gateway {g:7.1} us over {CHUNKS} chunks: added {:5.2} us per chunk",
        "",
        (g - d) / CHUNKS as f64
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Time one request: (to the whole body, first data frame → last data
/// frame, to the first data frame), in microseconds.
async fn once(c: &Http, url: &str, body: &Bytes, anthropic: bool, paced: bool) -> (f64, f64, f64) {
    let mut req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    if paced {
        req.headers_mut()
            .insert("x-bench-paced", "1".parse().unwrap());
    }
    if anthropic {
        req.headers_mut()
            .insert("anthropic-version", "2023-06-01".parse().unwrap());
    }
    let start = Instant::now();
    let mut resp = c.request(req).await.unwrap().into_body();
    let (mut first, mut last) = (None, start);
    while let Some(f) = resp.frame().await {
        if f.unwrap().is_data() {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
        }
    }
    let total = start.elapsed().as_secs_f64() * 1e6;
    let first = first.unwrap_or(last);
    let spread = (last - first).as_secs_f64() * 1e6;
    (total, spread, (first - start).as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let cores = gateway_process::pin_self_off_core_zero();
    let upstream = start_fake();
    let port = free_port();
    let admin = free_port();
    let config = format!(
        "config: {{adminAddr: 127.0.0.1:{admin}}}\nbinds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: raw\n      matches: [{{path: {{pathPrefix: /raw}}}}]\n      backends: [{{host: \"{upstream}\"}}]\n    - name: chat\n      policies: {{backendAuth: {{key: sk-bench}}}}\n      backends:\n      - ai: {{provider: {{anthropic: {{}}}}, hostOverride: \"{upstream}\"}}\n    - name: responses\n      matches: [{{path: {{pathPrefix: /oa}}}}]\n      policies: {{backendAuth: {{key: sk-bench}}}}\n      backends:\n      - ai: {{provider: {{openAI: {{}}}}, hostOverride: \"{upstream}\"}}\n    - name: bedrock\n      matches: [{{path: {{pathPrefix: /br}}}}]\n      policies: {{backendAuth: {{aws: {{accessKeyId: AKIDBENCH, secretAccessKey: bench-secret}}}}}}\n      backends:\n      - ai: {{provider: {{bedrock: {{region: us-east-1, model: bench-model}}}}, hostOverride: \"{upstream}\"}}\n    - name: gemini\n      matches: [{{path: {{pathPrefix: /gm}}}}]\n      policies: {{backendAuth: {{key: sk-bench}}}}\n      backends:\n      - ai: {{provider: {{vertex: {{projectId: bench, region: us-east5}}}}, hostOverride: \"{upstream}\"}}\n"
    );
    let gw = Gateway::start(&gateway_process::wardgate_bin(), &config, port, "llm");

    let c: Http = Client::builder(TokioExecutor::new()).build_http();
    let msgs = serde_json::json!([{"role": "user", "content": "Summarize the report in three bullet points."}]);
    let direct_body = |stream: bool| {
        Bytes::from(serde_json::json!({"model": "claude-bench", "max_tokens": 256, "stream": stream, "messages": msgs}).to_string())
    };
    let gw_body = |stream: bool| {
        Bytes::from(
            serde_json::json!({"model": "claude-bench", "stream": stream, "messages": msgs})
                .to_string(),
        )
    };
    let direct_url = format!("http://{upstream}/v1/messages");
    let gw_url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    // The same provider through a plain HTTP route: what proxying alone costs.
    let raw_url = format!("http://127.0.0.1:{port}/raw/v1/messages");

    println!(
        "machine: {cores} cores{}; {n} sequential requests per case, 1 connection",
        gateway_process::pin_note()
    );
    let steal = gateway_process::CpuSteal::start();
    for stream in [false, true] {
        let (db, gb) = (direct_body(stream), gw_body(stream));
        for _ in 0..200 {
            once(&c, &direct_url, &db, true, false).await;
            once(&c, &gw_url, &gb, false, false).await;
        }
        let (mut d, mut g, mut ds, mut gs) = (vec![], vec![], vec![], vec![]);
        let (mut df, mut gf) = (vec![], vec![]);
        let (mut r, mut rf) = (vec![], vec![]);
        // Interleaved, so drift on the machine hits both sides alike.
        for _ in 0..n {
            let (t, s, f) = once(&c, &direct_url, &db, true, false).await;
            d.push(t);
            ds.push(s);
            df.push(f);
            let (t, s, f) = once(&c, &gw_url, &gb, false, false).await;
            g.push(t);
            gs.push(s);
            gf.push(f);
            let (t, _, f) = once(&c, &raw_url, &db, true, false).await;
            r.push(t);
            rf.push(f);
        }
        let kind = if stream { "streamed" } else { "non-streamed" };
        report_latency(kind, &mut d, &mut g);
        println!(
            "{:13} plain HTTP route to the same provider: p50 {:7.1} us",
            "",
            pct(&mut r, 0.5)
        );
        if stream {
            let (d, g) = (pct(&mut df, 0.5), pct(&mut gf, 0.5));
            println!(
                "{:13} first event p50: direct {d:7.1} us, gateway {g:7.1} us: added {:6.1} us; plain HTTP route {:7.1} us",
                "",
                g - d,
                pct(&mut rf, 0.5)
            );
            report_per_chunk(&mut ds, &mut gs);
        }
    }
    // The Responses API, same format both sides: what reading its body and
    // events costs (for usage and the hooks, none configured here).
    let resp_body = |stream: bool| {
        Bytes::from(
            serde_json::json!({"model": "gpt-bench", "stream": stream,
            "input": "Summarize the report in three bullet points."})
            .to_string(),
        )
    };
    let direct_responses = format!("http://{upstream}/v1/responses");
    let gw_responses = format!("http://127.0.0.1:{port}/oa/v1/responses");
    for stream in [false, true] {
        let body = resp_body(stream);
        let kind = if stream {
            "responses, streamed"
        } else {
            "responses"
        };
        compare(
            &c,
            n,
            kind,
            stream,
            (&direct_responses, &body),
            (&gw_responses, &body),
        )
        .await;
    }
    // Bedrock: OpenAI chat in, Converse out, signed; the direct side sends
    // the Converse request itself.
    let converse_body = Bytes::from(
        serde_json::json!({"messages": [{"role": "user", "content": [{"text": "Summarize the report in three bullet points."}]}],
            "inferenceConfig": {"maxTokens": 256}})
        .to_string(),
    );
    let gw_bedrock = format!("http://127.0.0.1:{port}/br/v1/chat/completions");
    let gw_bedrock_responses = format!("http://127.0.0.1:{port}/br/v1/responses");
    for stream in [false, true] {
        let method = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        let direct = format!("http://{upstream}/model/bench-model/{method}");
        let kind = if stream {
            "bedrock, streamed"
        } else {
            "bedrock"
        };
        let gb = gw_body(stream);
        compare(
            &c,
            n,
            kind,
            stream,
            (&direct, &converse_body),
            (&gw_bedrock, &gb),
        )
        .await; // The Responses API in, translated to Converse and back.
        let kind = if stream {
            "responses on bedrock, streamed"
        } else {
            "responses on bedrock"
        };
        compare(
            &c,
            n,
            kind,
            stream,
            (&direct, &converse_body),
            (&gw_bedrock_responses, &resp_body(stream)),
        )
        .await;
    }
    // Vertex's Gemini: OpenAI chat in, Gemini's own API out; the direct
    // side sends the Gemini request itself.
    let gemini_body = Bytes::from(
        serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "Summarize the report in three bullet points."}]}],
            "generationConfig": {"maxOutputTokens": 256}})
        .to_string(),
    );
    let gemini_base = format!(
        "http://{upstream}/v1/projects/bench/locations/us-east5/publishers/google/models/gemini-bench"
    );
    let gw_gemini = format!("http://127.0.0.1:{port}/gm/v1/chat/completions");
    for stream in [false, true] {
        let (direct, kind) = if stream {
            (
                format!("{gemini_base}:streamGenerateContent?alt=sse"),
                "gemini, streamed",
            )
        } else {
            (format!("{gemini_base}:generateContent"), "gemini")
        };
        let gb = Bytes::from(
            serde_json::json!({"model": "gemini-bench", "stream": stream, "messages": msgs})
                .to_string(),
        );
        compare(
            &c,
            n,
            kind,
            stream,
            (&direct, &gemini_body),
            (&gw_gemini, &gb),
        )
        .await;
    }
    // Thinking: OpenAI's reasoning_effort in, Claude's thinking block out
    // as reasoning_content chunks and its signed block.
    let think = |body: serde_json::Value| {
        let mut body = body;
        body["stream"] = true.into();
        Bytes::from(body.to_string())
    };
    let direct_thinking = think(
        serde_json::json!({"model": "claude-bench", "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": msgs}),
    );
    let gw_thinking = think(
        serde_json::json!({"model": "claude-bench", "reasoning_effort": "low", "messages": msgs}),
    );
    compare(
        &c,
        n,
        "thinking, streamed",
        true,
        (&direct_url, &direct_thinking),
        (&gw_url, &gw_thinking),
    )
    .await;
    // Paced streams: the CPU is idle between events, so what remains is the
    // gateway's own delay on the first and on each later event.
    let (db, gb) = (direct_body(true), gw_body(true));
    let (mut dl, mut df, mut gf) = (vec![], vec![], vec![]);
    let (mut rl, mut rf) = (vec![], vec![]);
    for _ in 0..(n / 5).max(50) {
        let (t, _, f) = once(&c, &direct_url, &db, true, true).await;
        dl.push(t);
        df.push(f);
        let (_, _, f) = once(&c, &gw_url, &gb, false, true).await;
        gf.push(f);
        let (t, _, f) = once(&c, &raw_url, &db, true, true).await;
        rl.push(t);
        rf.push(f);
    }
    let (d, g, r) = (pct(&mut df, 0.5), pct(&mut gf, 0.5), pct(&mut rf, 0.5));
    let (dl, rl) = (pct(&mut dl, 0.5), pct(&mut rl, 0.5));
    println!(
        "paced stream  ({PACED_CHUNKS} events 1 ms apart) first event p50: direct {d:7.1} us, gateway {g:7.1} us: added {:6.1} us; plain HTTP route {r:7.1} us",
        g - d,
    );
    // Whole streams are compared on the plain route only: translated, the
    // answer ends with other events than the provider's.
    println!(
        "{:13} whole stream p50: direct {dl:7.1} us, plain HTTP route {rl:7.1} us: added {:6.1} us",
        "",
        rl - dl
    );
    println!(
        "{} during the requests; wake-up round trip {:.0} us",
        steal.note(),
        gateway_process::wake_round_trip_us()
    );
    drop(gw);
}
