//! A local OpenAI-compatible server for the agent tests: it answers
//! `POST /v1/chat/completions` with canned replies, in order, on a loopback port, and
//! keeps every request it received (headers and JSON body) for the test to check.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One canned answer.
#[derive(Clone)]
pub enum Reply {
    /// A chat completion with this content and usage.
    Text(&'static str),
    /// Any status, body and extra headers.
    Raw {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// Server-sent events: these content pieces, then usage, then `[DONE]`.
    Stream(Vec<&'static str>),
    /// Wait, then answer.
    Slow(Duration, Box<Reply>),
    /// An event stream sent as these raw byte chunks, a pause between them (to split a
    /// character across network reads).
    Chunks(Vec<Vec<u8>>),
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Raw {
            status,
            body: body.to_string(),
            headers: vec![],
        }
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct LlmServer {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "test-model-2026",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    })
    .to_string()
}

impl LlmServer {
    pub fn start(replies: Vec<Reply>) -> LlmServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().unwrap().push(request);
                let reply = replies.next().unwrap_or(Reply::status(
                    500,
                    r#"{"error": {"message": "no more canned replies"}}"#,
                ));
                let stream = stream;
                // Each answer on its own thread, so a slow one never blocks the next request.
                std::thread::spawn(move || answer(stream, reply));
            }
        });
        LlmServer { base_url, seen }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let method = line.split_whitespace().next()?.to_string();
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut length, mut authorization) = (0usize, None);
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        authorization,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

fn answer(mut stream: std::net::TcpStream, reply: Reply) {
    match reply {
        Reply::Slow(wait, then) => {
            std::thread::sleep(wait);
            answer(stream, *then);
        }
        Reply::Text(content) => answer(
            stream,
            Reply::Raw {
                status: 200,
                body: completion(content),
                headers: vec![],
            },
        ),
        Reply::Raw {
            status,
            body,
            headers,
        } => {
            let extra: String = headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Canned\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                body.len()
            );
        }
        Reply::Chunks(chunks) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
            );
            for chunk in chunks {
                let _ = stream.write_all(&chunk);
                let _ = stream.flush();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Reply::Stream(pieces) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
            );
            for piece in pieces {
                let event = json!({"model": "test-model-2026", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
                let _ = write!(stream, "data: {event}\n\n");
                let _ = stream.flush();
            }
            let last = json!({"model": "test-model-2026", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 20, "completion_tokens": 4}});
            let _ = write!(stream, "data: {last}\n\ndata: [DONE]\n\n");
        }
    }
}
