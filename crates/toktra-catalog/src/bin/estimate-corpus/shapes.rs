//! Request and response bodies in the OpenAI, Anthropic and Gemini API shapes, as
//! their official SDKs send them and their servers answer (field sets, SSE framing,
//! pretty-printed JSON where the real service pretty-prints, typical headers).

use crate::text::{Rng, Texts};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::OpenAi, Shape::Anthropic, Shape::Gemini];

    pub fn host(self) -> &'static str {
        match self {
            Shape::OpenAi => "api.openai.com",
            Shape::Anthropic => "api.anthropic.com",
            Shape::Gemini => "generativelanguage.googleapis.com",
        }
    }
}

/// One request/response exchange of the corpus, with its true token counts.
pub struct Exchange {
    pub shape: Shape,
    pub streamed: bool,
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    /// The whole body (plain JSON), or the SSE events, each written on its own.
    pub response_events: Vec<Vec<u8>>,
    pub input_tokens: usize,
    pub output_tokens: usize,
    /// Events that carry answer text.
    pub content_events: usize,
    /// Bytes of JSON-escaped answer text in the body.
    pub text_bytes: usize,
    /// Bytes of the events that carry answer text (all of a plain body).
    pub content_event_bytes: usize,
}

struct Prompt {
    system: String,
    /// (role is user?, text)
    turns: Vec<(bool, String)>,
    tokens: usize,
}

fn prompt(texts: &Texts, rng: &mut Rng) -> Prompt {
    let system_len = rng.log_range(30, 1_500);
    let (system, mut tokens) = texts.span(rng, system_len);
    tokens += 3;
    let n_turns = 2 * rng.range(0, 3) + 1;
    let mut turns = Vec::new();
    for i in 0..n_turns {
        // Now and then a pasted file: the long prompts coding assistants send.
        let size = if rng.range(0, 5) == 0 {
            rng.log_range(1_500, 9_000)
        } else {
            rng.log_range(10, 800)
        };
        let (t, n) = texts.span(rng, size);
        tokens += n + 3;
        turns.push((i % 2 == 0, t));
    }
    Prompt {
        system,
        turns,
        tokens: tokens + 3,
    }
}

fn compact(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

fn escaped_len(s: &str) -> usize {
    serde_json::to_string(s)
        .map(|j| j.len() - 2)
        .unwrap_or(s.len())
}

fn stainless(rng: &mut Rng, package: &str, version: &str) -> Vec<(String, String)> {
    vec![
        ("accept".into(), "application/json".into()),
        ("user-agent".into(), format!("{package}/Python {version}")),
        ("x-stainless-lang".into(), "python".into()),
        ("x-stainless-package-version".into(), version.into()),
        ("x-stainless-os".into(), "Linux".into()),
        ("x-stainless-arch".into(), "x64".into()),
        ("x-stainless-runtime".into(), "CPython".into()),
        ("x-stainless-runtime-version".into(), "3.12.7".into()),
        ("x-stainless-async".into(), "false".into()),
        ("x-stainless-retry-count".into(), "0".into()),
        ("x-stainless-read-timeout".into(), "600".into()),
        ("x-request-nonce".into(), rng.hex(8)),
    ]
}

fn cloudflare(rng: &mut Rng) -> Vec<(String, String)> {
    vec![
        (
            "strict-transport-security".into(),
            "max-age=31536000; includeSubDomains; preload".into(),
        ),
        ("cf-cache-status".into(), "DYNAMIC".into()),
        (
            "set-cookie".into(),
            format!(
                "__cf_bm={}-1764140000-1.0.1.1-{}; path=/; expires=Thu, 26-Nov-26 07:30:00 GMT; domain=.example.com; HttpOnly; Secure; SameSite=None",
                rng.alnum(43),
                rng.alnum(120)
            ),
        ),
        ("x-content-type-options".into(), "nosniff".into()),
        ("server".into(), "cloudflare".into()),
        ("cf-ray".into(), format!("{}-SJC", rng.hex(16))),
        ("alt-svc".into(), "h3=\":443\"; ma=86400".into()),
    ]
}

/// Builds one exchange: a prompt of realistic length, an answer of `out_tokens`.
pub fn exchange(texts: &Texts, rng: &mut Rng, shape: Shape, streamed: bool) -> Exchange {
    let p = prompt(texts, rng);
    let out_tokens = rng.log_range(8, 2_500);
    let (answer, answer_tokens) = texts.span(rng, out_tokens);
    match shape {
        Shape::OpenAi => openai(texts, rng, p, answer, answer_tokens, streamed),
        Shape::Anthropic => anthropic(texts, rng, p, answer, answer_tokens, streamed),
        Shape::Gemini => gemini(texts, rng, p, answer, answer_tokens, streamed),
    }
}

fn openai(
    texts: &Texts,
    rng: &mut Rng,
    p: Prompt,
    answer: String,
    answer_tokens: usize,
    streamed: bool,
) -> Exchange {
    let mut messages = vec![json!({"role": "system", "content": p.system})];
    for (user, t) in &p.turns {
        messages.push(json!({"role": if *user { "user" } else { "assistant" }, "content": t}));
    }
    let mut req = json!({"messages": messages, "model": "gpt-4o", "temperature": 0.7});
    if streamed {
        req["stream"] = json!(true);
        req["stream_options"] = json!({"include_usage": true});
    }
    let mut request_headers = vec![
        (
            "authorization".into(),
            format!("Bearer sk-proj-{}", rng.alnum(156)),
        ),
        ("content-type".into(), "application/json".into()),
    ];
    request_headers.extend(stainless(rng, "OpenAI", "1.99.9"));
    let id = format!("chatcmpl-{}", rng.alnum(29));
    let fp = format!("fp_{}", rng.hex(10));
    let created = 1_764_140_000u64 + rng.range(0, 10_000) as u64;
    let usage = json!({
        "prompt_tokens": p.tokens, "completion_tokens": answer_tokens,
        "total_tokens": p.tokens + answer_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    });
    let mut response_headers = vec![
        (
            "content-type".into(),
            if streamed {
                "text/event-stream; charset=utf-8"
            } else {
                "application/json"
            }
            .into(),
        ),
        (
            "access-control-expose-headers".into(),
            "X-Request-ID".into(),
        ),
        (
            "openai-organization".into(),
            format!("user-{}", rng.alnum(24).to_lowercase()),
        ),
        (
            "openai-processing-ms".into(),
            rng.range(150, 3_000).to_string(),
        ),
        ("openai-project".into(), format!("proj_{}", rng.alnum(24))),
        ("openai-version".into(), "2020-10-01".into()),
        (
            "x-envoy-upstream-service-time".into(),
            rng.range(150, 3_000).to_string(),
        ),
        ("x-ratelimit-limit-requests".into(), "10000".into()),
        ("x-ratelimit-limit-tokens".into(), "30000000".into()),
        ("x-ratelimit-remaining-requests".into(), "9999".into()),
        (
            "x-ratelimit-remaining-tokens".into(),
            (30_000_000 - p.tokens).to_string(),
        ),
        ("x-ratelimit-reset-requests".into(), "6ms".into()),
        ("x-ratelimit-reset-tokens".into(), "0s".into()),
        ("x-request-id".into(), format!("req_{}", rng.hex(32))),
    ];
    response_headers.extend(cloudflare(rng));
    let mut events = Vec::new();
    let mut text_bytes = 0;
    let content_events;
    if streamed {
        let chunk = |rng: &mut Rng, delta: Value, finish: Value| {
            let pad_len = rng.range(1, 16);
            let pad = rng.alnum(pad_len);
            let v = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": "gpt-4o-2024-08-06", "service_tier": "default", "system_fingerprint": fp,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                "obfuscation": pad});
            let mut e = b"data: ".to_vec();
            e.extend(compact(&v));
            e.extend(b"\n\n");
            e
        };
        events.push(chunk(
            rng,
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ));
        let pieces = texts.pieces(&answer, || 1);
        content_events = pieces.len();
        for (piece, _) in pieces {
            text_bytes += escaped_len(&piece);
            events.push(chunk(rng, json!({"content": piece}), Value::Null));
        }
        events.push(chunk(rng, json!({}), json!("stop")));
        let u = json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": "gpt-4o-2024-08-06", "service_tier": "default", "system_fingerprint": fp,
            "choices": [], "usage": usage, "obfuscation": rng.alnum(8)});
        let mut e = b"data: ".to_vec();
        e.extend(compact(&u));
        e.extend(b"\n\n");
        events.push(e);
        events.push(b"data: [DONE]\n\n".to_vec());
    } else {
        text_bytes = escaped_len(&answer);
        content_events = 1;
        let v = json!({"id": id, "object": "chat.completion", "created": created,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer,
                "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default", "system_fingerprint": fp});
        events.push(pretty(&v));
    }
    let content_event_bytes = if streamed {
        events
            .iter()
            .skip(1)
            .take(content_events)
            .map(Vec::len)
            .sum()
    } else {
        events.iter().map(Vec::len).sum()
    };
    Exchange {
        shape: Shape::OpenAi,
        streamed,
        path: "/v1/chat/completions".into(),
        request_headers,
        request_body: compact(&req),
        response_headers,
        response_events: events,
        input_tokens: p.tokens,
        output_tokens: answer_tokens,
        content_events,
        text_bytes,
        content_event_bytes,
    }
}

fn anthropic(
    texts: &Texts,
    rng: &mut Rng,
    p: Prompt,
    answer: String,
    answer_tokens: usize,
    streamed: bool,
) -> Exchange {
    let messages: Vec<Value> = p
        .turns
        .iter()
        .map(|(user, t)| json!({"role": if *user { "user" } else { "assistant" }, "content": t}))
        .collect();
    let mut req = json!({"max_tokens": 8192, "messages": messages,
        "model": "claude-sonnet-4-20250514", "system": p.system});
    if streamed {
        req["stream"] = json!(true);
    }
    let mut request_headers = vec![
        (
            "x-api-key".into(),
            format!("sk-ant-api03-{}-{}AA", rng.alnum(86), rng.alnum(6)),
        ),
        ("anthropic-version".into(), "2023-06-01".into()),
        ("content-type".into(), "application/json".into()),
    ];
    request_headers.extend(stainless(rng, "Anthropic", "0.64.0"));
    let id = format!("msg_01{}", rng.alnum(22));
    let usage_in = json!({"input_tokens": p.tokens, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0, "output_tokens": 1, "service_tier": "standard"});
    let now = "2026-11-26T07:00:00Z";
    let mut response_headers = vec![
        (
            "content-type".into(),
            if streamed {
                "text/event-stream; charset=utf-8"
            } else {
                "application/json"
            }
            .into(),
        ),
        (
            "anthropic-ratelimit-input-tokens-limit".into(),
            "2000000".into(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining".into(),
            "2000000".into(),
        ),
        ("anthropic-ratelimit-input-tokens-reset".into(), now.into()),
        (
            "anthropic-ratelimit-output-tokens-limit".into(),
            "400000".into(),
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining".into(),
            "400000".into(),
        ),
        ("anthropic-ratelimit-output-tokens-reset".into(), now.into()),
        ("anthropic-ratelimit-requests-limit".into(), "4000".into()),
        (
            "anthropic-ratelimit-requests-remaining".into(),
            "3999".into(),
        ),
        ("anthropic-ratelimit-requests-reset".into(), now.into()),
        ("anthropic-ratelimit-tokens-limit".into(), "2400000".into()),
        (
            "anthropic-ratelimit-tokens-remaining".into(),
            "2400000".into(),
        ),
        ("anthropic-ratelimit-tokens-reset".into(), now.into()),
        ("request-id".into(), format!("req_011C{}", rng.alnum(20))),
        (
            "anthropic-organization-id".into(),
            format!(
                "{}-{}-4{}-a{}-{}",
                rng.hex(8),
                rng.hex(4),
                rng.hex(3),
                rng.hex(3),
                rng.hex(12)
            ),
        ),
        ("via".into(), "1.1 google".into()),
        ("x-robots-tag".into(), "none".into()),
    ];
    response_headers.extend(cloudflare(rng));
    let mut events = Vec::new();
    let mut text_bytes = 0;
    let content_events;
    let event = |name: &str, v: Value| {
        let mut e = format!("event: {name}\ndata: ").into_bytes();
        e.extend(compact(&v));
        e.extend(b"\n\n");
        e
    };
    if streamed {
        events.push(event(
            "message_start",
            json!({"type": "message_start", "message": {"id": id,
            "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage_in}}),
        ));
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(b"event: ping\ndata: {\"type\": \"ping\"}\n\n".to_vec());
        let pieces = texts.pieces(&answer, || rng.range(1, 8));
        content_events = pieces.len();
        for (piece, _) in pieces {
            text_bytes += escaped_len(&piece);
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta",
                "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": answer_tokens}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
    } else {
        text_bytes = escaped_len(&answer);
        content_events = 1;
        let mut usage = usage_in;
        usage["output_tokens"] = json!(answer_tokens);
        events.push(compact(
            &json!({"id": id, "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-20250514", "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage}),
        ));
    }
    let content_event_bytes = if streamed {
        events
            .iter()
            .skip(3)
            .take(content_events)
            .map(Vec::len)
            .sum()
    } else {
        events.iter().map(Vec::len).sum()
    };
    Exchange {
        shape: Shape::Anthropic,
        streamed,
        path: "/v1/messages".into(),
        request_headers,
        request_body: compact(&req),
        response_headers,
        response_events: events,
        input_tokens: p.tokens,
        output_tokens: answer_tokens,
        content_events,
        text_bytes,
        content_event_bytes,
    }
}

fn gemini(
    texts: &Texts,
    rng: &mut Rng,
    p: Prompt,
    answer: String,
    answer_tokens: usize,
    streamed: bool,
) -> Exchange {
    let contents: Vec<Value> = p
        .turns
        .iter()
        .map(|(user, t)| json!({"parts": [{"text": t}], "role": if *user { "user" } else { "model" }}))
        .collect();
    let req = json!({"contents": contents,
        "systemInstruction": {"parts": [{"text": p.system}], "role": "user"},
        "generationConfig": {"temperature": 0.7, "maxOutputTokens": 8192}});
    let model = "gemini-2.5-flash";
    let path = if streamed {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    };
    let request_headers = vec![
        ("x-goog-api-key".into(), format!("AIza{}", rng.alnum(35))),
        ("content-type".into(), "application/json".into()),
        (
            "user-agent".into(),
            "google-genai-sdk/1.31.0 gl-python/3.12.7".into(),
        ),
        (
            "x-goog-api-client".into(),
            "google-genai-sdk/1.31.0 gl-python/3.12.7".into(),
        ),
        ("accept".into(), "*/*".into()),
    ];
    let response_id = rng.alnum(22);
    let mut response_headers = vec![
        (
            "content-type".into(),
            if streamed {
                "text/event-stream"
            } else {
                "application/json; charset=UTF-8"
            }
            .into(),
        ),
        ("vary".into(), "Origin".into()),
        ("vary".into(), "X-Origin".into()),
        ("vary".into(), "Referer".into()),
        ("server".into(), "scaffolding on HTTPServer2".into()),
        ("x-xss-protection".into(), "0".into()),
        ("x-frame-options".into(), "SAMEORIGIN".into()),
        ("x-content-type-options".into(), "nosniff".into()),
        (
            "server-timing".into(),
            format!("gfet4t7; dur={}", rng.range(200, 9_000)),
        ),
        (
            "alt-svc".into(),
            "h3=\":443\"; ma=2592000,h3-29=\":443\"; ma=2592000".into(),
        ),
    ];
    if !streamed {
        response_headers.push(("content-encoding".into(), "identity".into()));
    }
    let usage = |out: Option<usize>| {
        let mut u = json!({"promptTokenCount": p.tokens,
            "totalTokenCount": p.tokens + out.unwrap_or(0),
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p.tokens}]});
        if let Some(o) = out {
            u["candidatesTokenCount"] = json!(o);
        }
        u
    };
    let mut events = Vec::new();
    let mut text_bytes = 0;
    let content_events;
    if streamed {
        let mut first = true;
        let pieces = texts.pieces(&answer, || {
            if std::mem::take(&mut first) {
                rng.range(1, 12)
            } else {
                rng.range(15, 70)
            }
        });
        content_events = pieces.len();
        let last = pieces.len().saturating_sub(1);
        for (i, (piece, _)) in pieces.into_iter().enumerate() {
            text_bytes += escaped_len(&piece);
            let mut cand =
                json!({"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0});
            let done = i == last;
            if done {
                cand["finishReason"] = json!("STOP");
            }
            let v = json!({"candidates": [cand],
                "usageMetadata": usage(done.then_some(answer_tokens)),
                "modelVersion": model, "responseId": response_id});
            let mut e = b"data: ".to_vec();
            e.extend(compact(&v));
            e.extend(b"\r\n\r\n");
            events.push(e);
        }
    } else {
        text_bytes = escaped_len(&answer);
        content_events = 1;
        events.push(pretty(
            &json!({"candidates": [{"content": {"parts": [{"text": answer}],
            "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage(Some(answer_tokens)), "modelVersion": model,
            "responseId": response_id}),
        ));
    }
    let content_event_bytes = if streamed {
        events.iter().take(content_events).map(Vec::len).sum()
    } else {
        events.iter().map(Vec::len).sum()
    };
    Exchange {
        shape: Shape::Gemini,
        streamed,
        path,
        request_headers,
        request_body: compact(&req),
        response_headers,
        response_events: events,
        input_tokens: p.tokens,
        output_tokens: answer_tokens,
        content_events,
        text_bytes,
        content_event_bytes,
    }
}
