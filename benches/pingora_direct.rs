//! A second floor row: Pingora's HTTP/1.1 server and client sessions
//! (`v1::server::HttpSession`, `v1::client::HttpSession`) driven directly from a
//! one-thread tokio runtime, with a plain per-address keep-alive pool, instead of
//! through `HttpProxy`. Same routing job as `pingora_floor` (`end-user: jason` → v2,
//! else 90 % v1 / 10 % v2), same write coalescing as the waypoint's listener.
//!
//! It answers one question for the cost ledger: how much of the floor is
//! `HttpProxy` (its proxy loop, pool and connector), and how much is Pingora's h1
//! codec and tokio, which any Pingora-based design keeps.
//!
//! By hand: `pingora_direct LISTEN V1 V2`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pingora_core::protocols::http::v1::client::HttpSession as ClientSession;
use pingora_core::protocols::http::v1::server::HttpSession as ServerSession;
use pingora_core::protocols::Stream;
use rand::Rng;
use waypoint::inbound::coalesce::Coalesce;
use waypoint::inbound::listener::l4_stream;

/// Idle upstream connections per address; one runtime thread, so never contended.
#[derive(Default)]
struct Pool {
    v1: Mutex<Vec<Stream>>,
    v2: Mutex<Vec<Stream>>,
}

struct Job {
    v1: SocketAddr,
    v2: SocketAddr,
    pool: Pool,
}

async fn upstream(job: &Job, v2: bool) -> std::io::Result<Stream> {
    let (idle, addr) = if v2 {
        (&job.pool.v2, job.v2)
    } else {
        (&job.pool.v1, job.v1)
    };
    if let Some(s) = idle.lock().unwrap().pop() {
        return Ok(s);
    }
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(Box::new(pingora_core::protocols::l4::stream::Stream::from(
        tcp,
    )))
}

fn park(job: &Job, v2: bool, s: Stream) {
    let idle = if v2 { &job.pool.v2 } else { &job.pool.v1 };
    idle.lock().unwrap().push(s);
}

/// One request; `None` when the downstream connection is done.
async fn one(job: &Job, down: &mut ServerSession) -> Option<()> {
    down.read_request().await.ok()??;
    let jason = down
        .get_header("end-user")
        .is_some_and(|v| v.as_bytes() == b"jason");
    let v2 = jason || rand::rng().random_range(0..100) < 10;
    let mut up = ClientSession::new(upstream(job, v2).await.ok()?);
    let req = Box::new(down.req_header().clone());
    up.write_request_header(req).await.ok()?;
    while let Some(chunk) = down.read_body_bytes().await.ok()? {
        up.write_body(&chunk).await.ok()?;
    }
    up.finish_body().await.ok()?;
    up.read_response().await.ok()?;
    up.respect_keepalive();
    let resp = Box::new(up.resp_header()?.clone());
    down.write_response_header(resp).await.ok()?;
    while let Some(chunk) = up.read_body_ref().await.ok()? {
        down.write_body(chunk).await.ok()?;
    }
    down.finish_body().await.ok()?;
    if let Some(s) = up.reuse().await {
        park(job, v2, s);
    }
    Some(())
}

async fn serve(job: Arc<Job>, mut stream: Stream) {
    loop {
        let mut down = ServerSession::new(stream);
        if one(&job, &mut down).await.is_none() {
            return;
        }
        match down.reuse().await {
            Ok(Some(next)) => {
                let (s, prefix) = next.into_parts();
                if prefix.is_some() {
                    return; // pipelining is not part of the job
                }
                stream = s;
            }
            _ => return,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, v1, v2] = args.as_slice() else {
        eprintln!("usage: pingora_direct LISTEN V1 V2");
        std::process::exit(2);
    };
    let job = Arc::new(Job {
        v1: v1.parse().expect("V1 is ip:port"),
        v2: v2.parse().expect("V2 is ip:port"),
        pool: Pool::default(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen.as_str())
            .await
            .expect("bind");
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let stream: Stream = Box::new(Coalesce::new(l4_stream(tcp, peer)));
            tokio::spawn(serve(job.clone(), stream));
        }
    });
}
