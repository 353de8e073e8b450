//! The HTTP library's own ceiling: the same POST as the tool sends, through
//! reqwest on tokio, `IN_FLIGHT` at a time, and nothing else — no campaign,
//! no pacing, no journal, no results file. `benches/run.sh` runs it next to
//! the tool and wrk, so the gap between the tool and wrk splits into what
//! the client library costs and what the tool adds.
//!
//!     cargo run --release --example reqwest_ceiling -- http://127.0.0.1:18089/message/contact 100000

use std::time::Instant;

use futures_util::stream::{self, StreamExt};

const IN_FLIGHT: usize = 64;
const BODY: &str = r#"{"to":"5511987654321","contact":{"name":"Pessoa 1","phone":"551130034000"},"delay":2,"typing":5}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(requests)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: reqwest_ceiling <url> <requests>");
    };
    let url: reqwest::Url = url.parse()?;
    let requests: usize = requests.parse()?;
    let client = reqwest::Client::new();

    let started = Instant::now();
    let answered = stream::iter(0..requests)
        .map(|_| {
            let request = client
                .post(url.clone())
                .header("Authorization", "bench-key")
                .header("Instance-Id", "bench")
                .header("Content-Type", "application/json")
                .body(BODY);
            async move {
                let response = request.send().await.ok()?;
                let created = response.status() == reqwest::StatusCode::CREATED;
                (response.bytes().await.is_ok() && created).then_some(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|answered| async move { answered })
        .count()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{answered} of {requests} answered 201 in {seconds:.2} s: {:.0} requests/s",
        answered as f64 / seconds
    );
    Ok(())
}
