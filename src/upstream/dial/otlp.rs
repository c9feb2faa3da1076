//! The OTLP span exporter's transports on the dialer: its tonic channel and
//! its HTTP client both take connections from a [`DialConnector`], so span
//! export follows the one rule (HBONE to an in-mesh collector).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::HttpClient;
use tonic::transport::{Channel, Endpoint};

use crate::telemetry::trace::CollectorTransport;

use super::DialConnector;

impl CollectorTransport for DialConnector {
    fn grpc_channel(
        &self,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Channel, tonic::transport::Error> {
        // Lazy: the collector may come up after the waypoint; the first
        // export connects, and a broken connection is dialled again.
        Ok(Endpoint::from_shared(endpoint.to_string())?
            .timeout(timeout)
            .connect_with_connector_lazy(self.clone()))
    }

    fn http_client(&self, timeout: Duration) -> Arc<dyn HttpClient> {
        // hyper-util's pooling client: exports reuse an idle connection, and
        // only a new one is dialled (and resolved) again.
        Arc::new(HyperClient::new(self.clone(), timeout, None))
    }
}
