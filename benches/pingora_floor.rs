//! The floor row of `benches/load.sh`: what Pingora itself costs on this
//! machine for the harness's job, with nothing of ours on the path. A stock
//! `pingora::server::Server` with one worker thread runs a bare `ProxyHttp`
//! that does the routing job (`end-user: jason` → v2, else 90 % v1 / 10 % v2)
//! in a few lines, over Pingora's default HTTP/1.1 upstream pool.
//!
//! Every report then shows Pingora's floor next to the waypoint, so the gap
//! to nginx splits into "Pingora as driven by default" and "what we add".
//!
//! Run by `benches/load.sh`; by hand: `pingora_floor LISTEN V1 V2`.

use async_trait::async_trait;
use pingora::prelude::*;
use rand::Rng;

struct Floor {
    v1: String,
    v2: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let jason = session
            .req_header()
            .headers
            .get("end-user")
            .is_some_and(|v| v.as_bytes() == b"jason");
        let v2 = jason || rand::rng().random_range(0..100) < 10;
        let addr = if v2 { &self.v2 } else { &self.v1 };
        Ok(Box::new(HttpPeer::new(addr.as_str(), false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, v1, v2] = args.as_slice() else {
        eprintln!("usage: pingora_floor LISTEN V1 V2");
        std::process::exit(2);
    };
    let conf = pingora::server::configuration::ServerConf {
        threads: 1,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Floor {
            v1: v1.clone(),
            v2: v2.clone(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
