//! Benchmark driver (bench/run): a Neon-like edge in front of a local PostgreSQL (see
//! `harness::edge`): each packet delayed by a set one-way time, TLS terminated after
//! `SSLRequest` or directly. Prints its address, then keeps `<stats file>` up to date with
//! the round trips of every connection (a JSON array, oldest first).
//!
//! usage: pg-edge <postgres port> <one-way ms> <cert pem> <key pem> <stats file>

use std::time::Duration;

use harness::edge::{Edge, EdgeConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, one_way, cert, key, stats] = args.as_slice() else {
        eprintln!("usage: pg-edge <postgres port> <one-way ms> <cert pem> <key pem> <stats file>");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("port is a number");
    let one_way: f64 = one_way.parse().expect("one-way ms is a number");
    let read = |path: &str| std::fs::read_to_string(path).expect("PEM file");
    let edge = Edge::start(EdgeConfig {
        upstream: ([127, 0, 0, 1], port).into(),
        one_way: Duration::from_secs_f64(one_way / 1000.0),
        tls: Some((read(cert), read(key))),
    })
    .await;
    println!("{}", edge.addr);
    let mut last = String::new();
    loop {
        let now: Vec<serde_json::Value> = edge
            .connections()
            .iter()
            .map(
                |c| serde_json::json!({ "round_trips": c.round_trips, "direct_tls": c.direct_tls }),
            )
            .collect();
        let text = serde_json::to_string(&now).expect("JSON");
        if text != last {
            let tmp = format!("{stats}.tmp");
            std::fs::write(&tmp, &text).expect("stats file");
            std::fs::rename(&tmp, stats).expect("stats file");
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
