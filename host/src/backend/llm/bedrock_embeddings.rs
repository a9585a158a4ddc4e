//! OpenAI's embeddings API (`POST …/embeddings`) on Amazon Bedrock, whose
//! embedding models answer InvokeModel (`POST /model/{model}/invoke`) in
//! their own formats: Amazon Titan Text Embeddings take one text per call
//! (`inputText`, `dimensions`), so a list is sent as concurrent calls; Cohere
//! Embed takes up to 96 `texts` per call with an `input_type` (the client's
//! own `input_type`, else `search_document`). The vectors come back in
//! OpenAI's list, in the input's order, as floats or (as the OpenAI SDKs ask
//! by default) base64 of little-endian f32s, with the input tokens counted.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::api::{self, Flavor};
use super::provider::Provider;
use super::{Exchange, LlmBackend, LlmRequestIn, LlmTrace};
use crate::backend::http::Body;
use crate::proxy::Shared;

/// Cohere Embed takes at most this many texts per call.
const COHERE_BATCH: usize = 96;
/// Titan calls of one request in flight at once.
const TITAN_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Titan,
    Cohere,
}

impl Family {
    fn of(model: &str) -> Option<Family> {
        if model.contains("titan-embed") {
            Some(Family::Titan)
        } else if model.contains("cohere.embed") {
            Some(Family::Cohere)
        } else {
            None
        }
    }
}

/// What the client asked for, read from OpenAI's request body.
#[derive(Debug)]
struct Ask {
    model: String,
    texts: Vec<String>,
    dimensions: Option<u64>,
    base64: bool,
    /// Cohere's own fields, as a client may send them with OpenAI's.
    input_type: Option<Value>,
    truncate: Option<Value>,
}

fn bad(message: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message)
}

fn ask_of(body: &Map<String, Value>) -> Result<Ask, (StatusCode, String)> {
    let texts = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(format!(
                    "input[{i}]: Bedrock's embedding models take text, not token ids"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(
                "`input` must be a string or a non-empty list of strings".into(),
            ));
        }
    };
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(bad(format!("input[{i}] is empty")));
    }
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(format!(
                "encoding_format '{other}' is not float or base64"
            )));
        }
    };
    Ok(Ask {
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        texts,
        dimensions: body.get("dimensions").and_then(Value::as_u64),
        base64,
        input_type: body.get("input_type").cloned(),
        truncate: body.get("truncate").cloned(),
    })
}

/// The InvokeModel bodies for `ask` with `family`'s model: one per call,
/// each with the indices of the texts it carries.
fn invocations(family: Family, ask: &Ask) -> Vec<(Value, Vec<usize>)> {
    match family {
        Family::Titan => ask
            .texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut body = json!({"inputText": text});
                if let Some(d) = ask.dimensions {
                    body["dimensions"] = d.into();
                }
                (body, vec![i])
            })
            .collect(),
        Family::Cohere => ask
            .texts
            .chunks(COHERE_BATCH)
            .enumerate()
            .map(|(n, batch)| {
                let mut body = json!({
                    "texts": batch,
                    "input_type": ask.input_type.clone().unwrap_or_else(|| "search_document".into()),
                    "embedding_types": ["float"],
                });
                if let Some(t) = &ask.truncate {
                    body["truncate"] = t.clone();
                }
                if let Some(d) = ask.dimensions {
                    body["output_dimension"] = d.into();
                }
                let first = n * COHERE_BATCH;
                (body, (first..first + batch.len()).collect())
            })
            .collect(),
    }
}

/// The vectors of one InvokeModel answer, and the input tokens it counted.
fn vectors_of(
    family: Family,
    answer: &Value,
    header_tokens: Option<u64>,
) -> Option<(Vec<Vec<f64>>, u64)> {
    let floats =
        |v: &Value| -> Option<Vec<f64>> { v.as_array()?.iter().map(Value::as_f64).collect() };
    match family {
        Family::Titan => {
            let vector = floats(answer.get("embedding")?)?;
            let tokens = answer
                .get("inputTextTokenCount")
                .and_then(Value::as_u64)
                .or(header_tokens)
                .unwrap_or(0);
            Some((vec![vector], tokens))
        }
        Family::Cohere => {
            // `{"float": [[...]]}` when types were asked for, else `[[...]]`.
            let all = answer.get("embeddings")?;
            let all = all.get("float").unwrap_or(all);
            let vectors = all.as_array()?.iter().map(floats).collect::<Option<_>>()?;
            Some((vectors, header_tokens.unwrap_or(0)))
        }
    }
}

fn encode(vector: &[f64], base64: bool) -> Value {
    if !base64 {
        return json!(vector);
    }
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|x| (*x as f32).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into()
}

/// Serve `POST …/embeddings` with the route's Bedrock providers.
pub async fn serve(
    shared: Arc<Shared>,
    llm: Arc<LlmBackend>,
    input: LlmRequestIn,
    candidates: Vec<(usize, Arc<Provider>)>,
    trace: &mut LlmTrace,
) -> Response<Body> {
    const CLIENT: Flavor = Flavor::OpenAi;
    let refuse = |trace: &mut LlmTrace, (status, message): (StatusCode, String)| {
        trace.error = Some(message.clone());
        api::error_response(CLIENT, status, None, &message)
    };
    let body = match super::json_object(&input.body, CLIENT, trace) {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let ask = match ask_of(&body) {
        Ok(ask) => ask,
        Err(e) => return refuse(trace, e),
    };
    let primary = &candidates[0].1;
    let model = primary.model.clone().unwrap_or_else(|| ask.model.clone());
    let Some(family) = Family::of(&model) else {
        return refuse(
            trace,
            bad(format!(
                "provider {} cannot embed with '{model}': the gateway speaks Bedrock's Amazon Titan Text Embeddings and Cohere Embed models",
                primary.name
            )),
        );
    };
    let exchange = Exchange {
        shared: &shared,
        llm: &llm,
        candidates: &candidates,
        head_timeout: input.head_timeout,
        max_body: input.max_body,
        client: CLIENT,
    };
    let parts = &input.parts;
    let calls = invocations(family, &ask);
    let llm = &*llm;
    let call = |(body, indices): (Value, Vec<usize>)| {
        let exchange = &exchange;
        let model = &ask.model;
        async move {
            let bytes = Bytes::from(body.to_string());
            let attempt =
                |p: &Provider| super::bedrock_call(parts, p, (model, "invoke"), &bytes, llm);
            let mut trace = LlmTrace::default();
            let sent = exchange.send(attempt, &mut trace).await;
            let answer = match sent {
                Ok((provider, resp)) => {
                    let tokens = resp
                        .headers()
                        .get("x-amzn-bedrock-input-token-count")
                        .and_then(|v| v.to_str().ok()?.parse().ok());
                    super::read_idle(resp.into_body(), input.max_body, llm.idle_timeout)
                        .await
                        .map(|bytes| (provider, bytes, tokens))
                        .map_err(|e| {
                            trace.error = Some(e.clone());
                            api::error_response(
                                CLIENT,
                                StatusCode::BAD_GATEWAY,
                                Some("api_error"),
                                &e,
                            )
                        })
                }
                Err(answer) => Err(answer),
            };
            (answer, indices, trace)
        }
    };
    let answers: Vec<_> = futures_util::stream::iter(calls)
        .map(call)
        .buffered(TITAN_CONCURRENCY)
        .collect()
        .await;

    let mut vectors: Vec<Option<Vec<f64>>> = vec![None; ask.texts.len()];
    let mut tokens = 0;
    let mut answered_by = None;
    for (answer, indices, call_trace) in answers {
        trace.upstream = call_trace.upstream.or(trace.upstream.take());
        let (provider, bytes, header_tokens) = match answer {
            Ok(ok) => ok,
            Err(failed) => {
                trace.error = call_trace.error;
                return failed;
            }
        };
        let parsed = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| vectors_of(family, &v, header_tokens));
        let Some((got, counted)) = parsed.filter(|(got, _)| got.len() == indices.len()) else {
            let message = format!(
                "provider {} answered InvokeModel for '{model}' without the embeddings the gateway expects",
                provider.name
            );
            return refuse(trace, (StatusCode::BAD_GATEWAY, message));
        };
        tokens += counted;
        for (i, vector) in indices.into_iter().zip(got) {
            vectors[i] = Some(vector);
        }
        answered_by = Some(provider);
    }
    let Some(provider) = answered_by else {
        return refuse(trace, bad("there is nothing to embed".into()));
    };
    shared
        .llm_metrics
        .record(&input.route, &provider.name, &model, Some((tokens, 0, 0)));
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"object": "embedding", "index": i,
                "embedding": encode(&v.unwrap_or_default(), ask.base64)})
        })
        .collect();
    let out = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    super::with_provider(api::json_response(StatusCode::OK, &out), &provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(body: Value) -> Result<Ask, (StatusCode, String)> {
        ask_of(body.as_object().unwrap())
    }

    #[test]
    fn titan_gets_one_call_per_text_and_cohere_batches_of_96() {
        let a = ask(json!({"model": "amazon.titan-embed-text-v2:0", "input": ["a", "b"], "dimensions": 256})).unwrap();
        let calls = invocations(Family::Titan, &a);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].0, json!({"inputText": "b", "dimensions": 256}));
        assert_eq!(calls[1].1, vec![1]);
        let texts: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
        let a = ask(json!({"model": "cohere.embed-english-v3", "input": texts, "input_type": "search_query"})).unwrap();
        let calls = invocations(Family::Cohere, &a);
        assert_eq!(
            calls.iter().map(|c| c.1.len()).collect::<Vec<_>>(),
            [96, 96, 8]
        );
        assert_eq!(calls[2].1[0], 192);
        assert_eq!(calls[0].0["input_type"], "search_query");
        assert_eq!(calls[0].0["embedding_types"], json!(["float"]));
    }

    #[test]
    fn what_bedrock_cannot_embed_is_refused_by_position() {
        let (status, message) = ask(json!({"model": "m", "input": ["ok", [1, 2]]})).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("input[1]: "), "{message}");
        assert!(
            ask(json!({"model": "m", "input": ["ok", " "]}))
                .unwrap_err()
                .1
                .contains("input[1] is empty")
        );
        assert!(ask(json!({"model": "m", "input": "x", "encoding_format": "int8"})).is_err());
        assert_eq!(Family::of("us.cohere.embed-v4:0"), Some(Family::Cohere));
        assert_eq!(Family::of("anthropic.claude-3-haiku"), None);
    }

    #[test]
    fn answers_of_both_families_give_vectors_and_tokens() {
        let titan = json!({"embedding": [0.5, -0.25], "inputTextTokenCount": 3});
        assert_eq!(
            vectors_of(Family::Titan, &titan, None),
            Some((vec![vec![0.5, -0.25]], 3))
        );
        let typed = json!({"embeddings": {"float": [[1.0], [2.0]]}, "id": "x"});
        assert_eq!(
            vectors_of(Family::Cohere, &typed, Some(9)),
            Some((vec![vec![1.0], vec![2.0]], 9))
        );
        let plain = json!({"embeddings": [[1.0]], "response_type": "embeddings_floats"});
        assert_eq!(
            vectors_of(Family::Cohere, &plain, None),
            Some((vec![vec![1.0]], 0))
        );
        assert_eq!(
            vectors_of(Family::Titan, &json!({"message": "no"}), None),
            None
        );
        // Base64 is the f32s' little-endian bytes, as OpenAI sends them.
        assert_eq!(encode(&[1.0, -2.0], true), json!("AACAPwAAAMA="));
        assert_eq!(encode(&[1.0], false), json!([1.0]));
    }
}
