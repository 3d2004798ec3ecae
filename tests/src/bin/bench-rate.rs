//! Benchmark driver (bench/run): an open-loop load at a fixed rate, as users arrive whatever
//! the server's speed. Request `i` is due at `start + i / rate` and goes out on connection
//! `i mod connections` (as wrk2 schedules); its latency is counted from when it was due,
//! not from when its connection was free, so a stalled server is charged for every request
//! that queued behind the stall (coordinated omission corrected, as wrk2 and oha
//! `--latency-correction` do). Each connection is one task on a plain HTTP/1.1 connection,
//! so the driver adds little of its own to what it measures. Prints one JSON line.
//!
//! tokio's timer has millisecond granularity: a request whose connection was idle is
//! timed from when it actually left, so the timer's lateness is not charged to the server.
//!
//! usage: bench-rate <url> <requests per second> <seconds> <connections>

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, rate, seconds, connections] = args.as_slice() else {
        eprintln!("usage: bench-rate <url> <requests per second> <seconds> <connections>");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("rate is a number");
    let seconds: f64 = seconds.parse().expect("seconds is a number");
    let connections: usize = connections.parse().expect("connections is a number");
    let uri: hyper::Uri = url.parse().expect("an http:// URL");
    let addr = format!(
        "{}:{}",
        uri.host().expect("a host"),
        uri.port_u16().unwrap_or(80)
    );
    let path = uri.path().to_owned();

    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(&addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        senders.push(sender);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(c, mut sender)| {
            let (path, addr) = (path.clone(), addr.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                for i in (c..total).step_by(connections) {
                    let due = start + interval * i as u32;
                    // Late because the connection was still busy (the server): counted from
                    // when it was due. Otherwise from when it left: tokio's timer fires up to
                    // a millisecond late, which is the driver's delay, not the server's.
                    let from = if Instant::now() >= due {
                        due
                    } else {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    };
                    let request = hyper::Request::get(path.as_str())
                        .header("host", addr.as_str())
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let ok = match sender.send_request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            response.into_body().collect().await.is_ok() && status.is_success()
                        }
                        Err(_) => false,
                    };
                    if !ok {
                        errors += 1;
                    }
                    latencies.push(from.elapsed());
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::with_capacity(total), 0);
    for t in tasks {
        let (l, e) = t.await.expect("connection task");
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "rate": rate,
            "requests": all.len(),
            "achieved_rps": all.len() as f64 / elapsed,
            "errors": errors,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": pct(1.0),
        })
    );
}
