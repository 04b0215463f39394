//! The metrics endpoint: an HTTP server on a thread of its own (`tiny_http`), answering
//! `GET /metrics` with the [`Exposition`]'s text; other paths get 404, other methods 405.

use super::Exposition;
use crate::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Response, Server};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The endpoint, serving until the process ends.
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
}

/// Binds `addr` and serves `exposition` from a new thread.
pub(crate) fn serve(addr: SocketAddr, exposition: Exposition) -> Result<Endpoint, Error> {
    let server = Server::http(addr).map_err(|e| {
        let e = std::io::Error::other(e.to_string());
        Error::io("bind the metrics endpoint (--metrics) on", addr, e)
    })?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    std::thread::Builder::new()
        .name("sonde-metrics".into())
        .spawn(move || answer_all(&server, &exposition))
        .map_err(|e| Error::Setup("spawn the metrics thread", e))?;
    Ok(Endpoint { addr: bound })
}

fn answer_all(server: &Server, exposition: &Exposition) {
    let mut last_scrape: Option<Instant> = None;
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or_default();
        let response = match (request.method(), path) {
            (Method::Get | Method::Head, "/metrics") => {
                let openmetrics = request.headers().iter().any(|h| {
                    h.field.equiv("Accept")
                        && h.value.as_str().contains("application/openmetrics-text")
                });
                let now = Instant::now();
                let gap = last_scrape.map(|then| now.duration_since(then));
                last_scrape = Some(now);
                let text = exposition.scrape(openmetrics, gap.filter(|g| *g > Duration::ZERO));
                let kind = if openmetrics { OPENMETRICS } else { PROMETHEUS };
                Response::from_string(text).with_header(header(kind))
            }
            (_, "/metrics") => Response::from_string("only GET and HEAD\n")
                .with_status_code(405)
                .with_header(header("text/plain; charset=utf-8"))
                .with_header(Header::from_bytes("Allow", "GET, HEAD").expect("a valid header")),
            _ => Response::from_string("not found: the metrics are at /metrics\n")
                .with_status_code(404)
                .with_header(header("text/plain; charset=utf-8")),
        };
        // A client gone before its answer costs nothing but this thread's time.
        let _ = request.respond(response);
    }
}

fn header(content_type: &str) -> Header {
    Header::from_bytes("Content-Type", content_type).expect("a valid header")
}
