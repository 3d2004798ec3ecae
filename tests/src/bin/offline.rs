//! `scripts/offline`: the guide end to end with no account. It starts the Neon emulator
//! (over real PostgreSQL, TLS with a test CA), moto behind the harness's Lambda model
//! (which runs the uploaded code and serves function URLs), runs `deployer deploy --stage
//! prod` against them with this repository's infra.toml (or `--config`), and serves the
//! function URL at a local address that `curl .../version` reaches. The deployer needs
//! nothing special for it: only `NEON_API_HOST` and `AWS_ENDPOINT_URL`, which it prints.
//!
//! usage: offline [--config PATH] [--stage S] [--port P] [--check]
//! `--check`: request `/version` through the local address, print it, and exit (0: 200).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use harness::deploy::DeployStack;
use harness::paths::workspace_root;

#[derive(Clone)]
struct Forward {
    proxy: String,
    host: String,
    http: reqwest::Client,
}

/// Passes a request to the function URL: to the AWS proxy, with the URL's hostname.
async fn forward(State(f): State<Forward>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = f.http.request(method, format!("{}{path}", f.proxy));
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    match out.header("host", &f.host).body(body).send().await {
        Ok(r) => {
            let status = axum::http::StatusCode::from_u16(r.status().as_u16())
                .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = (status, bytes).into_response();
            for (k, v) in &headers {
                if k != "content-length" && k != "transfer-encoding" {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
            }
            resp
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let config = arg("--config").map_or_else(|| workspace_root().join("infra.toml"), Into::into);
    let config = std::fs::canonicalize(&config).unwrap_or(config);
    let stage = arg("--stage").unwrap_or_else(|| "prod".to_owned());
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(9100);

    eprintln!("starting the Neon emulator and moto (no account, loopback only)");
    let stack = DeployStack::start(|_| {}).await;
    eprintln!(
        "deployer deploy --stage {stage} --config {}",
        config.display()
    );
    let run = stack.run(&config, &["deploy", "--stage", &stage]).await;
    print!("{}", run.stdout);
    eprint!("{}", run.stderr);
    if run.code != 0 {
        std::process::exit(run.code);
    }
    let state = stack.state(&stage);
    let Some((name, url)) = state.resources.iter().find_map(|(n, rs)| {
        (rs.kind == deployer::config::Kind::Function)
            .then(|| rs.outputs.get("url").map(|u| (n.clone(), u.clone())))
            .flatten()
    }) else {
        eprintln!("no function with a URL in {}", config.display());
        std::process::exit(2);
    };
    let host = harness::lambda_exec::url_host(&url).expect("a function URL");
    let app = axum::Router::new().fallback(forward).with_state(Forward {
        proxy: stack.aws.endpoint.clone(),
        host,
        http: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port} ({e}); pass --port"));
    let local = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    println!("{name}.url = {url}, served at {local}/");
    if check {
        let answer = reqwest::get(format!("{local}/version")).await;
        match answer {
            Ok(r) if r.status() == 200 => {
                println!("{}", r.text().await.unwrap_or_default());
                return;
            }
            Ok(r) => {
                eprintln!(
                    "/version answered {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("/version: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("  curl {local}/version");
    println!("deployer works against it with this environment:");
    for (k, v) in stack.env() {
        println!("  export {k}={v}");
    }
    println!("Ctrl-C stops everything (nothing is kept).");
    let _ = tokio::signal::ctrl_c().await;
}
