//! The served TLS material as a readiness part and metrics: when the certificate
//! expires, and whether newer material on disk is refused (a failed rotation is
//! otherwise a log line, and the certificate it should have replaced runs out).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use secret_relay_certs::ReloadingServerTls;

use crate::Readiness;

/// Reads the material's state at each scrape.
#[derive(Debug)]
struct TlsCollector(Arc<ReloadingServerTls>);

impl Collector for TlsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let expiry = ConstGauge::new(self.0.not_after());
        let metric = encoder.encode_descriptor(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served certificate expires, in seconds since the Unix epoch",
            None,
            expiry.metric_type(),
        )?;
        expiry.encode(metric)?;
        let refused = ConstGauge::new(i64::from(self.0.refused().is_some()));
        let metric = encoder.encode_descriptor(
            "tls_material_refused",
            "1 while newer TLS material on disk is refused (the current material is served; /readyz says why)",
            None,
            refused.metric_type(),
        )?;
        refused.encode(metric)
    }
}

/// Registers `tls_certificate_expiry_timestamp_seconds` and `tls_material_refused`
/// for `tls` into `registry`.
pub fn register_tls_metrics(registry: &mut Registry, tls: &Arc<ReloadingServerTls>) {
    registry.register_collector(Box::new(TlsCollector(tls.clone())));
}

/// The readiness part `tls`: unready once the served certificate has expired.
pub fn tls_readiness(tls: &Arc<ReloadingServerTls>) -> Readiness {
    let tls = tls.clone();
    Readiness::new("tls", move || tls.readiness())
}
